#!/usr/bin/python3
"""monosem's SAELens export read through a re-implementation of SAELens v6's loading rules.

For every recipe (relu-l1, topk, batchtopk, jumprelu, april-2024 with an input scale) the
driver writes a random SAE's export plus inputs x and monosem's own feature activations f
(computed before the export, input scale applied), and f re-read through ms_saelens_open.
This test loads the directory the way SAELens v6 does, key by key:
  - cfg.json: `metadata.sae_lens_version` must be present (else SAELens runs its pre-6
    conversion); required d_in, d_sae, dtype; the architecture picks the config class and its
    known top-level keys (unknown top-level keys are dropped: none of monosem's provenance may
    be among them); `metadata` is kept whole; prepend_bos defaults to true when absent; topk
    reads `k` at the top level (default 100); normalize_activations must be "none";
  - sae_weights.safetensors strictly: exactly W_enc, b_enc, W_dec, b_dec (+ threshold for
    jumprelu), shapes checked;
  - encode: standard relu((x - b_dec) W_enc + b_enc); topk: top k of the pre-activations,
    ReLU; jumprelu relu(z)·[z > θ];
and checks the feature activations equal monosem's.
usage: saelens_ref.py SAELENS_DRIVER WORKDIR
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

FAILS = []
D_IN, D_SAE, ROWS = 24, 64, 50

# SAELens v6 config fields per architecture (SAEConfig and its subclasses)
BASE_FIELDS = {"d_in", "d_sae", "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
               "reshape_activations", "metadata", "architecture"}
ARCH_FIELDS = {"standard": set(), "jumprelu": set(), "topk": {"k", "rescale_acts_by_decoder_norm"}}
WEIGHTS = {"standard": {"W_enc", "b_enc", "W_dec", "b_dec"}, "topk": {"W_enc", "b_enc", "W_dec", "b_dec"},
           "jumprelu": {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}}


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    meta = h.pop("__metadata__", {})
    out = {}
    for k, v in h.items():
        check(v["dtype"] == "F32", f"{path}: {k} is F32")
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], "<f4").reshape(v["shape"]).astype(np.float64)
    return out, meta


def load_v6(d):
    """SAELens v6 SAE.load_from_disk, as rules: returns (cfg, weights) or fails checks."""
    raw = json.load(open(os.path.join(d, "cfg.json")))
    md = raw.get("metadata")
    check(isinstance(md, dict) and "sae_lens_version" in md, f"{d}: v6 layout (metadata.sae_lens_version)")
    for k in ("d_in", "d_sae", "dtype"):
        check(k in raw, f"{d}: required key {k}")
    arch = raw.get("architecture", "standard")
    check(arch in ARCH_FIELDS, f"{d}: architecture {arch} known to SAELens")
    known = BASE_FIELDS | ARCH_FIELDS.get(arch, set())
    dropped = sorted(set(raw) - known)
    check(not dropped, f"{d}: no top-level key dropped by SAELens (dropped: {dropped})")
    cfg = {k: v for k, v in raw.items() if k in known}
    md = dict(md or {})
    for k in ("hook_name", "model_name", "context_size", "dataset_path"):
        check(k in md, f"{d}: metadata.{k} survives")
    check(md.get("prepend_bos", True) is False, f"{d}: prepend_bos false as SAELens reads it")
    check(cfg.get("normalize_activations", "none") == "none", f"{d}: normalize_activations none")
    if arch == "topk":
        check("k" in raw, f"{d}: topk k at the top level (v6 would use its default 100)")
        cfg["k"] = raw.get("k", 100)
    w, _ = read_safetensors(os.path.join(d, "sae_weights.safetensors"))
    check(set(w) == WEIGHTS[arch], f"{d}: strict tensor keys {sorted(w)} == {sorted(WEIGHTS[arch])}")
    shapes = {"W_enc": (raw["d_in"], raw["d_sae"]), "b_enc": (raw["d_sae"],), "W_dec": (raw["d_sae"], raw["d_in"]),
              "b_dec": (raw["d_in"],), "threshold": (raw["d_sae"],)}
    for k, v in w.items():
        check(v.shape == shapes[k], f"{d}: {k} shape {v.shape}")
    return arch, cfg, w


def encode(arch, cfg, w, x):
    sae_in = x - w["b_dec"] * (1.0 if cfg.get("apply_b_dec_to_input", True) else 0.0)
    h = sae_in @ w["W_enc"] + w["b_enc"]
    if arch == "standard":
        return np.maximum(h, 0)
    if arch == "jumprelu":
        return np.maximum(h, 0) * (h > w["threshold"])
    k = cfg["k"]
    idx = np.argsort(-h, axis=-1, kind="stable")[:, :k]
    f = np.zeros_like(h)
    np.put_along_axis(f, idx, np.maximum(np.take_along_axis(h, idx, -1), 0), -1)
    return f


def agree(got, want, what):
    scale = np.abs(want).max() + 1e-30
    bad = np.abs(got - want) > 1e-5 * scale
    check(bad.sum() <= 1, f"{what}: {bad.sum()} of {bad.size} activations differ (max |diff| "
          f"{np.abs(got - want).max():.2e}, scale {scale:.3g})")


def main():
    driver, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    r = subprocess.run([driver, work], capture_output=True, text=True)
    check(r.returncode == 0, f"saelens_driver exits 0 {r.stderr.strip()[:300]}")
    want_arch = {"relu-l1": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu",
                 "april-2024": "standard"}
    for a, sl in want_arch.items():
        d = os.path.join(work, a)
        x = np.fromfile(os.path.join(d, "x.f32"), "<f4").reshape(ROWS, D_IN).astype(np.float64)
        f = np.fromfile(os.path.join(d, "f.f32"), "<f4").reshape(ROWS, D_SAE).astype(np.float64)
        f2 = np.fromfile(os.path.join(d, "f_reopened.f32"), "<f4").reshape(ROWS, D_SAE).astype(np.float64)
        arch, cfg, w = load_v6(os.path.join(d, "saelens"))
        check(arch == sl, f"{a}: saved as SAELens {sl}")
        check((f != 0).sum() > 0 and (f == 0).sum() > 0, f"{a}: the test activations are sparse, not trivial")
        agree(encode(arch, cfg, w, x), f, f"{a}: SAELens-rule activations == monosem's")
        agree(f2, f, f"{a}: re-opened by monosem eval's loader == monosem's")
        sp, meta = read_safetensors(os.path.join(d, "saelens", "sparsity.safetensors"))
        check(set(sp) == {"sparsity"} and sp["sparsity"].shape == (D_SAE,) and "density_source" in meta,
              f"{a}: sparsity.safetensors (sparsity (d_sae), source in metadata)")
    print(f"{len(FAILS)} failure(s)")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
