#!/usr/bin/env python3
"""Writes a small synthetic run for the report tests: an SAE directory (sae.h5 with W_dec,
eval.json, analysis.h5) and the neurons' analysis.h5, laid out and shaped as docs/analysis.md
specifies, plus a job file. Features are planted on one token each (a clean top token), neurons
mix several. Usage: make_fixture.py OUT_DIR [--units U --neurons D]"""
import argparse
import json
import os

import h5py
import numpy as np

WORDS = ("the of and to in that he shall unto his I a for they be is him not them it with all thou "
         "thy was God which my me said but ye their have will whale sea ship Ahab Ishmael boat "
         "harpoon captain deck ; : , . ! ? 1 2 3 4 5 6 7 8 9 10 Lord Israel king land day house").split()


def vocab():
    toks = []
    for w in WORDS:
        toks += [w, " " + w]
    toks += ["\n", " \"", "<|endoftext|>", "\u00e9", "caf\u00e9"]
    b = [t.encode() for t in toks] + [b"\xe2\x80"]  # a partial UTF-8 token (byte-level BPE has them)
    return b


def write_analysis(path, kind, name, n_units, rng, V, planted, dirs):
    K, w, I, S, B, L = 8, 4, 11, 3, 32, 8
    W = 2 * w + 1
    T = 128
    dead = np.zeros(n_units, bool)
    if kind == "sae":
        dead[rng.choice(n_units, max(1, n_units // 20), replace=False)] = True
    # densities: a bimodal log10 distribution (ultralow cluster near 1e-7 and the real features)
    logd = np.where(rng.random(n_units) < 0.15, rng.normal(-6.8, 0.3, n_units), rng.normal(-3.2, 0.6, n_units))
    tokens = 20000000
    count = np.where(dead, 0, np.maximum(1, np.round(10.0 ** logd * tokens))).astype(np.int64)
    density = (count / tokens).astype(np.float32)
    max_act = np.where(dead, 0, rng.uniform(1, 10, n_units)).astype(np.float32)
    mean_act = (max_act * rng.uniform(0.2, 0.5, n_units)).astype(np.float32)

    top_act = np.zeros((n_units, K), np.float32)
    top_ctx = -np.ones((n_units, K), np.int64)
    top_pos = np.zeros((n_units, K), np.int64)
    top_tokens = -np.ones((n_units, K, W), np.int32)
    top_token_acts = np.zeros((n_units, K, W), np.float32)
    i_act = np.zeros((n_units, I, S), np.float32)
    i_ctx = -np.ones((n_units, I, S), np.int64)
    i_pos = np.zeros((n_units, I, S), np.int64)
    i_tok = -np.ones((n_units, I, S, W), np.int32)
    i_tacts = np.zeros((n_units, I, S, W), np.float32)
    i_count = np.zeros((n_units, I), np.int64)
    edges = (np.arange(I + 1)[None, :] * max_act[:, None] / I).astype(np.float32)
    hist = np.zeros((n_units, B), np.int64)
    for u in range(n_units):
        if dead[u]:
            continue
        k = min(K, int(count[u]))
        acts = np.sort(rng.uniform(0.5, 1.0, k))[::-1] * max_act[u]
        acts[0] = max_act[u]
        top_act[u, :k] = acts
        top_ctx[u, :k] = rng.integers(0, 1000, k)
        top_pos[u, :k] = rng.integers(0, T, k)
        for j in range(k):
            win = rng.integers(0, V, W)
            win[w] = planted[u] if (kind == "sae" or rng.random() < 0.3) else rng.integers(0, V)
            if top_pos[u, j] < w:  # window reaching before the context start
                win[: w - top_pos[u, j]] = -1
            top_tokens[u, j] = win
            ta = np.where(rng.random(W) < 0.3, rng.uniform(0, 0.3, W) * acts[j], 0)
            ta[w] = acts[j]
            ta[win < 0] = 0
            top_token_acts[u, j] = ta
        for i in range(I):
            n_in = int(rng.integers(0, 40)) if i < I - 1 else k
            i_count[u, i] = n_in
            for s in range(min(S, n_in)):
                a = rng.uniform(edges[u, i], edges[u, i + 1])
                i_act[u, i, s] = a
                i_ctx[u, i, s] = rng.integers(0, 1000)
                i_pos[u, i, s] = rng.integers(w, T)
                win = rng.integers(0, V, W)
                i_tok[u, i, s] = win
                ta = np.zeros(W, np.float32)
                ta[w] = a
                i_tacts[u, i, s] = ta
        hist[u] = np.maximum(0, np.round(np.exp(-np.arange(B) / 6.0) * count[u] / 6)).astype(np.int64)
    logit_top_ids = rng.integers(0, V, (n_units, L)).astype(np.int32)
    logit_bottom_ids = rng.integers(0, V, (n_units, L)).astype(np.int32)
    logit_top = np.sort(rng.uniform(0.1, 2, (n_units, L)), axis=1)[:, ::-1].astype(np.float32)
    logit_bottom = np.sort(-rng.uniform(0.1, 2, (n_units, L)), axis=1).astype(np.float32)
    top_token = np.where(dead, -1, planted).astype(np.int32)
    if kind == "sae":
        share = rng.beta(6, 2, n_units)
        eff = 1 + rng.gamma(1.2, 0.8, n_units)
        agree = rng.beta(2, 4, n_units)
    else:
        share = rng.beta(2, 5, n_units)
        eff = 1 + rng.gamma(4, 0.9, n_units)
        agree = rng.beta(1, 6, n_units)
    share, eff, agree = (np.where(dead, np.nan, x).astype(np.float32) for x in (share, eff, agree))

    vb = vocab()
    off = np.zeros(len(vb) + 1, np.int64)
    off[1:] = np.cumsum([len(x) for x in vb])
    with h5py.File(path, "w") as f:
        for k, v in dict(count=count, density=density, max_act=max_act, mean_act=mean_act, top_act=top_act,
                         top_ctx=top_ctx, top_pos=top_pos, top_tokens=top_tokens, top_token_acts=top_token_acts,
                         interval_edges=edges, interval_count=i_count, interval_act=i_act, interval_ctx=i_ctx,
                         interval_pos=i_pos, interval_tokens=i_tok, interval_token_acts=i_tacts, hist=hist,
                         logit_top_ids=logit_top_ids, logit_bottom_ids=logit_bottom_ids, logit_top=logit_top,
                         logit_bottom=logit_bottom, top_token=top_token, top_token_share=share, eff_tokens=eff,
                         logit_agreement=agree).items():
            f[k] = v
        for m, x, lo, hi in (("top_token_share", share, 0, 1), ("eff_tokens", eff, 1, K),
                             ("logit_agreement", agree, 0, 1)):
            e = np.linspace(lo, hi, 21).astype(np.float32)
            f["measure_edges_" + m] = e
            f["measure_hist_" + m] = np.histogram(np.clip(x[~np.isnan(x)], lo, hi), e)[0].astype(np.int64)
            f.attrs["median_" + m] = str(float(np.nanmedian(x)))
        f["vocab_offsets"] = off
        f["vocab_bytes"] = np.frombuffer(b"".join(vb), np.uint8)
        for k, v in dict(format_version="1", kind=kind, name=name, tokens=str(tokens), top_k=str(K),
                         context_window=str(w), intervals=str(I), interval_samples=str(S), hist_bins=str(B),
                         n_logits=str(L), context=str(T), dead=str(int(dead.sum())), split="train",
                         hook="blocks.0.mlp.hook_post").items():
            f.attrs[k] = v
    return density


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--neurons", type=int, default=48)
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    V = len(vocab())
    run = os.path.abspath(a.out)
    sae, neu = os.path.join(run, "sae"), os.path.join(run, "neurons")
    os.makedirs(sae, exist_ok=True)
    os.makedirs(neu, exist_ok=True)
    D, U = a.neurons, a.units
    W_dec = rng.normal(size=(U, D)).astype(np.float32)
    # a few features aligned with a neuron, so nearest-neuron links have a clear answer
    for u in range(0, U, 7):
        W_dec[u] = 0.05 * W_dec[u]
        W_dec[u, u % D] = 1.0
    with h5py.File(os.path.join(sae, "sae.h5"), "w") as f:
        f["W_dec"] = W_dec
        f["W_enc"] = W_dec.T.copy()
    planted = rng.integers(0, V - 6, U)
    dens = write_analysis(os.path.join(sae, "analysis.h5"), "sae", "sae", U, rng, V, planted, W_dec)
    ndens = write_analysis(os.path.join(neu, "analysis.h5"), "neurons", "neurons", D, rng, V, rng.integers(0, V, D), None)
    # eval.json in the layout `monosem eval` writes (apps/eval_run.c): loss, reconstruction,
    # features/neurons density sections with a log10 histogram {lo, step, counts}
    def dens_section(d):
        alive = d[d > 0]
        return {"n": int(d.size), "dead": int((d == 0).sum()), "ultralow": int((alive < 1e-6).sum()),
                "dense": int((d > 0.01).sum()), "ultralow_density": 1e-6, "min_detectable_density": 5e-8,
                "rare": int((d < 1e-4).sum()), "rare_density": 1e-4, "rare_detectable": True,
                "ultralow_detectable": True,
                "log10_density_histogram": {"lo": -10.0, "step": 0.25, "counts": np.histogram(
                    np.log10(alive), np.linspace(-10, 0, 41))[0].tolist()}}
    ev = {"sae": "sae", "d_sae": U, "d_in": D, "heldout": {"tokens": 20000000, "split": "heldout"},
          "loss": {"clean": 4.28, "sae": 4.61, "zero": 5.9, "recovered": (5.9 - 4.61) / (5.9 - 4.28), "kl": 0.31},
          "reconstruction": {"mse": 0.012, "fvu": 0.24, "explained_variance": 0.76, "cos": 0.87, "l2_ratio": 0.91,
                             "l0": 14.2, "l1": 21.0},
          "features": dict(dens_section(dens), densities="eval_density.h5"),
          "neurons": dict(dens_section(ndens), l0=31.5),
          "definitions": {"recovered": "(zero - sae) / (zero - clean)"}}
    with open(os.path.join(sae, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
    # compare/universality.json as `monosem compare` writes it (apps/stage_compare.c), with the
    # control; the report shows its medians
    os.makedirs(os.path.join(run, "compare"), exist_ok=True)
    univ = {"tokens": 65536, "features_median": 0.5812, "neurons_median": 0.5234,
            "paper": {"features_median": 0.72, "neurons_median": 0.46},
            "features": [{"a": "A1", "b": "B1", "activation_corr": {"a_max": [0.5812] * 4}}],
            "neurons": {"a": "neurons-A", "b": "neurons-B"},
            "control": {"model": "R", "reference": "B", "features_median": 0.3141, "neurons_median": 0.2718,
                        "features": [], "neurons": None}}
    with open(os.path.join(run, "compare", "universality.json"), "w") as f:
        json.dump(univ, f, indent=1)
    with open(os.path.join(run, "job.yaml"), "w") as f:
        f.write(f"run:\n  name: report-test\n  out_dir: {run}\nsae:\n  out_dir: {sae}\n")


if __name__ == "__main__":
    main()
