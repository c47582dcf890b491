#!/usr/bin/python3
"""tests/sae/ref_sae.py: independent NumPy (float64) reference of the SAE step for every arch.

Runs tests/sae/ref_driver (C) for each arch, then recomputes from the dumped initial params
and inputs: forward, loss pieces, every gradient (full chain rule, autograd-style: db_dec
through x̄ with the sixth product, not the GEMV shortcut), the relu-l1 parallel-component
removal, clipping, Adam (bias-corrected), renormalisation, JumpReLU's log-θ update and the
BatchTopK threshold; two iterations. Fails if any tensor disagrees by more than 1e-5 relative
to its largest entry.
usage: ref_sae.py DRIVER TMPDIR
"""
import json
import os
import subprocess
import sys

import numpy as np

TOL = 1e-5


def load(d, name, dtype, shape=None):
    a = np.fromfile(os.path.join(d, name + ".bin"), dtype=dtype)
    return a.reshape(shape) if shape is not None else a


def topk_mask(z, k):
    """Top k per row, ties to the lower index."""
    B, m = z.shape
    mask = np.zeros_like(z, dtype=bool)
    for b in range(B):
        order = sorted(range(m), key=lambda j: (-z[b, j], j))[:k]
        mask[b, order] = True
    return mask


def unpack(p, meta):
    d, m = meta["d"], meta["m"]
    o = meta["layout"]
    return dict(W_enc=p[o[0]:o[0] + d * m].reshape(d, m).copy(), b_enc=p[o[1]:o[1] + m].copy(),
                W_dec=p[o[2]:o[2] + m * d].reshape(m, d).copy(), b_dec=p[o[3]:o[3] + d].copy(),
                th=p[o[4]:o[4] + m].copy())


def pack(t, meta):
    d, m = meta["d"], meta["m"]
    o = meta["layout"]
    p = np.zeros(o[5])
    p[o[0]:o[0] + d * m] = t["W_enc"].ravel()
    p[o[1]:o[1] + m] = t["b_enc"]
    p[o[2]:o[2] + m * d] = t["W_dec"].ravel()
    p[o[3]:o[3] + d] = t["b_dec"]
    p[o[4]:o[4] + m] = t["th"]
    return p


def l1_at(meta, step):
    lam = meta["l0"] if meta["arch"] == "jumprelu" else meta["l1"]
    n = int(meta["warmup"] * meta["steps"])
    if meta["warmup"] <= 0 or n <= 0 or step >= n:
        return lam
    return lam * (step + 1) / n


def lr_at(meta, step):
    n = int(meta["decay"] * meta["steps"])
    if meta["decay"] <= 0 or n <= 0:
        return meta["lr"]
    start = meta["steps"] - n
    return meta["lr"] if step < start else max(0.0, meta["lr"] * (meta["steps"] - step) / n)


def fwd_bwd(t, x, dead, meta, step, since_dead):
    arch, d, m, Bg = meta["arch"], meta["d"], meta["m"], meta["Bg"]
    B = x.shape[0]
    s = meta["scale"]
    xs = s * x
    xbar = xs - t["b_dec"]
    z = xbar @ t["W_enc"] + t["b_enc"]
    th = t["th"]
    if arch in ("relu-l1", "april-2024"):
        act = z > 0
    elif arch == "topk":
        act = topk_mask(z, meta["k"]) & (z > 0)
    elif arch == "batchtopk":
        K = meta["k"] * B
        flat = sorted(range(B * m), key=lambda e: (-z.ravel()[e], e))[:K]
        sel = np.zeros(B * m, dtype=bool)
        sel[flat] = True
        act = sel.reshape(B, m) & (z > 0)
    else:
        act = z > th
    f = np.where(act, z, 0.0)
    xhat = f @ t["W_dec"] + t["b_dec"]
    r = xhat - xs
    c = 1.0 if arch == "april-2024" else 1.0 / d
    lam = l1_at(meta, step)
    colnorm = np.sqrt((t["W_dec"] ** 2).sum(1))
    st = {"sse": (r ** 2).sum(), "l0": act.sum(), "l1": f.sum(), "counts": act.sum(0),
          "xsq": (xs ** 2).sum(), "mse_loss": c / Bg * (r ** 2).sum()}
    if arch == "relu-l1":
        st["sp"] = lam / Bg * f.sum()
    elif arch == "april-2024":
        st["sp"] = lam / Bg * (f * colnorm).sum()
    elif arch == "jumprelu":
        st["sp"] = lam / Bg * act.sum()
    else:
        st["sp"] = 0.0
    dxhat = 2 * c / Bg * r
    g = {}
    g["W_dec"] = f.T @ dxhat
    df = dxhat @ t["W_dec"].T
    dz = np.where(act, df, 0.0)
    if arch == "relu-l1":
        dz += np.where(act, lam / Bg, 0.0)
    if arch == "april-2024":
        dz += np.where(act, lam / Bg * colnorm, 0.0)
        g["W_dec"] += lam / Bg * f.sum(0)[:, None] * t["W_dec"] / colnorm[:, None]
    st["aux"] = 0.0
    dead_idx = np.nonzero(since_dead)[0]
    if arch in ("topk", "batchtopk") and meta["aux_coeff"] > 0 and len(dead_idx) > 0:
        kx = min(meta["k_aux"], len(dead_idx))
        scale = min(1.0, len(dead_idx) / meta["k_aux"])
        amask = np.zeros_like(z, dtype=bool)
        zd = z[:, dead_idx]
        for b in range(B):
            order = sorted(range(len(dead_idx)), key=lambda q: (-zd[b, q], dead_idx[q]))[:kx]
            amask[b, dead_idx[order]] = True
        fa = np.where(amask & (z > 0), z, 0.0)
        ehat = fa @ t["W_dec"]
        e = -r  # detached residual s·x − x̂
        st["aux"] = meta["aux_coeff"] * scale * c / Bg * ((ehat - e) ** 2).sum()
        dehat = 2 * meta["aux_coeff"] * scale * c / Bg * (ehat - e)
        g["W_dec"] += fa.T @ dehat
        dz += np.where(amask & (z > 0), dehat @ t["W_dec"].T, 0.0)
    g["W_enc"] = xbar.T @ dz
    g["b_enc"] = dz.sum(0)
    dxbar = dz @ t["W_enc"].T  # the sixth product autograd would do
    g["b_dec"] = dxhat.sum(0) - dxbar.sum(0)
    g["th"] = np.zeros(m)
    if arch == "jumprelu":
        eps = meta["bandwidth"]
        win = np.abs(z - th) < eps / 2
        gth = np.where(win, -(th / eps) * df - lam / Bg / eps, 0.0).sum(0)
        g["th"] = th * gth  # ∂/∂ log θ
    if arch == "batchtopk":
        pos = f[f > 0]
        st["thresh"] = pos.min() if pos.size else None
    st["loss"] = st["mse_loss"] + st["sp"] + st["aux"]
    return g, st


def step(t, g, mo, vo, meta, stepno, st, state):
    arch = meta["arch"]
    g = {k: v.copy() for k, v in g.items()}
    if arch == "relu-l1":
        w = t["W_dec"]
        g["W_dec"] -= ((g["W_dec"] * w).sum(1) / (w * w).sum(1))[:, None] * w
    if meta["clip"] > 0:
        norm = np.sqrt(sum((v ** 2).sum() for v in g.values()))
        if norm > meta["clip"]:
            g = {k: v * meta["clip"] / norm for k, v in g.items()}
    b1, b2, eps, lr = meta["beta1"], meta["beta2"], meta["eps"], lr_at(meta, stepno)
    tt = stepno + 1
    nt, nm, nv = {}, {}, {}
    for k in t:
        nm[k] = b1 * mo[k] + (1 - b1) * g[k]
        nv[k] = b2 * vo[k] + (1 - b2) * g[k] ** 2
        upd = lr * (nm[k] / (1 - b1 ** tt)) / (np.sqrt(nv[k] / (1 - b2 ** tt)) + eps)
        if k == "th":
            if arch == "jumprelu":
                nt[k] = t[k] * np.exp(-upd)
            else:
                nt[k] = t[k].copy()
                nm[k] = mo[k]
                nv[k] = vo[k]
        else:
            nt[k] = t[k] - upd
    if arch == "relu-l1":
        nt["W_dec"] = nt["W_dec"] / np.sqrt((nt["W_dec"] ** 2).sum(1))[:, None]
    if arch == "batchtopk" and st.get("thresh") is not None:
        v = st["thresh"]
        th = v if not state["set"] else 0.99 * t["th"][0] + 0.01 * v
        nt["th"] = np.full_like(t["th"], th)
        state["set"] = True
    return nt, nm, nv, g


def close(name, got, want, fails):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    scale = max(np.abs(want).max(initial=0.0), 1e-30)
    err = np.abs(got - want).max(initial=0.0) / scale
    ok = err <= TOL
    print(f"  {name:18s} rel.err {err:.2e} {'ok' if ok else 'FAIL'}")
    if not ok:
        fails.append(name)


def check(arch, driver, tmp):
    d = os.path.join(tmp, "sae_ref_" + arch)
    os.makedirs(d, exist_ok=True)
    subprocess.run([driver, d, arch], check=True)
    meta = json.load(open(os.path.join(d, "meta.json")))
    B, dd, m, S = meta["B"], meta["d"], meta["m"], meta["stats_len"]
    x = load(d, "x", np.float32, (B, dd)).astype(np.float64)
    dead = load(d, "dead", np.uint8).astype(bool)
    t = unpack(load(d, "params0", np.float32).astype(np.float64), meta)
    mo = {k: np.zeros_like(v) for k, v in t.items()}
    vo = {k: np.zeros_like(v) for k, v in t.items()}
    fails = []
    state = {"set": False}
    since_dead = dead.copy()
    print(f"{arch}:")
    for it in (1, 2):
        stepno = meta["step0"] + it - 1
        g, st = fwd_bwd(t, x, dead, meta, stepno, since_dead)
        cg = unpack(load(d, f"grads{it}", np.float32).astype(np.float64), meta)
        cs = load(d, f"stats{it}", np.float64)
        for k in ("W_enc", "b_enc", "W_dec", "b_dec", "th"):
            close(f"grad {k} #{it}", cg[k], g[k], fails)
        close(f"loss #{it}", cs[1], st["loss"], fails)
        close(f"sse #{it}", cs[2], st["sse"], fails)
        close(f"x_sq #{it}", cs[3], st["xsq"], fails)
        close(f"l1 #{it}", cs[4], st["l1"], fails)
        close(f"l0 #{it}", cs[5], st["l0"], fails)
        close(f"sparsity #{it}", cs[6], st["sp"], fails)
        close(f"aux #{it}", cs[7], st["aux"], fails)
        close(f"counts #{it}", cs[11:11 + m], st["counts"], fails)
        close(f"x_sum #{it}", cs[11 + m:11 + m + dd], (meta["scale"] * x).sum(0), fails)
        if arch in ("topk", "batchtopk") and it == 1:
            assert st["aux"] > 0, "AuxK not exercised"
        t, mo, vo, _ = step(t, g, mo, vo, meta, stepno, st, state)
        cp = unpack(load(d, f"params{it}", np.float32).astype(np.float64), meta)
        cm = unpack(load(d, f"m{it}", np.float32).astype(np.float64), meta)
        cv = unpack(load(d, f"v{it}", np.float32).astype(np.float64), meta)
        for k in ("W_enc", "b_enc", "W_dec", "b_dec", "th"):
            close(f"param {k} #{it}", cp[k], t[k], fails)
            close(f"adam m {k} #{it}", cm[k], mo[k], fails)
            close(f"adam v {k} #{it}", cv[k], vo[k], fails)
        # the C side tracked firing: latents that fired are no longer dead
        since_dead = since_dead & (st["counts"] == 0)
    return fails


def main():
    driver, tmp = sys.argv[1], sys.argv[2]
    os.makedirs(tmp, exist_ok=True)
    archs = sys.argv[3:] or ["relu-l1", "topk", "batchtopk", "jumprelu", "april-2024"]
    fails = []
    for a in archs:
        fails += [a + ": " + f for f in check(a, driver, tmp)]
    if fails:
        print("MISMATCH:", ", ".join(fails))
        sys.exit(1)
    print("all archs agree with the NumPy reference to", TOL)


if __name__ == "__main__":
    main()
