#!/usr/bin/env python3
"""Reference for the study's statistics (libsae/correlate.c, splitting.c): sparse ReLU-like
unit activations with planted correlated pairs, a never-firing unit and a constant unit, run
through corr_driver under mpirun with 1 and 3 ranks (column blocks forcing several passes),
compared with NumPy: Pearson max-correlation per unit and its argmax, decoder-cosine best
matches, families, median and histogram.
usage: ref_corr.py DRIVER MPIRUN "MPI FLAGS" TMPDIR"""
import json, os, subprocess, sys
import numpy as np

driver, mpirun, flags, tmp = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4]
os.makedirs(tmp, exist_ok=True)
rng = np.random.default_rng(14)
n, da, db, d = 997, 37, 53, 12

# a: sparse nonnegative codes; b: some columns follow a column of a (plus noise), others not
za = rng.normal(size=(n, da)) - 0.8
a = np.maximum(za, 0).astype(np.float32)
b = np.maximum(rng.normal(size=(n, db)) - 0.8, 0)
for j in range(0, db, 2):
    b[:, j] = np.maximum(za[:, (j * 7) % da] + 0.4 * rng.normal(size=n), 0)
a[:, 5] = 0.0        # never fires: no variance
b[:, 11] = 1.5       # constant: no variance
b = b.astype(np.float32)
# decoders: b's rows are perturbed copies of a's rows for a split-like structure
Wa = rng.normal(size=(da, d)).astype(np.float32)
Wb = rng.normal(size=(db, d)).astype(np.float32)
for j in range(db):
    if j % 3 != 2:
        Wb[j] = Wa[(j * 5) % da] + 0.5 * rng.normal(size=d)
Wb[7] = 0.0          # a zero decoder row matches nothing
for name, x in (("a", a), ("b", b), ("Wa", Wa), ("Wb", Wb)):
    x.astype(np.float32).tofile(os.path.join(tmp, name + ".f32"))

# ---- NumPy reference in float64
def pearson(x, y):
    x = x.astype(np.float64); y = y.astype(np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    sx, sy = np.sqrt((xc ** 2).sum(0)), np.sqrt((yc ** 2).sum(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (xc.T @ yc) / np.outer(sx, sy)
    r[sx == 0, :] = np.nan
    r[:, sy == 0] = np.nan
    return r

R = pearson(a, b)
Wan = Wa / np.maximum(np.linalg.norm(Wa, axis=1, keepdims=True), 1e-300)
Wbn = Wb / np.maximum(np.linalg.norm(Wb, axis=1, keepdims=True), 1e-300)
C = Wan.astype(np.float64) @ Wbn.T.astype(np.float64)
C[:, 7] = np.nan

def best(M, axis):
    allnan = np.all(np.isnan(M), axis=axis)
    mx = np.where(allnan, -np.inf, np.nanmax(np.where(np.isnan(M), -np.inf, M), axis=axis))
    arg = np.where(allnan, -1, np.argmax(np.where(np.isnan(M), -np.inf, M), axis=axis))
    # second best, to skip argmax checks where two candidates are within rounding
    Ms = np.sort(np.where(np.isnan(M), -np.inf, M), axis=axis)
    second = np.take(Ms, -2, axis=axis)
    return mx, arg, mx - second

fails = []
def check(cond, what):
    if not cond:
        fails.append(what)

for np_ranks in (1, 3):
    for f in os.listdir(tmp):
        if f.startswith("out_"):
            os.remove(os.path.join(tmp, f))
    cmd = [mpirun, "-n", str(np_ranks)] + flags + [driver, tmp, str(da), str(db), str(d), str(n), "20"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        print(p.stdout, p.stderr); sys.exit(1)
    info = json.loads(p.stdout.strip().splitlines()[-1])
    load = lambda nm, dt: np.fromfile(os.path.join(tmp, "out_%s.bin" % nm), dtype=dt)
    tag = "%d rank(s)" % np_ranks
    check(info["reductions"] == 3, "%s: expected 3 column blocks (one reduction each), got %d" % (tag, info["reductions"]))
    # Pearson from raw sums in float GEMMs: error ~1e-6 relative on the sums; 1e-4 is far
    # above rounding on any CPU and far below a real mistake (wrong centring: > 1e-2)
    for axis, nm in ((1, "row"), (0, "col")):
        mx, arg, gap = best(R, axis)
        got, garg = load(nm + "_max", np.float32), load(nm + "_arg", np.int64)
        fin = np.isfinite(mx)
        check(np.array_equal(np.isfinite(got), fin), "%s: %s: undefined units differ" % (tag, nm))
        check(np.all(np.abs(got[fin] - mx[fin]) < 1e-4), "%s: %s max corr off by %.3g" % (tag, nm, np.max(np.abs(got[fin] - mx[fin]))))
        sure = fin & (gap > 1e-3)
        check(np.array_equal(garg[sure], arg[sure]), "%s: %s argmax differs" % (tag, nm))
        check(np.all(garg[~fin] == -1), "%s: %s undefined units must have arg -1" % (tag, nm))
    check(load("row_max", np.float32)[5] == -np.inf, "%s: never-firing unit must be undefined" % tag)
    check(load("col_max", np.float32)[11] == -np.inf, "%s: constant unit must be undefined" % tag)
    rm = load("row_max", np.float32)
    check(abs(info["median"] - np.median(rm[np.isfinite(rm)])) < 1e-6, "%s: median" % tag)
    h, _ = np.histogram(np.clip(rm[np.isfinite(rm)], -1, np.nextafter(1, 0)), bins=10, range=(-1, 1))
    check(np.array_equal(load("hist", np.int64), h) and info["hist_used"] == h.sum(), "%s: histogram" % tag)
    # decoder cosine: float GEMM of unit vectors, error ~1e-6
    for axis, nm in ((1, "row"), (0, "col")):
        mx, arg, gap = best(C, axis)
        got, garg = load("cos_%s_max" % nm, np.float32), load("cos_%s_arg" % nm, np.int64)
        fin = np.isfinite(mx)
        check(np.all(np.abs(got[fin] - mx[fin]) < 1e-5), "%s: cos %s max" % (tag, nm))
        sure = fin & (gap > 1e-4)
        check(np.array_equal(garg[sure], arg[sure]), "%s: cos %s argmax" % (tag, nm))
    ccol, carg = load("cos_col_max", np.float32), load("cos_col_arg", np.int64)
    check(carg[7] == -1 and ccol[7] == -np.inf, "%s: zero decoder row must match nothing" % tag)
    # families from the driver's own best matches (min cosine 0.3)
    member = np.where((carg >= 0) & (ccol >= 0.3), carg, -1)
    check(np.array_equal(load("member", np.int64), member), "%s: family members" % tag)
    size = np.bincount(member[member >= 0], minlength=da)
    check(np.array_equal(load("size", np.int64), size), "%s: family sizes" % tag)
    check(info["families"] == int((size > 0).sum()), "%s: family count" % tag)
    check(size.max() >= 2, "%s: the planted structure must give a split family" % tag)

if fails:
    print("FAIL:\n  " + "\n  ".join(fails)); sys.exit(1)
print("ok: correlation, best matches, decoder cosines, families, median, histogram on 1 and 3 ranks")
