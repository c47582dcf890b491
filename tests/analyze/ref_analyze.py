#!/usr/bin/python3
"""tests/analyze/ref_analyze.py: independent NumPy/h5py oracle for `monosem analyze`.

  ref_analyze.py fixtures DIR [planted]   byte tokenizer, text corpus, a random 1-layer model and a
                                          random SAELens SAE under DIR ("planted": a model whose MLP
                                          sees the current token only, and an SAE of planted
                                          single-token and two-token features)
  ref_analyze.py check DIR FILE KIND [SAE]  recomputes everything FILE (an analysis.h5, KIND sae or
                                          neurons) holds by brute force from the weights and the
                                          token shards, as docs/analysis.md defines it (SAE: the
                                          SAE's directory, default DIR/sae; encoded as its
                                          cfg.json's architecture says)
  ref_analyze.py mixed DIR                 beside the fixtures: a standard SAE R (96 features) and
                                          a topk SAE TK (k 4, 48 features) under DIR/run/sae-*
  ref_analyze.py corr DIR SPLITTING.H5 A B TOKENS  compare's best activation correlation of each
                                          feature of SAE A with SAE B (and back) equals NumPy's
                                          on the first TOKENS train tokens
  ref_analyze.py same A.h5 B.h5           every dataset and attribute identical (bitwise)
  ref_analyze.py planted SAE.h5 NEURONS.h5  planted features rank as more single-meaning than the
                                          two-token features and than the neurons
Exit status 0 when the check holds; 1 with FAIL lines otherwise.
"""
import json
import os
import struct
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "generate"))
sys.path.insert(0, os.path.join(HERE, "..", "model"))
from ref_generate import forward_to_hook, load_safetensors, write_tokenizer  # noqa: E402
from ref_forward import random_model, save_model, write_safetensors  # noqa: E402

FAILS = []


def check(cond, what):
    if not cond:
        print("FAIL " + what)
        FAILS.append(what)
    return cond


WORDS = ("the whale sea ship captain ahab white line boat harpoon crew deck storm wind sail oil night "
         "and god said let there be light in beginning heaven earth").split()


def write_corpus(d, rng, n_docs=14):
    os.makedirs(f"{d}/corpus", exist_ok=True)
    for f in range(2):
        with open(f"{d}/corpus/part{f}.txt", "w") as out:
            for _ in range(n_docs // 2):
                n = int(rng.integers(80, 200))
                out.write(" ".join(rng.choice(WORDS, n)).capitalize() + ".\n===\n")


def model_cfg():
    return dict(n_layers=1, d_model=32, d_mlp=64, n_heads=4, d_head=8, n_ctx=32, d_vocab=257, act_fn="relu",
                normalization_type="LN", eps=1e-5)


def write_sae(d, W_enc, b_enc, W_dec, b_dec, k=None):
    os.makedirs(f"{d}/saelens", exist_ok=True)
    d_in, d_sae = W_enc.shape
    c = {"d_in": d_in, "d_sae": d_sae, "architecture": "standard" if k is None else "topk", "dtype": "float32",
         "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
         "hook_name": "blocks.0.mlp.hook_post"}
    if k is not None:
        c["k"] = k
    json.dump(c, open(f"{d}/saelens/cfg.json", "w"))
    write_safetensors(f"{d}/saelens/sae_weights.safetensors",
                      {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec})


def fixtures(d, planted):
    rng = np.random.default_rng(12)
    os.makedirs(f"{d}/tok", exist_ok=True)
    write_tokenizer(f"{d}/tok")
    write_corpus(d, rng)
    cfg = model_cfg()
    W = random_model(cfg, rng)
    if planted:
        # the MLP sees the current token only: no attention output, no position embedding
        W["blocks.0.attn.W_O"][:] = 0
        W["blocks.0.attn.b_O"][:] = 0
        W["pos_embed.W_pos"][:] = 0
    save_model(f"{d}/model", cfg, W)
    M = cfg["d_mlp"]
    if not planted:
        d_sae = 96
        W_enc = rng.normal(0, 1 / np.sqrt(M), (M, d_sae)).astype(np.float32)
        b_enc = rng.normal(-0.3, 0.2, d_sae).astype(np.float32)
        W_dec = rng.normal(0, 1, (d_sae, M))
        W_dec = (W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)).astype(np.float32)
        b_dec = rng.normal(0, 0.05, M).astype(np.float32)
        b_enc[:3] = -50  # three dead features
        write_sae(f"{d}/sae", W_enc, b_enc, W_dec, b_dec)
        return
    # planted: h(v) = the MLP output for token v alone; encoder columns solve H w = e (min norm)
    Wd = load_safetensors(f"{d}/model/model.safetensors")
    used = sorted(set(b for w in WORDS for b in (w + " ").encode()) | set(b"T.\n"))
    used += [ord(c) for c in "ABCDEFGHIJKLMNOPRSTUVWY" if ord(c) not in used] + [256]  # 256: <|endoftext|>
    H = forward_to_hook(Wd, cfg, np.array(used)[:, None], "blocks.0.mlp.hook_post")[:, 0]  # (n_used, M)
    P = np.linalg.pinv(H)  # (M, n_used)
    cols, decs = [], []
    singles = [used.index(b) for b in b"aehilnst"]
    for i in singles:  # planted single-token features
        cols.append(P[:, i])
        decs.append(H[i])
    for i, j in zip(singles[:-1], singles[1:]):  # two-token features: 0.8 on one token, 0.3 on another
        cols.append(P[:, i] + 0.5 * P[:, j])
        decs.append(H[i] + H[j])
    W_enc = np.array(cols).T.astype(np.float32)
    b_enc = np.full(W_enc.shape[1], -0.2, np.float32)
    W_dec = np.array(decs)
    W_dec = (W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)).astype(np.float32)
    write_sae(f"{d}/sae", W_enc, b_enc, W_dec, np.zeros(M, np.float32))
    json.dump({"n_single": len(singles), "n_pair": len(singles) - 1}, open(f"{d}/planted.json", "w"))


# ------------------------------------------------------------------ reading what analyze wrote

def attr(f, k):
    v = f.attrs[k]
    return v.decode() if isinstance(v, bytes) else str(v)


def train_tokens(token_dir):
    man = json.load(open(f"{token_dir}/manifest.json"))
    parts = []
    for s in man["train"]:
        with open(f"{token_dir}/{s['file']}", "rb") as fh:
            hdr = fh.read(32)
            assert hdr[:8] == b"MSTOKENS"
            _, dt, n, _ = struct.unpack("<IIQQ", hdr[8:])
            parts.append(np.frombuffer(fh.read(n * dt), dtype="<u2" if dt == 2 else "<u4").astype(np.int64))
    return np.concatenate(parts)


def random_sae(rng, M, d_sae):
    W_enc = rng.normal(0, 1 / np.sqrt(M), (M, d_sae)).astype(np.float32)
    b_enc = rng.normal(-0.3, 0.2, d_sae).astype(np.float32)
    W_dec = rng.normal(0, 1, (d_sae, M))
    W_dec = (W_dec / np.linalg.norm(W_dec, axis=1, keepdims=True)).astype(np.float32)
    b_dec = rng.normal(0, 0.05, M).astype(np.float32)
    return W_enc, b_enc, W_dec, b_dec


def mixed(d):
    rng = np.random.default_rng(5)
    M = model_cfg()["d_mlp"]
    write_sae(f"{d}/run/sae-R", *random_sae(rng, M, 96))
    write_sae(f"{d}/run/sae-TK", *random_sae(rng, M, 48), k=4)


def encode(sae_dir, x):
    """SAE codes of x, as the SAE's cfg.json says it encodes (standard: ReLU; topk: the k largest
    pre-activations, then ReLU)."""
    c = json.load(open(f"{sae_dir}/saelens/cfg.json"))
    S = load_safetensors(f"{sae_dir}/saelens/sae_weights.safetensors")
    z = (x - S["b_dec"]) @ S["W_enc"] + S["b_enc"]
    if c.get("architecture", "standard") == "standard":
        return np.maximum(z, 0)
    assert c["architecture"] == "topk", c["architecture"]
    k = int(c["k"])
    idx = np.argpartition(-z, k - 1, axis=-1)[..., :k]
    f = np.zeros_like(z)
    np.put_along_axis(f, idx, np.maximum(np.take_along_axis(z, idx, -1), 0), -1)
    return f


def unit_acts(d, kind, hook, tokens, sae_dir=None):
    """(n_ctx, T, U) float64 activations of every unit, from the weights."""
    cfg = json.load(open(f"{d}/model/config.json"))
    W = load_safetensors(f"{d}/model/model.safetensors")
    x = forward_to_hook(W, cfg, tokens, hook)
    if kind == "neurons":
        return x, W, cfg
    return encode(sae_dir or f"{d}/sae", x), W, cfg


def corr_check(d, path, a, b, tokens):
    """compare's per-feature best activation correlation, A's features against B's and back."""
    cfg = json.load(open(f"{d}/model/config.json"))
    T = cfg["n_ctx"]
    n_ctx = -(-tokens // T)
    toks = train_tokens(f"{d}/tokens")[: n_ctx * T].reshape(n_ctx, T)
    x = forward_to_hook(load_safetensors(f"{d}/model/model.safetensors"), cfg, toks, "blocks.0.mlp.hook_post")
    fa = encode(f"{d}/run/sae-{a}", x).reshape(n_ctx * T, -1)
    fb = encode(f"{d}/run/sae-{b}", x).reshape(n_ctx * T, -1)

    def z(m):
        m = m - m.mean(0)
        n = np.linalg.norm(m, axis=0)
        return np.where(n > 0, m / np.where(n > 0, n, 1), np.nan)
    r = z(fa).T @ z(fb)  # (da, db) Pearson correlations; NaN for a unit without variance
    with np.errstate(all="ignore"):
        import warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        best = (np.nanmax(r, 1), np.nanmax(r, 0))
    f = h5py.File(path, "r")
    for side, want in zip("ab", best):
        got = f[f"{a}__{b}__corr_{side}_max"][:].astype(np.float64)
        check(got.shape == want.shape, f"corr_{side}_max shape {got.shape}, expected {want.shape}")
        if got.shape == want.shape:
            live = np.isfinite(got) & np.isfinite(want)
            check(np.array_equal(np.isfinite(got), np.isfinite(want)), f"corr_{side}_max: units without variance")
            worst = np.abs(got[live] - want[live]).max() if live.any() else 0.0
            check(worst < 1e-3, f"corr_{side}_max = NumPy's Pearson max (worst {worst:.2e})")
            check(live.sum() >= 0.5 * len(got), f"corr_{side}_max: {live.sum()} of {len(got)} finite")


def check_file(d, path, kind, sae_dir=None):
    f = h5py.File(path, "r")
    T, K, Wn, I, S, NB, L = (int(attr(f, k)) for k in ("context", "top_k", "context_window", "intervals",
                                                         "interval_samples", "hist_bins", "n_logits"))
    n_ctx, seed, hook = int(attr(f, "n_contexts")), int(attr(f, "seed")), attr(f, "hook")
    check(attr(f, "kind") == kind and attr(f, "split") == "train", f"{path}: kind/split attributes")
    toks = train_tokens(attr(f, "token_dir"))[: n_ctx * T].reshape(n_ctx, T)
    A, Wm, cfg = unit_acts(d, kind, hook, toks, sae_dir)
    U = A.shape[2]
    A2 = A.reshape(n_ctx * T, U)
    tol = 1e-4 * max(1.0, float(np.abs(A).max()))
    Ww = 2 * Wn + 1
    shapes = {"count": (U,), "top_act": (U, K), "top_tokens": (U, K, Ww), "interval_act": (U, I, S),
              "interval_tokens": (U, I, S, Ww), "hist": (U, NB), "logit_top_ids": (U, L)}
    for k, s in shapes.items():
        check(f[k].shape == s, f"{path}: {k} shape {f[k].shape}, expected {s}")
    if FAILS:
        return
    check(int(attr(f, "tokens")) == n_ctx * T, "tokens attribute")
    cnt, mx, mean = f["count"][:], f["max_act"][:].astype(np.float64), f["mean_act"][:].astype(np.float64)
    act_np = A2 > 0
    amb = (np.abs(A2) <= tol).sum(0)
    check(np.all(np.abs(cnt - act_np.sum(0)) <= amb), "count = #(a > 0) up to near-zero tokens")
    check(np.allclose(f["density"][:], cnt / (n_ctx * T), rtol=1e-6), "density = count / tokens")
    check(np.allclose(mx, A2.max(0).clip(0), atol=tol), f"max_act (worst {np.abs(mx - A2.max(0).clip(0)).max():.2e})")
    npmean = np.where(act_np.sum(0) > 0, (A2 * act_np).sum(0) / np.maximum(act_np.sum(0), 1), 0)
    check(np.allclose(mean, npmean, atol=tol, rtol=1e-4), "mean_act over active tokens")
    dead = int((cnt == 0).sum())
    check(int(attr(f, "dead")) == dead, "dead attribute")

    pos_all = np.arange(n_ctx * T)
    flat_tok = toks.reshape(-1)

    def window(p):
        c, t = divmod(int(p), T)
        ids, acts = [], []
        for j in range(-Wn, Wn + 1):
            s = t + j
            ids.append(toks[c, s] if 0 <= s < T else -1)
            acts.append(A[c, s] if 0 <= s < T else None)
        return np.array(ids), acts

    # ---- top-k: C's picks are a valid top-k of the float64 activations (near-ties either way)
    tctx, tpos, tact = f["top_ctx"][:], f["top_pos"][:], f["top_act"][:].astype(np.float64)
    ttok, ttacts = f["top_tokens"][:], f["top_token_acts"][:].astype(np.float64)
    bad_top = bad_win = 0
    for u in range(U):
        a = A2[:, u]
        n_pos = int((a > tol).sum())
        valid = tctx[u] >= 0
        n = int(valid.sum())
        if not (np.all(valid[:n]) and n == min(K, int(cnt[u]))):
            bad_top += 1
            continue
        p = tctx[u, :n] * T + tpos[u, :n]
        order = np.lexsort((p, -tact[u, :n]))
        if not np.array_equal(order, np.arange(n)) or not np.allclose(tact[u, :n], a[p], atol=tol):
            bad_top += 1
            continue
        if n:
            kth = np.sort(a)[::-1][min(n, len(a)) - 1]
            sure = pos_all[a > kth + tol]
            if not (np.all(a[p] >= kth - tol) and np.all(np.isin(sure, p))) or (n < K and n_pos > n):
                bad_top += 1
                continue
        for i in range(n):
            ids, acts = window(p[i])
            want = np.array([0.0 if v is None else v[u] for v in acts])
            if not np.array_equal(ttok[u, i], ids) or not np.allclose(ttacts[u, i], want, atol=tol):
                bad_win += 1
    check(bad_top == 0, f"top-k equals the brute-force top-k ({bad_top} units differ)")
    check(bad_win == 0, f"top-k windows: token ids and activations ({bad_win} windows differ)")

    # ---- interval samples: the S smallest hashes of each interval (intervals from C's max)
    M64 = (1 << 64) - 1

    def mix(x):
        x = x & M64
        x ^= x >> 30
        x = (x * 0xbf58476d1ce4e5b9) & M64
        x ^= x >> 27
        x = (x * 0x94d049bb133111eb) & M64
        x ^= x >> 31
        return x

    ictx, ipos, iact = f["interval_ctx"][:], f["interval_pos"][:], f["interval_act"][:].astype(np.float64)
    itok, icnt, hist = f["interval_tokens"][:], f["interval_count"][:], f["hist"][:]
    bad_iv = bad_cnt = bad_hist = 0
    for u in range(U):
        a = A2[:, u]
        m = float(f["max_act"][u])
        if m <= 0:
            bad_iv += int((ictx[u] >= 0).any())
            continue
        act = pos_all[a > tol]
        lo_amb = pos_all[(np.abs(a) <= tol)]
        x = a[act]
        b_lo = np.clip(np.floor((x - tol) * I / m), 0, I - 1)
        b_hi = np.clip(np.floor((x + tol) * I / m), 0, I - 1)
        uh = mix(seed ^ ((u + 1) * 0x9e3779b97f4a7c15))
        for i in range(I):
            strict = act[(b_lo == i) & (b_hi == i)]
            loose = set(act[(b_lo <= i) & (b_hi >= i)].tolist())
            if i == 0:
                loose |= set(lo_amb.tolist())
            n_i = int(icnt[u, i])
            if not (len(strict) <= n_i <= len(loose)):
                bad_cnt += 1
            chosen = [int(ictx[u, i, s] * T + ipos[u, i, s]) for s in range(S) if ictx[u, i, s] >= 0]
            if len(chosen) != min(S, n_i):
                bad_iv += 1
                continue
            hs = {p: mix(uh ^ ((p + 1) * 0xd1b54a32d192ed03)) for p in set(chosen) | set(strict.tolist())}
            ok = all(p in loose for p in chosen) and [hs[p] for p in chosen] == sorted(hs[p] for p in chosen)
            if chosen:
                worst = max(hs[p] for p in chosen)
                ok = ok and all(p in chosen for p in strict.tolist() if hs[p] < worst)
                if len(chosen) < S:
                    ok = ok and all(p in chosen for p in strict.tolist())
            for s, p in enumerate(chosen):
                ok = ok and abs(iact[u, i, s] - a[p]) <= tol and np.array_equal(itok[u, i, s], window(p)[0])
            bad_iv += not ok
        hb_lo = np.clip(np.floor((x - tol) * NB / m), 0, NB - 1)
        hb_hi = np.clip(np.floor((x + tol) * NB / m), 0, NB - 1)
        for b in range(NB):
            if not (((hb_lo == b) & (hb_hi == b)).sum() <= hist[u, b] <= ((hb_lo <= b) & (hb_hi >= b)).sum() + len(lo_amb)):
                bad_hist += 1
        if hist[u].sum() != cnt[u] or icnt[u].sum() != cnt[u]:
            bad_hist += 1
    check(bad_iv == 0, f"interval samples equal the brute-force hash sample ({bad_iv} intervals differ)")
    check(bad_cnt == 0, f"interval counts ({bad_cnt} differ)")
    check(bad_hist == 0, f"histograms ({bad_hist} bins differ)")

    # ---- logit effects by path expansion, LayerNorm linearised at the mean scale
    C = cfg["d_model"]
    x = forward_to_hook(Wm, cfg, toks, "blocks.0.hook_resid_post").reshape(-1, C)
    sigma = np.sqrt(x.var(-1) + cfg.get("eps", 1e-5)).mean()
    ln_scale = float(attr(f, "ln_scale"))
    check(abs(ln_scale - sigma) <= 1e-5 * sigma, f"ln_scale {ln_scale} vs NumPy {sigma}")
    if kind == "neurons":
        R = Wm["blocks.0.mlp.W_out"]
    else:
        Sd = load_safetensors(f"{sae_dir or d + '/sae'}/saelens/sae_weights.safetensors")
        R = Sd["W_dec"] @ Wm["blocks.0.mlp.W_out"]
    R = (R - R.mean(1, keepdims=True)) * Wm["ln_final.w"] / sigma
    LG = R @ Wm["unembed.W_U"]
    ltol = 1e-4 * np.abs(LG).max()
    tid, tv, bid, bv = f["logit_top_ids"][:], f["logit_top"][:], f["logit_bottom_ids"][:], f["logit_bottom"][:]
    bad_lg = 0
    for u in range(U):
        srt = np.sort(LG[u])
        ok = np.allclose(tv[u], LG[u, tid[u]], atol=ltol) and np.allclose(bv[u], LG[u, bid[u]], atol=ltol)
        ok = ok and np.all(LG[u, tid[u]] >= srt[-L] - ltol) and np.all(LG[u, bid[u]] <= srt[L - 1] + ltol)
        ok = ok and np.all(np.diff(tv[u]) <= 0) and np.all(np.diff(bv[u]) >= 0)
        ok = ok and len(set(tid[u])) == L and len(set(bid[u])) == L
        bad_lg += not ok
    check(bad_lg == 0, f"logit effects equal the NumPy path expansion ({bad_lg} units differ)")

    # ---- measures, from the top-k lists with the definitions of docs/analysis.md
    share, eff, agree, ttop = f["top_token_share"][:], f["eff_tokens"][:], f["logit_agreement"][:], f["top_token"][:]
    bad_m = 0
    for u in range(U):
        n = int((tctx[u] >= 0).sum())
        if n == 0:
            bad_m += not (np.isnan(share[u]) and np.isnan(eff[u]) and np.isnan(agree[u]) and ttop[u] == -1)
            continue
        # the unit's sample: its top-k and interval samples, each position once
        pt = tctx[u, :n] * T + tpos[u, :n]
        iv_ok = ictx[u] >= 0
        pool = dict(zip(pt.tolist(), tact[u, :n].tolist()))
        pool.update(zip((ictx[u][iv_ok] * T + ipos[u][iv_ok]).tolist(), iact[u][iv_ok].tolist()))
        p = np.array(sorted(pool))
        centre = flat_tok[p]
        w = np.array([pool[q] for q in p])
        ids = np.unique(centre)
        mass = np.array([w[centre == v].sum() for v in ids])
        pr = mass / mass.sum()
        best = ids[np.argmax(mass)]  # argmax takes the first: the smallest id on a tie
        nxt = [flat_tok[q + 1] for q in p if (q % T) + 1 < T]
        ag = np.mean([y in set(tid[u]) for y in nxt]) if nxt else np.nan
        ok = abs(share[u] - mass.max() / mass.sum()) < 1e-5 and abs(eff[u] - np.exp(-(pr * np.log(pr)).sum())) < 1e-4
        ok = ok and ttop[u] == best and (np.isnan(ag) and np.isnan(agree[u]) or abs(agree[u] - ag) < 1e-6)
        bad_m += not ok
    check(bad_m == 0, f"measures recomputed from the top-k ({bad_m} units differ)")
    # ---- the ultralow cluster: Otsu on log10 density, kept when the classes are a decade apart
    # and the cut is a decade below the median alive density
    cut = float(attr(f, "ultralow_cut"))
    alive = cnt > 0
    ld = np.log10(cnt[alive] / (n_ctx * T))
    want_cut = 0.0
    if alive.sum() >= 2 and ld.max() - ld.min() >= 1:
        lo_, hi_ = ld.min(), ld.max()
        b = np.clip(np.floor((ld - lo_) / (hi_ - lo_) * 128).astype(int), 0, 127)
        best = -1
        for k in range(127):
            c0, c1 = ld[b <= k], ld[b > k]
            if len(c0) and len(c1):
                bv = len(c0) * len(c1) * (c0.mean() - c1.mean()) ** 2
                if bv > best * (1 + 1e-12):
                    best, kc, gap = bv, k, c1.mean() - c0.mean()
        lcut = lo_ + (hi_ - lo_) * (kc + 1) / 128
        if best >= 0 and gap >= 1 and lcut <= np.median(ld) - 1:  # a low mode, far below the typical density
            want_cut = 10 ** lcut
    check(abs(cut - want_cut) <= 1e-5 * max(want_cut, 1e-30), f"ultralow_cut {cut} vs NumPy {want_cut}")
    ul = f["ultralow"][:].astype(bool)
    check(np.array_equal(ul, alive & (cnt / (n_ctx * T) < cut)), "ultralow = alive units below the cut")
    kept = np.where(ul, np.nan, share)
    check(abs(float(attr(f, "median_top_token_share")) - np.nanmedian(kept)) < 1e-5, "median_top_token_share attribute")
    check(abs(float(attr(f, "median_all_top_token_share")) - np.nanmedian(share)) < 1e-5, "median_all_top_token_share")
    e = f["measure_edges_top_token_share"][:]
    h = np.histogram(np.clip(kept[np.isfinite(kept)], 0, 1), bins=e.astype(np.float64))[0]
    check(np.array_equal(h, f["measure_hist_top_token_share"][:]), "measure histogram (top_token_share)")
    # ---- vocabulary table
    off, raw = f["vocab_offsets"][:], f["vocab_bytes"][:].tobytes()
    check(len(off) == cfg["d_vocab"] + 1 and raw[off[ord("a")]:off[ord("a") + 1]] == b"a"
          and raw[off[32]:off[33]] == b" ", "vocabulary table decodes byte tokens")
    print(f"ok   {path}: {U} units, {n_ctx * T} tokens, {dead} dead, recomputed")


def same(a, b):
    fa, fb = h5py.File(a, "r"), h5py.File(b, "r")
    check(sorted(fa.keys()) == sorted(fb.keys()), "same datasets")
    for k in fa.keys():
        x, y = fa[k][:], fb[k][:]
        check(x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f"{k} identical")
    for k in fa.attrs:  # config_hash differs with the output paths of the runs compared
        check(k in fb.attrs and (k == "config_hash" or attr(fa, k) == attr(fb, k)), f"attribute {k} identical")


def planted(sae_path, neu_path, d):
    info = json.load(open(f"{d}/planted.json"))
    fs, fn = h5py.File(sae_path, "r"), h5py.File(neu_path, "r")
    ns = info["n_single"]
    sh, ef = fs["top_token_share"][:], fs["eff_tokens"][:]
    nsh, nef = fn["top_token_share"][:], fn["eff_tokens"][:]
    alive = fn["count"][:] > 0
    check(np.all(sh[:ns] > 0.999) and np.all(ef[:ns] < 1.001), f"planted features are single-token: {sh[:ns]}")
    check(np.all(sh[ns:] < sh[:ns].min()) and np.all(ef[ns:] > ef[:ns].max()),
          "two-token features rank below the planted ones")
    check(np.median(sh[:ns]) > np.median(nsh[alive]) and np.median(ef[:ns]) < np.median(nef[alive]),
          f"planted features beat the neurons (median share {np.median(sh[:ns]):.2f} vs {np.median(nsh[alive]):.2f}, "
          f"eff tokens {np.median(ef[:ns]):.2f} vs {np.median(nef[alive]):.2f})")
    check(np.mean(nsh[alive] > 0.999) < 0.5, "most neurons are not single-token (the comparison means something)")


def main():
    cmd = sys.argv[1]
    if cmd == "fixtures":
        fixtures(sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "planted")
    elif cmd == "check":
        check_file(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] if len(sys.argv) > 5 else None)
    elif cmd == "mixed":
        mixed(sys.argv[2])
    elif cmd == "corr":
        corr_check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif cmd == "same":
        same(sys.argv[2], sys.argv[3])
    elif cmd == "planted":
        planted(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        raise SystemExit(__doc__)
    if FAILS:
        sys.exit(1)


if __name__ == "__main__":
    main()
