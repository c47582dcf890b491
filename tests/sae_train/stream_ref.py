#!/usr/bin/python3
"""Independent NumPy/Python implementation of the row order documented in docs/formats.md
(seeded block permutation per epoch, windows of blocks, seeded row permutation per window,
global batches split over ranks), compared with what the C stream delivers (stream_dump).
  stream_ref.py STREAM_DUMP TMPDIR"""
import subprocess
import sys

import h5py
import numpy as np

M = (1 << 64) - 1


def splitmix(state):
    state = (state + 0x9E3779B97F4A7C15) & M
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return state, z ^ (z >> 31)


def perm(n, seed, a, b):
    st, k = splitmix(seed)
    st, k = splitmix(k ^ ((a * 0xD1B54A32D192ED03) & M))
    st = k ^ ((b * 0xABC98388FB8FAC03) & M)
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        st, r = splitmix(st)
        j = (r * (i + 1)) >> 64
        p[i], p[j] = p[j], p[i]
    return p


def expected(N, R, window, seed, shuffle, total):
    nblocks = (N + R - 1) // R
    K = min((window + R - 1) // R, nblocks)
    out, e = [], 0
    while len(out) < total:
        bp = perm(nblocks, seed, e, 0) if shuffle else list(range(nblocks))
        for w in range((nblocks + K - 1) // K):
            rows = [r for b in bp[w * K:(w + 1) * K] for r in range(b * R, min((b + 1) * R, N))]
            sg = perm(len(rows), seed, e, w + 1) if shuffle else range(len(rows))
            out += [rows[i] for i in sg]
        e += 1
    return out[:total]


dump, tmp = sys.argv[1], sys.argv[2]
path = f"{tmp}/stream_ref.h5"
N, d, R = 1000, 3, 64
X = np.zeros((N, d), np.float32)
X[:, 0] = np.arange(N)
with h5py.File(path, "w") as f:
    f.create_dataset("acts", data=X, chunks=(R, d))
    f.create_dataset("progress", data=np.ones(1, np.uint8))
    for k, v in dict(format_version=1, d=d, n_rows=N, n_contexts=0, context=1, n_shards=1, seed=0,
                     complete=1).items():
        f.attrs[k] = np.int64(v)
ok = True
for B, P, window, seed, shuffle, steps in [(50, 3, 200, 7, 1, 45), (64, 2, 1000, 123456789, 1, 20),
                                           (37, 4, 100, 2**63 + 5, 1, 30), (50, 3, 200, 7, 0, 25)]:
    out = subprocess.run([dump, path, str(B), str(P), str(window), str(seed), str(shuffle), str(steps)],
                         capture_output=True, text=True, check=True).stdout.split()
    got = [int(v) for v in out]
    want = expected(N, R, window, seed, shuffle, B * steps)
    same = got == want
    ok &= same
    print(f"B={B} P={P} window={window} seed={seed} shuffle={shuffle} steps={steps} "
          f"({B * steps} rows, {B * steps / N:.2f} epochs): {'same order' if same else 'DIFFERENT'}")
sys.exit(0 if ok else 1)
