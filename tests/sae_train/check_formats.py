#!/usr/bin/python3
"""Reads monosem's files with h5py/NumPy only and checks they are as docs/formats.md says.
  check_formats.py acts FILE.h5        (written by test_actwriter_mpi: values known)
  check_formats.py sae OUT_DIR D_IN D_SAE   (a train stage's outputs)"""
import json
import struct
import sys

import h5py
import numpy as np

ST_DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], dtype=ST_DT[v["dtype"]]).reshape(v["shape"])
    return out, head.get("__metadata__", {})


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def acts(path):
    with h5py.File(path, "r") as f:
        a = f.attrs
        check(int(a["complete"]) == 1, "complete attribute")
        check(int(a["format_version"]) == 1, "format_version")
        N, d = int(a["n_rows"]), int(a["d"])
        X = f["acts"]
        check(X.dtype == np.float16 and X.shape == (N, d), f"/acts dtype/shape {X.dtype} {X.shape}")
        check(X.chunks is not None and X.chunks[1] == d, "/acts chunked by rows")
        i = np.arange(N)[:, None]
        j = np.arange(d)[None, :]
        check(np.array_equal(X[...].astype(np.float64), i * 0.25 - j * 1.5), "/acts values")
        idx = f["index"][...]
        check(idx.dtype == np.int32 and np.array_equal(idx[:, 0], np.arange(N) // int(a["context"])), "/index")
        check(f["tokens"].shape == (int(a["n_contexts"]), int(a["context"])), "/tokens shape")
        check(f["progress"][...].tolist() == [1] * int(a["n_shards"]), "/progress all done")
        for k in ("hook", "model_sha256", "tokenizer_sha256", "config_hash", "config", "version", "dtype"):
            check(k in a, f"attribute {k}")
        check(a["dtype"] == "float16" or a["dtype"] == b"float16", "dtype attribute")
    print(f"acts: {path}: N={N} d={d} float16, attributes and values as documented")


def sae(out, d_in, d_sae):
    with h5py.File(f"{out}/sae.h5", "r") as f:
        shapes = {k: f[k].shape for k in f}
        want = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,),
                "threshold": (d_sae,), "log10_density": (d_sae,)}
        for k, s in want.items():
            check(shapes.get(k) == s, f"sae.h5 {k} shape {shapes.get(k)} != {s}")
        h5 = {k: f[k][...] for k in want}
        check(f["resample_history"].shape[1:] == (2,), "resample_history (n,2)")
        check("arch" in f.attrs and "config_hash" in f.attrs, "sae.h5 attributes")
    w, meta = read_safetensors(f"{out}/saelens/sae_weights.safetensors")
    for k in ("W_enc", "b_enc", "W_dec", "b_dec"):
        check(w[k].dtype == np.float32 and np.array_equal(w[k], h5[k]), f"saelens {k} == sae.h5 {k}")
    cfg = json.load(open(f"{out}/saelens/cfg.json"))
    for k in ("d_in", "d_sae", "architecture", "dtype", "metadata"):
        check(k in cfg, f"cfg.json has {k}")
    md = cfg.get("metadata", {})
    for k in ("sae_lens_version", "hook_name", "context_size", "model_name", "dataset_path"):
        check(k in md, f"cfg.json metadata has {k} (SAELens v6 layout)")
    check(md.get("prepend_bos") is False, "cfg.json metadata.prepend_bos is false (monosem contexts have no BOS)")
    check(cfg["architecture"] != "topk" or isinstance(cfg.get("k"), int), "topk: k at the top level")
    check(cfg["d_in"] == d_in and cfg["d_sae"] == d_sae, "cfg.json dims")
    sp, _ = read_safetensors(f"{out}/saelens/sparsity.safetensors")
    check(sp["sparsity"].shape == (d_sae,) and np.all(sp["sparsity"] <= 0), "sparsity = log10 density")
    check(np.allclose(sp["sparsity"], h5["log10_density"]), "sparsity matches sae.h5")
    ck, cmeta = read_safetensors(f"{out}/checkpoint.safetensors")
    check("config_hash" in cmeta and ck["state"].shape == (17,), "checkpoint state")
    lines = [json.loads(l) for l in open(f"{out}/metrics.jsonl")]
    for k in ("step", "mse", "fvu", "l0", "l1", "dead", "ultralow", "lr", "tokens_per_s"):
        check(k in lines[-1], f"metrics has {k}")
    steps = [l["step"] for l in lines]
    check(steps == sorted(set(steps)), "metrics steps increasing, no duplicates")
    print(f"sae: {out}: sae.h5, SAELens dir, checkpoint and metrics as documented")


if __name__ != "__main__":
    pass
elif sys.argv[1] == "acts":
    acts(sys.argv[2])
else:
    sae(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
