#!/usr/bin/python3
"""Reference test of the C transformer forward against an independent NumPy implementation.

Writes random models as safetensors (its own writer, not the C one), runs tests/model's
model_driver on them and compares logits, per-token loss and hooked activations to float64
NumPy at 1e-4 relative. Also feeds broken weight files and checks for one-line errors that
name the file and the tensor, never a crash.
usage: ref_forward.py MODEL_DRIVER WORKDIR
"""
import json
import math
import os
import struct
import subprocess
import sys

import numpy as np

DRIVER = WORK = None
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


# ---------------------------------------------------------------- safetensors writer (NumPy)
DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I32": np.int32}


def write_safetensors(path, tensors, dtype="F32", header_override=None, truncate=0):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        if dtype == "BF16":
            u = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
            raw = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()  # round to nearest even
        else:
            raw = np.ascontiguousarray(arr, dtype=DT[dtype]).astype(np.dtype(DT[dtype]).newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode() if header_override is None else header_override
    data = struct.pack("<Q", len(h)) + h + b"".join(blobs)
    with open(path, "wb") as f:
        f.write(data[: len(data) - truncate] if truncate else data)


def stored_values(arr, dtype):
    """What the C reader should see after its dtype conversion."""
    if dtype == "F16":
        return arr.astype(np.float16).astype(np.float64)
    if dtype == "BF16":
        u = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
        r = (((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32)
        return r.view(np.float32).astype(np.float64)
    return arr.astype(np.float32).astype(np.float64)


# ---------------------------------------------------------------- random TransformerLens model
def random_model(cfg, rng):
    C, M, H, D, V, L = cfg["d_model"], cfg["d_mlp"], cfg["n_heads"], cfg["d_head"], cfg["d_vocab"], cfg["n_layers"]
    ln = cfg["normalization_type"] == "LN"
    W = {"embed.W_E": rng.normal(0, 1.0, (V, C)), "pos_embed.W_pos": rng.normal(0, 0.5, (cfg["n_ctx"], C))}
    for l in range(L):
        p = f"blocks.{l}."
        if ln:
            W[p + "ln1.w"] = rng.normal(1, 0.2, C)
            W[p + "ln1.b"] = rng.normal(0, 0.2, C)
        for n in "QKV":
            W[p + f"attn.W_{n}"] = rng.normal(0, 0.6 / math.sqrt(C) * 2, (H, C, D))
            W[p + f"attn.b_{n}"] = rng.normal(0, 0.2, (H, D))
        W[p + "attn.W_O"] = rng.normal(0, 1 / math.sqrt(H * D), (H, D, C))
        W[p + "attn.b_O"] = rng.normal(0, 0.1, C)
        if ln:
            W[p + "ln2.w"] = rng.normal(1, 0.2, C)
            W[p + "ln2.b"] = rng.normal(0, 0.2, C)
        W[p + "mlp.W_in"] = rng.normal(0, 1 / math.sqrt(C), (C, M))
        W[p + "mlp.b_in"] = rng.normal(0, 0.3, M)
        if ln and cfg["act_fn"] == "solu_ln":
            W[p + "mlp.ln.w"] = rng.normal(1, 0.2, M)
            W[p + "mlp.ln.b"] = rng.normal(0, 0.2, M)
        W[p + "mlp.W_out"] = rng.normal(0, 1 / math.sqrt(M), (M, C))
        W[p + "mlp.b_out"] = rng.normal(0, 0.1, C)
    if ln:
        W["ln_final.w"] = rng.normal(1, 0.2, C)
        W["ln_final.b"] = rng.normal(0, 0.2, C)
    W["unembed.W_U"] = rng.normal(0, 2 / math.sqrt(C), (C, V))
    W["unembed.b_U"] = rng.normal(0, 0.2, V)
    return {k: v.astype(np.float32) for k, v in W.items()}


# ---------------------------------------------------------------- NumPy forward (float64)
ERF = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * w + b if w is not None else y


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_forward(cfg, W, tokens, zero=None, replace=None):
    """Returns logits (B,T,V), loss (B,T-1), hooks {name: array}. zero: hook name to zero-ablate;
    replace: {hook name: function of the activation returning what the forward continues with}
    (hooks records the activation before a replace)."""
    B, T = tokens.shape
    eps, D = cfg["eps"], cfg["d_head"]
    norm = cfg["normalization_type"]
    hooks = {}

    def hook(name, x):
        if name == zero:
            x = np.zeros_like(x)
        hooks[name] = x
        if replace and name in replace:
            x = replace[name](x)
        return x

    def ln(x, pre):
        if norm is None:
            return x
        if norm == "LNPre":
            return layer_norm(x, None, None, eps)
        return layer_norm(x, W[pre + ".w"], W[pre + ".b"], eps)

    x = W["embed.W_E"][tokens] + W["pos_embed.W_pos"][:T][None]
    causal = np.triu(np.ones((T, T), dtype=bool), 1)
    for l in range(cfg["n_layers"]):
        p = f"blocks.{l}."
        x = hook(p + "hook_resid_pre", x)
        h = ln(x, p + "ln1")
        q = np.einsum("btc,hcd->bthd", h, W[p + "attn.W_Q"]) + W[p + "attn.b_Q"]
        k = np.einsum("btc,hcd->bthd", h, W[p + "attn.W_K"]) + W[p + "attn.b_K"]
        v = np.einsum("btc,hcd->bthd", h, W[p + "attn.W_V"]) + W[p + "attn.b_V"]
        scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
        scores = np.where(causal[None, None], -np.inf, scores)
        pattern = softmax(scores)
        z = np.einsum("bhqk,bkhd->bqhd", pattern, v)
        attn_out = hook(p + "hook_attn_out", np.einsum("bqhd,hdc->bqc", z, W[p + "attn.W_O"]) + W[p + "attn.b_O"])
        mid = hook(p + "hook_resid_mid", x + attn_out)
        h2 = ln(mid, p + "ln2")
        pre = hook(p + "mlp.hook_pre", h2 @ W[p + "mlp.W_in"] + W[p + "mlp.b_in"])
        act = cfg["act_fn"]
        if act == "relu":
            post = np.maximum(pre, 0)
        elif act == "gelu":
            post = 0.5 * pre * (1 + ERF(pre / math.sqrt(2)))
        elif act == "gelu_new":
            post = 0.5 * pre * (1 + np.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre**3)))
        else:  # solu_ln: x * softmax(x), then LayerNorm over d_mlp
            mid_act = hook(p + "mlp.hook_mid", pre * softmax(pre))
            post = ln(mid_act, p + "mlp.ln")
        post = hook(p + "mlp.hook_post", post)
        mlp_out = hook(p + "hook_mlp_out", post @ W[p + "mlp.W_out"] + W[p + "mlp.b_out"])
        x = hook(p + "hook_resid_post", mid + mlp_out)
    logits = ln(x, "ln_final") @ W["unembed.W_U"] + W["unembed.b_U"]
    m = logits.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(-1, keepdims=True)))[..., 0]
    tgt = tokens[:, 1:]
    loss = lse[:, :-1] - np.take_along_axis(logits[:, :-1], tgt[..., None], -1)[..., 0]
    return logits, loss, hooks


def close(c, ref, what, rtol=1e-4):
    """Elementwise |c - ref| <= rtol * (|ref| + rms(ref)) : relative, with the tensor's RMS as
    the floor for entries near zero."""
    c = np.asarray(c, np.float64).reshape(ref.shape)
    scale = np.sqrt(np.mean(ref**2)) + 1e-30
    err = np.abs(c - ref) / (np.abs(ref) + scale)
    ok = bool(np.all(np.isfinite(c))) and float(err.max()) <= rtol
    check(ok, f"{what}: max rel err {err.max():.2e} (tol {rtol:g})")


def run_driver(mdir, tokens, hook, *extra):
    tok_path = os.path.join(mdir, "tokens.txt")
    with open(tok_path, "w") as f:
        for row in tokens:
            f.write(" ".join(str(int(t)) for t in row) + "\n")
    out = os.path.join(mdir, "out")
    r = subprocess.run([DRIVER, mdir, tok_path, out, hook, *extra], capture_output=True, text=True)
    return r, out


def load_raw(path, shape):
    return np.fromfile(path, dtype="<f4").reshape(shape)


def save_model(mdir, cfg, W, dtype="F32", names=None):
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(mdir, "model.safetensors"), names if names is not None else W, dtype)


def base_cfg(**kw):
    cfg = dict(n_layers=1, d_model=48, d_mlp=192, n_heads=4, d_head=12, n_ctx=24, d_vocab=300, act_fn="relu",
               normalization_type="LN", eps=1e-5)
    cfg.update(kw)
    return cfg


def case(name, cfg, B, T, hook, dtype="F32", zero=None, extra=(), seed=0, hf=False, hf_tied=False):
    rng = np.random.default_rng(seed)
    W = random_model(cfg, rng)
    mdir = os.path.join(WORK, name)
    if hf:
        names, Wref = to_hf(cfg, W), W
        if hf_tied:  # GPT2LMHeadModel layout: "transformer." prefix, lm_head tied to wte (absent)
            del names["lm_head.weight"]
            names = {"transformer." + k: v for k, v in names.items()}
            W["unembed.W_U"] = np.ascontiguousarray(W["embed.W_E"].T)
        jcfg = dict(n_layer=cfg["n_layers"], n_embd=cfg["d_model"], n_head=cfg["n_heads"], n_positions=cfg["n_ctx"],
                    vocab_size=cfg["d_vocab"], activation_function=cfg["act_fn"], layer_norm_epsilon=cfg["eps"],
                    n_inner=cfg["d_mlp"])
        save_model(mdir, jcfg, W, dtype, names)
    else:
        save_model(mdir, cfg, W, dtype)
        Wref = W
    Wref = {k: stored_values(v, dtype) for k, v in Wref.items()}
    tokens = rng.integers(0, cfg["d_vocab"], size=(B, T))
    ex = list(extra) + (["--zero", zero] if zero else [])
    r, out = run_driver(mdir, tokens, hook, *ex)
    check(r.returncode == 0, f"{name}: driver ran ({r.stderr.strip()})")
    if r.returncode != 0:
        return
    logits, loss, hooks = np_forward(cfg, Wref, tokens, zero=zero)
    d = hooks[hook].shape[-1]
    close(load_raw(out + ".hook", (B, T, d)), hooks[hook], f"{name}: {hook}")
    if "--stop" in ex:
        check(not os.path.exists(out + ".logits"), f"{name}: stop_after wrote no logits")
        return
    close(load_raw(out + ".logits", (B, T, cfg["d_vocab"])), logits, f"{name}: logits")
    if T > 1:
        close(load_raw(out + ".loss", (B, T - 1)), loss, f"{name}: loss")
        mean = float(r.stdout.split()[1])
        check(abs(mean - loss.mean()) <= 1e-4 * abs(loss.mean()), f"{name}: mean loss {mean:.6f} vs {loss.mean():.6f}")


def to_hf(cfg, W):
    """TransformerLens weights -> HF GPT-2 safetensors names (Conv1D (in,out), fused c_attn)."""
    C, H, D = cfg["d_model"], cfg["n_heads"], cfg["d_head"]
    out = {"wte.weight": W["embed.W_E"], "wpe.weight": W["pos_embed.W_pos"]}
    for l in range(cfg["n_layers"]):
        p, q = f"blocks.{l}.", f"h.{l}."
        out[q + "ln_1.weight"], out[q + "ln_1.bias"] = W[p + "ln1.w"], W[p + "ln1.b"]
        qkv = [W[p + f"attn.W_{n}"].transpose(1, 0, 2).reshape(C, H * D) for n in "QKV"]
        out[q + "attn.c_attn.weight"] = np.concatenate(qkv, axis=1)
        out[q + "attn.c_attn.bias"] = np.concatenate([W[p + f"attn.b_{n}"].reshape(-1) for n in "QKV"])
        out[q + "attn.c_proj.weight"] = W[p + "attn.W_O"].reshape(H * D, C)
        out[q + "attn.c_proj.bias"] = W[p + "attn.b_O"]
        out[q + "ln_2.weight"], out[q + "ln_2.bias"] = W[p + "ln2.w"], W[p + "ln2.b"]
        out[q + "mlp.c_fc.weight"], out[q + "mlp.c_fc.bias"] = W[p + "mlp.W_in"], W[p + "mlp.b_in"]
        out[q + "mlp.c_proj.weight"], out[q + "mlp.c_proj.bias"] = W[p + "mlp.W_out"], W[p + "mlp.b_out"]
    out["ln_f.weight"], out["ln_f.bias"] = W["ln_final.w"], W["ln_final.b"]
    out["lm_head.weight"] = np.ascontiguousarray(W["unembed.W_U"].T)
    W["unembed.b_U"][:] = 0  # GPT-2 has no unembedding bias: the reference sees zeros too
    return out


# ---------------------------------------------------------------- bad weights
def bad_case(name, mutate, expect):
    cfg = base_cfg()
    W = random_model(cfg, np.random.default_rng(99))
    mdir = os.path.join(WORK, "bad_" + name)
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f)
    wpath = os.path.join(mdir, "model.safetensors")
    mutate(wpath, W)
    r, _ = run_driver(mdir, np.zeros((1, 4), dtype=int), "blocks.0.mlp.hook_post")
    msg = r.stderr.strip()
    ok = r.returncode == 1 and "model.safetensors" in msg and all(e in msg for e in expect) and msg.count("\n") == 0
    check(ok, f"bad weights {name}: rc={r.returncode} '{msg}'")


def drop(path, W):
    del W["blocks.0.mlp.W_in"]
    write_safetensors(path, W)


def reshape(path, W):
    W["blocks.0.attn.W_Q"] = W["blocks.0.attn.W_Q"].reshape(4, 12, 48)
    write_safetensors(path, W)


def int_dtype(path, W):
    W = dict(W)
    write_safetensors(path, W)  # then rewrite one tensor as I32 with the same byte size
    hdr = {}
    off = 0
    blobs = []
    for k, v in W.items():
        dt = "I32" if k == "blocks.0.mlp.b_in" else "F32"
        raw = v.astype(np.int32 if dt == "I32" else np.float32).tobytes()
        hdr[k] = {"dtype": dt, "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def truncated(path, W):
    write_safetensors(path, W, truncate=1000)


def header_past_eof(path, W):
    write_safetensors(path, W)
    data = bytearray(open(path, "rb").read())
    data[0:8] = struct.pack("<Q", len(data) + 10)
    open(path, "wb").write(bytes(data))


def not_json(path, W):
    write_safetensors(path, W, header_override=b"{this is not json" + b" " * 20)


def overlap(path, W):
    hdr = {}
    off = 0
    blobs = []
    for k, v in W.items():
        raw = v.tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    a = hdr["blocks.0.attn.b_O"]["data_offsets"]
    hdr["blocks.0.attn.b_O"]["data_offsets"] = [a[0] - 8, a[1] - 8]
    h = json.dumps(hdr).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def offsets_mismatch(path, W):
    hdr = {}
    off = 0
    blobs = []
    for k, v in W.items():
        raw = v.tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hdr["unembed.b_U"]["shape"] = [301]
    h = json.dumps(hdr).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    global DRIVER, WORK
    DRIVER, WORK = sys.argv[1], sys.argv[2]
    os.makedirs(WORK, exist_ok=True)
    # forward agreement
    case("relu_1l", base_cfg(), 3, 16, "blocks.0.mlp.hook_post")
    case("relu_1l_T1", base_cfg(), 4, 1, "blocks.0.mlp.hook_post", seed=1)
    case("relu_1l_Tctx", base_cfg(), 2, 24, "blocks.0.hook_resid_post", seed=2)
    case("relu_1l_naive", base_cfg(), 2, 24, "blocks.0.mlp.hook_post", extra=["--naive"], seed=3)
    case("gelu_2l", base_cfg(n_layers=2, act_fn="gelu"), 3, 24, "blocks.1.mlp.hook_post", seed=4)
    case("gelu_2l_resid_mid", base_cfg(n_layers=2, act_fn="gelu"), 2, 11, "blocks.0.hook_resid_mid", seed=5)
    case("gelu_new_1l", base_cfg(act_fn="gelu_new"), 3, 20, "blocks.0.mlp.hook_pre", seed=6)
    case("gelu_new_2l_T1", base_cfg(n_layers=2, act_fn="gelu_new"), 3, 1, "blocks.1.hook_mlp_out", seed=7)
    case("solu_ln_2l", base_cfg(n_layers=2, act_fn="solu_ln"), 2, 24, "blocks.0.mlp.hook_post", seed=8)
    case("solu_ln_mid", base_cfg(act_fn="solu_ln"), 2, 9, "blocks.0.mlp.hook_mid", seed=9)
    case("lnpre_gelu", base_cfg(act_fn="gelu", normalization_type="LNPre"), 2, 12, "blocks.0.hook_attn_out", seed=10)
    case("nonorm_relu_2l", base_cfg(n_layers=2, normalization_type=None), 2, 12, "blocks.1.hook_resid_pre", seed=11)
    case("f16_weights", base_cfg(), 2, 16, "blocks.0.mlp.hook_post", dtype="F16", seed=12)
    case("bf16_weights", base_cfg(act_fn="gelu_new"), 2, 16, "blocks.0.mlp.hook_post", dtype="BF16", seed=13)
    case("hf_gpt2_names", base_cfg(n_layers=2, act_fn="gelu_new"), 2, 16, "blocks.1.mlp.hook_post", hf=True, seed=14)
    case("hf_gpt2_tied_prefixed", base_cfg(act_fn="gelu_new"), 2, 16, "blocks.0.mlp.hook_post", hf=True, hf_tied=True,
         seed=18)
    case("zero_ablate_mlp", base_cfg(), 3, 16, "blocks.0.hook_resid_post", zero="blocks.0.mlp.hook_post", seed=15)
    case("zero_ablate_2l", base_cfg(n_layers=2, act_fn="gelu"), 2, 10, "blocks.1.mlp.hook_post",
         zero="blocks.0.hook_attn_out", seed=16)
    case("stop_after_hook_post", base_cfg(n_layers=2), 3, 24, "blocks.0.mlp.hook_post", extra=["--stop"], seed=17)
    # bad weights
    bad_case("missing_tensor", drop, ["blocks.0.mlp.W_in", "missing"])
    bad_case("wrong_shape", reshape, ["blocks.0.attn.W_Q", "shape"])
    bad_case("wrong_dtype", int_dtype, ["blocks.0.mlp.b_in", "I32"])
    bad_case("truncated", truncated, ["outside the data section"])
    bad_case("header_past_eof", header_past_eof, ["header length"])
    bad_case("not_json", not_json, ["JSON"])
    bad_case("overlap", overlap, ["blocks.0.attn.b_O", "overlaps"])
    bad_case("offsets_vs_shape", offsets_mismatch, ["unembed.b_U", "data_offsets"])

    print(f"{len(FAILS)} failure(s)")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
