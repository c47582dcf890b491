#!/usr/bin/python3
"""PyTorch CPU baseline for bench_forward: the same weights (model.safetensors written by the C
bench), the same tokens and thread count; a plain TransformerLens-style forward in torch ops.
usage: bench_forward_torch.py MODEL_DIR B T THREADS REPS"""
import json
import math
import os
import struct
import sys
import time

mdir, B, T, threads, reps = sys.argv[1], *map(int, sys.argv[2:6])
# Debian's torch runs its GEMMs on OpenBLAS, whose pool ignores torch.set_num_threads: pin it
# before the import so the baseline uses exactly `threads` cores
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(threads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(threads)
cfg = json.load(open(f"{mdir}/config.json"))
raw = open(f"{mdir}/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8 : 8 + n])
W = {}
for k, v in hdr.items():
    if k == "__metadata__":
        continue
    a, b = v["data_offsets"]
    W[k] = torch.from_numpy(np.frombuffer(raw[8 + n + a : 8 + n + b], dtype="<f4").reshape(v["shape"]).copy())
tok = torch.from_numpy(np.fromfile(f"{mdir}/tokens.bin", dtype="<i4").reshape(B, T).astype(np.int64))
H, D, C = cfg["n_heads"], cfg["d_head"], cfg["d_model"]
eps = cfg["eps"]
mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
# fused (C, 3*H*D) projection, as an efficient PyTorch user would write it
Wqkv = torch.cat([W[f"blocks.0.attn.W_{x}"].permute(1, 0, 2).reshape(C, H * D) for x in "QKV"], 1).contiguous()
bqkv = torch.cat([W[f"blocks.0.attn.b_{x}"].reshape(-1) for x in "QKV"])
WO = W["blocks.0.attn.W_O"].reshape(H * D, C)


def forward(stop_mlp, targets=None):
    x = W["embed.W_E"][tok] + W["pos_embed.W_pos"][:T]
    h = F.layer_norm(x, (C,), W["blocks.0.ln1.w"], W["blocks.0.ln1.b"], eps)
    qkv = torch.addmm(bqkv, h.view(B * T, C), Wqkv).view(B, T, 3, H, D)
    q, k, v = qkv.unbind(2)
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B,H,T,D)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
    p = torch.softmax(s.masked_fill(mask, float("-inf")), -1)
    z = (p @ v).transpose(1, 2).reshape(B * T, H * D)
    x = x + torch.addmm(W["blocks.0.attn.b_O"], z, WO).view(B, T, C)
    h = F.layer_norm(x, (C,), W["blocks.0.ln2.w"], W["blocks.0.ln2.b"], eps)
    post = torch.relu(torch.addmm(W["blocks.0.mlp.b_in"], h.view(B * T, C), W["blocks.0.mlp.W_in"]))
    if stop_mlp:
        return post
    x = x + torch.addmm(W["blocks.0.mlp.b_out"], post, W["blocks.0.mlp.W_out"]).view(B, T, C)
    h = F.layer_norm(x, (C,), W["ln_final.w"], W["ln_final.b"], eps)
    logits = torch.addmm(W["unembed.b_U"], h.view(B * T, C), W["unembed.W_U"])
    if targets is not None:
        return F.cross_entropy(logits[:-1], targets, reduction="none")
    return logits


def best(fn, n):
    b = 1e30
    with torch.inference_mode():
        for r in range(n + 1):
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            if r:
                b = min(b, dt)
    return b


tg = tok.reshape(-1)[1:]
tm = best(lambda: forward(True), reps)
tf = best(lambda: forward(False), max(reps // 2, 1))
tl = best(lambda: forward(False, tg), max(reps // 2, 1))
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
print(f"torch_mlp_tokens_per_s {B * T / tm:.0f}")
print(f"torch_logits_tokens_per_s {B * T / tf:.0f}")
print(f"torch_loss_tokens_per_s {B * T / tl:.0f}")
