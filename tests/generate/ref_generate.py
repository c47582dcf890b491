#!/usr/bin/python3
"""tests/generate/ref_generate.py: independent NumPy/h5py oracle for `monosem generate`.

  ref_generate.py tokenizer DIR            byte-level GPT-2 style vocab.json + merges.txt (no merges)
  ref_generate.py ref ACTS.h5 MODEL_DIR     h5py reads the file as docs describe it; every row is
                                            recomputed with a NumPy forward from model.safetensors
  ref_generate.py same A.h5 B.h5 ...        /acts, /tokens, /index identical (bitwise) across files
  ref_generate.py differ A.h5 B.h5          /index differs (another seed samples other positions)
Exit status 0 when the check holds; 1 with a FAIL line otherwise.
"""
import json
import struct
import sys

import h5py
import numpy as np


def bytes_to_unicode():
    # GPT-2's printable stand-ins for the 256 byte values
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def write_tokenizer(d):
    enc = {ch: b for b, ch in sorted(bytes_to_unicode().items())}
    enc["<|endoftext|>"] = 256
    with open(f"{d}/vocab.json", "w") as f:
        json.dump(enc, f)
    with open(f"{d}/merges.txt", "w") as f:
        f.write("#version: 0.2\n")


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        assert v["dtype"] == "F32", (k, v["dtype"])
        b, e = v["data_offsets"]
        out[k] = np.frombuffer(data[b:e], dtype="<f4").reshape(v["shape"]).astype(np.float64)
    return out


def layernorm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def act(x, name):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "gelu_new":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    from math import erf
    return 0.5 * x * (1 + np.vectorize(erf)(x / np.sqrt(2)))


def forward_to_hook(W, cfg, tokens, hook):
    """TransformerLens forward of tokens (B,T) in float64 up to `hook` ("blocks.L.<name>")."""
    _, L, name = hook.split(".", 2)
    L = int(L)
    eps = cfg.get("eps", 1e-5)
    B, T = tokens.shape
    x = W["embed.W_E"][tokens] + W["pos_embed.W_pos"][:T][None]
    for l in range(L + 1):
        p = f"blocks.{l}."
        if l == L and name == "hook_resid_pre":
            return x
        h = layernorm(x, W[p + "ln1.w"], W[p + "ln1.b"], eps)
        q = np.einsum("btc,hcd->bthd", h, W[p + "attn.W_Q"]) + W[p + "attn.b_Q"]
        k = np.einsum("btc,hcd->bthd", h, W[p + "attn.W_K"]) + W[p + "attn.b_K"]
        v = np.einsum("btc,hcd->bthd", h, W[p + "attn.W_V"]) + W[p + "attn.b_V"]
        s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
        s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        z = np.einsum("bhqk,bkhd->bqhd", s, v)
        attn_out = np.einsum("bqhd,hdc->bqc", z, W[p + "attn.W_O"]) + W[p + "attn.b_O"]
        if l == L and name == "hook_attn_out":
            return attn_out
        x = x + attn_out
        if l == L and name == "hook_resid_mid":
            return x
        h = layernorm(x, W[p + "ln2.w"], W[p + "ln2.b"], eps)
        pre = h @ W[p + "mlp.W_in"] + W[p + "mlp.b_in"]
        if l == L and name == "mlp.hook_pre":
            return pre
        post = act(pre, cfg["act_fn"])
        if l == L and name == "mlp.hook_post":
            return post
        out = post @ W[p + "mlp.W_out"] + W[p + "mlp.b_out"]
        if l == L and name == "hook_mlp_out":
            return out
        x = x + out
        if l == L and name == "hook_resid_post":
            return x
    raise SystemExit(f"FAIL: hook {hook} not supported by the oracle")


def ref(path, model_dir):
    cfg = json.load(open(f"{model_dir}/config.json"))
    W = load_safetensors(f"{model_dir}/model.safetensors")
    with h5py.File(path, "r") as f:
        a = f.attrs
        need = ["complete", "format_version", "d", "n_rows", "n_contexts", "context", "n_shards", "seed",
                "dtype", "hook", "model_sha256", "tokenizer_sha256", "config_hash", "config", "version"]
        missing = [k for k in need if k not in a]
        if missing:
            raise SystemExit(f"FAIL: {path}: missing attributes {missing}")
        if int(a["complete"]) != 1:
            raise SystemExit(f"FAIL: {path}: not complete")
        acts, index, tokens, progress = f["acts"], f["index"], f["tokens"], f["progress"]
        N, d = acts.shape
        C, T = tokens.shape
        dt = a["dtype"].decode() if isinstance(a["dtype"], bytes) else a["dtype"]
        if (N, d, C, T) != (a["n_rows"], a["d"], a["n_contexts"], a["context"]) or index.shape != (N, 2):
            raise SystemExit(f"FAIL: shapes {acts.shape} {index.shape} {tokens.shape} vs attributes")
        if np.dtype(acts.dtype) != np.dtype(np.float16 if dt == "float16" else np.float32):
            raise SystemExit(f"FAIL: /acts dtype {acts.dtype}, attribute says {dt}")
        if index.dtype != np.int32 or tokens.dtype != np.int32 or not np.all(progress[:] == 1):
            raise SystemExit("FAIL: /index or /tokens not int32, or /progress not all done")
        hook = a["hook"].decode() if isinstance(a["hook"], bytes) else a["hook"]
        X, I, TK = acts[:].astype(np.float64), index[:], tokens[:]
    K = N // C
    ctx = np.repeat(np.arange(C), K)
    if not np.array_equal(I[:, 0], ctx):
        raise SystemExit("FAIL: /index[:,0] is not each context repeated K times in order")
    pos = I[:, 1].reshape(C, K)
    if pos.min() < 0 or pos.max() >= T or (K > 1 and not np.all(np.diff(pos, axis=1) > 0)):
        raise SystemExit("FAIL: sampled positions out of range or not strictly ascending")
    worst = 0.0
    for c0 in range(0, C, 64):
        tk = TK[c0:c0 + 64]
        h = forward_to_hook(W, cfg, tk, hook)  # (b,T,d)
        b = tk.shape[0]
        want = h[np.repeat(np.arange(b), K), pos[c0:c0 + b].ravel()]
        got = X[c0 * K:(c0 + b) * K]
        # relative error, with a floor of 1% of the activations' RMS so values near 0 compare
        # on the scale of the data (float32 vs float64 sums leave ~1e-7 absolute)
        floor = 1e-2 * max(float(np.sqrt((want ** 2).mean())), 1e-6)
        err = np.abs(got - want) / (np.abs(want) + floor)
        worst = max(worst, float(err.max()))
    tol = 1.0 / 1024 if dt == "float16" else 1e-4
    print(f"ref: {C} contexts x {K} rows x {d} ({hook}, {dt}): max rel err vs NumPy {worst:.3g} (tol {tol:.3g}); "
          f"positions used {np.unique(pos).size}/{T}")
    if not worst <= tol:
        raise SystemExit(f"FAIL: rows differ from the NumPy forward (max rel err {worst:.3g} > {tol:.3g})")
    if K < T and np.unique(pos).size < min(T, 2 * K):
        raise SystemExit("FAIL: sampled positions do not vary across contexts")


def load_arrays(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in ("acts", "tokens", "index")}


def main():
    cmd = sys.argv[1]
    if cmd == "tokenizer":
        write_tokenizer(sys.argv[2])
    elif cmd == "ref":
        ref(sys.argv[2], sys.argv[3])
    elif cmd == "same":
        base = load_arrays(sys.argv[2])
        for p in sys.argv[3:]:
            other = load_arrays(p)
            for k in base:
                if base[k].shape != other[k].shape or base[k].tobytes() != other[k].tobytes():
                    raise SystemExit(f"FAIL: /{k} of {p} differs from {sys.argv[2]}")
        print(f"same: /acts /tokens /index identical across {len(sys.argv) - 2} files "
              f"({base['acts'].shape[0]} rows)")
    elif cmd == "differ":
        a, b = load_arrays(sys.argv[2]), load_arrays(sys.argv[3])
        if np.array_equal(a["index"], b["index"]):
            raise SystemExit("FAIL: another seed sampled the same positions")
        print("differ: another seed samples other positions")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
