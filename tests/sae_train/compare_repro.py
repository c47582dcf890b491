#!/usr/bin/python3
"""Bitwise comparison of SAE runs (sae.reproducible) on different rank counts:
   compare_repro.py REF_SAE_DIR OTHER_SAE_DIR...
Every tensor of checkpoint.safetensors (+ .prev), saelens/*.safetensors, every dataset and
attribute of sae.h5, cfg.json and metrics.jsonl must be bitwise equal. Not compared, and why:
the checkpoint's n_ranks metadata (it records the launch); metrics.jsonl's tokens_per_s (a
timer); sae.h5's file bytes (HDF5 stores object timestamps, so equal datasets still give
different files: compared dataset by dataset instead). Exit 1 naming the first difference."""
import json, os, struct, sys

import h5py
import numpy as np

SKIP_META = {"n_ranks"}


def safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    meta = head.pop("__metadata__", {})
    tensors = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in head.items()}
    return meta, tensors, {k: (v["dtype"], v["shape"]) for k, v in head.items()}


def same_safetensors(a, b):
    ma, ta, sa = safetensors(a)
    mb, tb, sb = safetensors(b)
    if sa != sb:
        return f"{b}: tensor names/shapes differ from {a}"
    for k in ta:
        if ta[k] != tb[k]:
            x = np.frombuffer(ta[k], dtype=np.uint8)
            y = np.frombuffer(tb[k], dtype=np.uint8)
            return f"{b}: tensor {k} differs from {a} ({int((x != y).sum())} bytes)"
    for k in set(ma) | set(mb):
        if k not in SKIP_META and ma.get(k) != mb.get(k):
            return f"{b}: metadata {k} differs: {ma.get(k)!r} vs {mb.get(k)!r}"
    return None


def same_h5(a, b):
    fa, fb = h5py.File(a, "r"), h5py.File(b, "r")
    names = []
    fa.visit(names.append)
    nb = []
    fb.visit(nb.append)
    if sorted(names) != sorted(nb):
        return f"{b}: datasets differ from {a}: {sorted(names)} vs {sorted(nb)}"
    for obj in [""] + names:
        ga, gb = (fa[obj], fb[obj]) if obj else (fa, fb)
        if dict(ga.attrs) != dict(gb.attrs):
            return f"{b}: attributes of /{obj} differ"
        if isinstance(ga, h5py.Dataset):
            x, y = ga[...], gb[...]
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                return f"{b}: dataset /{obj} differs from {a}"
    return None


def metrics(path):
    out = []
    for line in open(path):
        d = json.loads(line)
        d.pop("tokens_per_s", None)
        out.append(d)
    return out


def compare(ref, other):
    for rel in ("checkpoint.safetensors", "checkpoint.safetensors.prev",
                "saelens/sae_weights.safetensors", "saelens/sparsity.safetensors"):
        a, b = os.path.join(ref, rel), os.path.join(other, rel)
        if os.path.exists(a) != os.path.exists(b):
            return f"{rel}: present in only one of {ref}, {other}"
        if os.path.exists(a) and (e := same_safetensors(a, b)):
            return e
    if (e := same_h5(os.path.join(ref, "sae.h5"), os.path.join(other, "sae.h5"))):
        return e
    if open(os.path.join(ref, "saelens/cfg.json")).read() != open(os.path.join(other, "saelens/cfg.json")).read():
        return f"{other}: saelens/cfg.json differs"
    ma, mb = metrics(os.path.join(ref, "metrics.jsonl")), metrics(os.path.join(other, "metrics.jsonl"))
    if ma != mb:
        bad = next(i for i in range(min(len(ma), len(mb)) + 1) if i >= len(ma) or i >= len(mb) or ma[i] != mb[i])
        return f"{other}: metrics.jsonl line {bad + 1} differs"
    return None


def main():
    ref, others = sys.argv[1], sys.argv[2:]
    bad = 0
    for o in others:
        e = compare(ref, o)
        print(f"{o}: {'DIFFERS: ' + e if e else 'bitwise identical to ' + ref}")
        bad += e is not None
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
