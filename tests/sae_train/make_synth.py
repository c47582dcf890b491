#!/usr/bin/python3
"""Writes a synthetic activations.h5 with known sparse ground truth, with h5py only (so the C
reader is tested on a file it did not write): n_feat random unit directions in R^d, each row a
sparse non-negative combination of them. The true directions go to <out>.truth.npy.
Options: --nan ROW (put a NaN in that row), --incomplete (omit the `complete` attribute)."""
import argparse
import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--rows", type=int, default=200000)
ap.add_argument("--d", type=int, default=64)
ap.add_argument("--feats", type=int, default=256)
ap.add_argument("--active", type=float, default=3.0, help="mean active features per row")
ap.add_argument("--dtype", default="float16")
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--nan", type=int, action="append", default=[])
ap.add_argument("--incomplete", action="store_true")
a = ap.parse_args()

rng = np.random.default_rng(a.seed)
F = rng.standard_normal((a.feats, a.d))
F /= np.linalg.norm(F, axis=1, keepdims=True)
p = a.active / a.feats
rows = []
for lo in range(0, a.rows, 50000):
    n = min(50000, a.rows - lo)
    on = rng.random((n, a.feats)) < p
    mag = rng.uniform(0.5, 1.5, (n, a.feats)).astype(np.float32)
    codes = np.where(on, mag, 0.0).astype(np.float32)
    rows.append(codes @ F.astype(np.float32))
X = np.concatenate(rows).astype(a.dtype)
for r in a.nan:
    X[r, 1] = np.nan

context = 16
n_ctx = (a.rows + context - 1) // context
chunk = max(1, (1 << 20) // (a.d * X.itemsize))
with h5py.File(a.out, "w") as f:
    f.create_dataset("acts", data=X, chunks=(min(chunk, a.rows), a.d))
    idx = np.stack([np.arange(a.rows) // context, np.arange(a.rows) % context], 1).astype(np.int32)
    f.create_dataset("index", data=idx)
    f.create_dataset("tokens", data=(np.arange(n_ctx * context) % 50000).reshape(n_ctx, context).astype(np.int32))
    f.create_dataset("progress", data=np.ones(4, np.uint8) if not a.incomplete else np.array([1, 1, 0, 0], np.uint8))
    for k, v in dict(format_version=1, d=a.d, n_rows=a.rows, n_contexts=n_ctx, context=context,
                     n_shards=4, seed=a.seed).items():
        f.attrs[k] = np.int64(v)
    for k, v in dict(dtype=a.dtype, hook="synthetic.hook", model_sha256="0" * 64,
                     tokenizer_sha256="0" * 64, config_hash="0" * 16, config="synthetic\n",
                     version="synth").items():
        f.attrs[k] = v
    if not a.incomplete:
        f.attrs["complete"] = np.int64(1)
np.save(a.out + ".truth.npy", F.astype(np.float32))
