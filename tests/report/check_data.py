#!/usr/bin/env python3
"""Checks the report's data files against their sources, recomputed independently with NumPy:
every per-unit column and block slice equals the analysis HDF5 datasets, the token strings equal
vocab_bytes, and the nearest units equal a float64 decoder-cosine ranking (W_dec rows; neurons
are the identity). Usage: check_data.py RUN_DIR (the fixture of make_fixture.py, after
`monosem report`)."""
import glob
import json
import os
import sys

import h5py
import numpy as np

K_NEAR = 5


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def load_js(path, fn):
    text = open(path, encoding="utf-8").read()
    head = f"msReport.{fn}("
    if not text.startswith(head) or not text.endswith(");\n"):
        fail(f"{path}: expected {head}...);")
    return json.loads("[" + text[len(head):-3] + "]")


def same(name, got, want):
    want = np.asarray(want)
    got = np.array([np.nan if v is None else v for v in np.ravel(np.array(got, dtype=object))], dtype=np.float64)
    want = want.astype(np.float64).ravel()
    if got.shape != want.shape:
        fail(f"{name}: {got.shape} values, expected {want.shape}")
    nan = np.isnan(want)
    if not np.array_equal(np.isnan(got), nan):
        fail(f"{name}: NaN/null positions differ")
    # the files carry 5 significant digits
    if not np.allclose(got[~nan], want[~nan], rtol=1e-4, atol=1e-30):
        i = np.argmax(np.abs(got[~nan] - want[~nan]))
        fail(f"{name}: {got[~nan][i]} != {want[~nan][i]}")


def main():
    run = sys.argv[1]
    rep = os.path.join(run, "report")
    for f in ("index.html", "report.js", "report.css", "data/run.js", "data/vocab.js"):
        if not os.path.exists(os.path.join(rep, f)):
            fail(f"missing {f}")
    info = load_js(os.path.join(rep, "data/run.js"), "run")[0]
    dicts = {d["name"]: d for d in info["dicts"]}
    files = {"sae": os.path.join(run, "sae/analysis.h5"), "neurons": os.path.join(run, "neurons/analysis.h5")}
    if set(dicts) != set(files):
        fail(f"dictionaries {sorted(dicts)}")
    ev = json.load(open(os.path.join(run, "sae/eval.json")))
    if dicts["sae"]["eval"] != ev:
        fail("run.js does not carry eval.json as written")
    # directions: decoder rows (features), identity (neurons), unit-normalised in float64
    W = h5py.File(os.path.join(run, "sae/sae.h5"))["W_dec"][:].astype(np.float64)
    dirs = {"sae": W / np.linalg.norm(W, axis=1, keepdims=True), "neurons": np.eye(W.shape[1])}
    vocab = load_js(os.path.join(rep, "data/vocab.js"), "vocab")[0]
    checked = 0
    for name, path in files.items():
        f = h5py.File(path)
        U = dicts[name]["n_units"]
        if U != f["max_act"].shape[0]:
            fail(f"{name}: n_units {U}")
        off, raw = f["vocab_offsets"][:], f["vocab_bytes"][:].tobytes()
        for v in range(len(off) - 1):
            b = raw[off[v]:off[v + 1]]
            try:
                want = b.decode("utf-8")
            except UnicodeDecodeError:
                want = None
            if (want is not None and vocab[v] != want) or (want is None and "\ufffd" not in vocab[v]):
                fail(f"token {v}: {vocab[v]!r} from {b!r}")
        for k, v in f.attrs.items():
            if str(dicts[name]["attrs"].get(k)) != str(v):
                fail(f"{name}: attribute {k}: {dicts[name]['attrs'].get(k)!r} != {v!r}")
        for k in f:
            if k.startswith("measure_"):
                same(f"{name} globals {k}", dicts[name]["globals"][k], f[k][:])
        units = load_js(os.path.join(rep, "data", name, "units.js"), "units")
        if units[0] != name:
            fail("units.js names another dictionary")
        cols = units[1]
        for k in f:
            d = f[k]
            if d.ndim == 1 and d.shape[0] == U and not k.startswith(("vocab_", "measure_")):
                same(f"{name} column {k}", cols[k], d[:])
        same(f"{name} _top_token", cols["_top_token"], f["top_token"][:])
        blocks = sorted(glob.glob(os.path.join(rep, "data", name, "block-*.js")))
        B = dicts[name]["block"]
        if len(blocks) != -(-U // B):
            fail(f"{name}: {len(blocks)} blocks for {U} units of {B}")
        for bi, bp in enumerate(blocks):
            nm, b, body = load_js(bp, "block")
            u0, n = body["u0"], body["n"]
            if nm != name or b != bi or u0 != bi * B or n != min(B, U - u0):
                fail(f"{bp}: header {nm} {b} {u0} {n}")
            for k in f:
                if f[k].ndim >= 2 and f[k].shape[0] == U:
                    same(f"{name} block {b} {k}", body["data"][k], f[k][u0:u0 + n])
                    checked += 1
            for other, near in body["nearest"].items():
                cos = dirs[name][u0:u0 + n] @ dirs[other].T
                order = np.argsort(-cos, axis=1, kind="stable")[:, :K_NEAR]
                want = np.take_along_axis(cos, order, axis=1)
                same(f"{name}->{other} block {b} cosines", near["cos"], want)
                ids = np.array(near["ids"])
                # ids must be where numpy ranks them unless two cosines tie to float32 rounding
                gap = np.abs(np.take_along_axis(cos, ids, axis=1) - want)
                if np.any(gap > 1e-5):
                    fail(f"{name}->{other} block {b}: nearest ids differ from the NumPy ranking")
            want_near = {o for o in files if o != name}
            if set(body["nearest"]) != want_near:
                fail(f"{name}: nearest lists for {sorted(body['nearest'])}, expected {sorted(want_near)}")
    print(f"ok: {len(files)} dictionaries, {checked} block slices equal the analysis files; nearest units match NumPy")


if __name__ == "__main__":
    main()
