#!/usr/bin/python3
"""e2e test of `monosem forward MODEL_DIR TOKENS --hook NAME --out out.h5`: the HDF5 it writes
(/logits (B,T,V), /loss (B,T-1), /hook (B,T,d), float32) against the NumPy forward of
ref_forward.py, in one slice and in several (--batch), under mpirun -n 2, and its errors.
usage: forward_cli.py WORKDIR   (env MS_BIN, MS_MPIRUN, MS_MPI_FLAGS)"""
import os
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_forward as rf  # noqa: E402

WORK = sys.argv[1]
os.makedirs(WORK, exist_ok=True)
MONOSEM = os.path.join(os.environ["MS_BIN"], "monosem")

cfg = rf.base_cfg(n_layers=2, act_fn="gelu")
rng = np.random.default_rng(5)
W = rf.random_model(cfg, rng)
mdir = os.path.join(WORK, "model")
rf.save_model(mdir, cfg, W)
Wref = {k: v.astype(np.float64) for k, v in W.items()}
B, T = 5, cfg["n_ctx"]
tokens = rng.integers(0, cfg["d_vocab"], size=(B, T))
tok_path = os.path.join(WORK, "tokens.txt")
with open(tok_path, "w") as f:
    for row in tokens:
        f.write(" ".join(map(str, row)) + "\n")
logits, loss, hooks = rf.np_forward(cfg, Wref, tokens)


def run(args, mpi=0):
    cmd = [MONOSEM, "forward"] + args
    if mpi:
        cmd = [os.environ.get("MS_MPIRUN", "mpirun"), "-n", str(mpi)] + os.environ.get("MS_MPI_FLAGS", "").split() + cmd
    return subprocess.run(cmd, capture_output=True, text=True)


for label, extra, mpi, hook in [("one slice", [], 0, "blocks.1.mlp.hook_post"),
                                ("slices of 2", ["--batch", "2"], 0, "blocks.0.hook_resid_mid"),
                                ("mpirun -n 2", [], 2, "blocks.0.mlp.hook_post")]:
    out = os.path.join(WORK, f"out_{len(extra)}_{mpi}.h5")
    r = run([mdir, tok_path, "--hook", hook, "--out", out] + extra, mpi)
    rf.check(r.returncode == 0, f"{label}: exit 0 ({r.stderr.strip()[-300:]})")
    if r.returncode:
        continue
    with h5py.File(out, "r") as f:
        rf.check(f["logits"].dtype == np.float32 and f["logits"].shape == (B, T, cfg["d_vocab"]), f"{label}: /logits shape")
        rf.check(f["loss"].shape == (B, T - 1) and f["hook"].shape == hooks[hook].shape, f"{label}: /loss, /hook shapes")
        rf.close(f["logits"][...], logits, f"{label}: logits")
        rf.close(f["loss"][...], loss, f"{label}: loss")
        rf.close(f["hook"][...], hooks[hook], f"{label}: {hook}")
        rf.check(f.attrs["hook"].decode() == hook, f"{label}: hook attribute")
    rf.check(not [p for p in os.listdir(WORK) if ".tmp." in p], f"{label}: no temporary file left")

# errors: one line naming the problem, non-zero exit, no output file
long_path = os.path.join(WORK, "long.txt")
with open(long_path, "w") as f:
    f.write(" ".join(["1"] * (cfg["n_ctx"] + 1)) + "\n")
oov_path = os.path.join(WORK, "oov.txt")
with open(oov_path, "w") as f:
    f.write("1 2 3\n4 5 %d\n" % cfg["d_vocab"])
for label, args, expect in [
    ("context longer than n_ctx", [mdir, long_path, "--hook", "blocks.0.mlp.hook_post"], "n_ctx"),
    ("token outside vocabulary", [mdir, oov_path, "--hook", "blocks.0.mlp.hook_post"], "oov.txt:2"),
    ("unknown hook", [mdir, tok_path, "--hook", "blocks.0.mlp.hook_foo"], "blocks.0.mlp.hook_foo"),
    ("layer out of range", [mdir, tok_path, "--hook", "blocks.2.mlp.hook_post"], "layer 2"),
    ("missing model", [os.path.join(WORK, "nope"), tok_path, "--hook", "blocks.0.mlp.hook_post"], "nope"),
]:
    out = os.path.join(WORK, "err.h5")
    r = run(args + ["--out", out])
    rf.check(r.returncode != 0 and r.returncode < 128 and expect in r.stderr and not os.path.exists(out),
             f"error: {label}: rc={r.returncode} '{r.stderr.strip()}'")

print(f"{len(rf.FAILS)} failure(s)")
sys.exit(1 if rf.FAILS else 0)
