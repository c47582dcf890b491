#!/usr/bin/python3
"""`monosem eval` against an independent float64 NumPy oracle of the whole spliced evaluation.

Builds (with its own writers) a small random model, a held-out token split in two shards and
SAELens directories (v6 cfg.json): random standard / topk / jumprelu SAEs at the MLP neurons,
a random SAE at blocks.0.hook_resid_mid (a second hook in the same pass), an identity SAE
(W_enc = W_dec = I, zero biases), topk with k = d_sae and jumprelu with θ = 0 on identity
weights (identities on ReLU neurons), and a zero SAE. Then:
  - `monosem eval job.yaml` (the stage, 2 ranks) on the random SAE;
  - the multi-SAE pass (tests/eval/eval_driver) on all of them, on 1 and on 3 ranks;
and compares every number of eval.json with the oracle recomputing the documented rule
(contexts, predicted positions, definitions), the identities exactly (loss recovered 1, KL 0),
the zero SAE (recovered 0), eval_density.h5 and sparsity.safetensors.
usage: eval_ref.py EVAL_DRIVER WORKDIR
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model"))
import ref_forward as rf  # noqa: E402  (its NumPy forward and safetensors writer)

FAILS = []
T, N_CTX_EVAL, BATCH = 16, 7, 2
ULTRALOW = 0.02  # resolvable with 112 tokens, so ultralow counts are exercised


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def near(got, want, what, rtol, atol=0.0):
    ok = got is not None and math.isfinite(got) and abs(got - want) <= atol + rtol * abs(want)
    check(ok, f"{what}: monosem {got!r} oracle {want!r} (rtol {rtol:g}, atol {atol:g})")


# ---------------------------------------------------------------- fixtures (own writers)
def write_tokens(tdir, ids, split_at, V):
    os.makedirs(tdir, exist_ok=True)
    parts = [ids[:split_at], ids[split_at:]]
    entries = []
    for i, p in enumerate(parts):
        name = f"heldout-{i:06d}.bin"
        with open(os.path.join(tdir, name), "wb") as f:
            f.write(b"MSTOKENS" + struct.pack("<IIQQ", 1, 2, len(p), 0) + np.asarray(p, "<u2").tobytes())
        entries.append({"file": name, "tokens": len(p), "docs": 1})
    man = {"version": 1, "format": "MSTOKENS", "dtype": "uint16", "tokenizer_sha256": "0" * 64,
           "vocab_size": V, "eot": V - 1, "train": [], "heldout": entries,
           "train_tokens": 0, "heldout_tokens": len(ids)}
    with open(os.path.join(tdir, "manifest.json"), "w") as f:
        json.dump(man, f)


def write_sae(d, arch, hook, W_enc, b_enc, W_dec, b_dec, threshold=None, k=None):
    lens = os.path.join(d, "saelens")
    os.makedirs(lens, exist_ok=True)
    cfg = {"architecture": arch, "d_in": W_enc.shape[0], "d_sae": W_enc.shape[1], "dtype": "float32",
           "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
           "metadata": {"sae_lens_version": "6.0.0", "hook_name": hook, "model_name": "test",
                        "context_size": T, "prepend_bos": False}}
    if k is not None:
        cfg["k"] = int(k)
    with open(os.path.join(lens, "cfg.json"), "w") as f:
        json.dump(cfg, f)
    t = {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}
    if threshold is not None:
        t["threshold"] = threshold
    rf.write_safetensors(os.path.join(lens, "sae_weights.safetensors"), {k2: v.astype(np.float32) for k2, v in t.items()})
    return {"arch": arch, "hook": hook, "k": k, **{k2: v.astype(np.float32).astype(np.float64) for k2, v in t.items()}}


# ---------------------------------------------------------------- the oracle (float64)
def encode(s, x):
    z = (x - s["b_dec"]) @ s["W_enc"] + s["b_enc"]
    if s["arch"] == "standard":
        return np.maximum(z, 0)
    if s["arch"] == "jumprelu":
        return np.where(z > s["threshold"], z, 0.0)
    k = s["k"]  # topk: the k largest pre-activations, then ReLU
    idx = np.argpartition(-z, k - 1, axis=-1)[..., :k]
    f = np.zeros_like(z)
    np.put_along_axis(f, idx, np.maximum(np.take_along_axis(z, idx, -1), 0), -1)
    return f


def decode(s, f):
    return f @ s["W_dec"] + s["b_dec"]


def log_softmax(l):
    m = l.max(-1, keepdims=True)
    return l - (m + np.log(np.exp(l - m).sum(-1, keepdims=True)))


def density(fires, n, ultralow):
    dens = fires / n
    alive = fires > 0
    hist = np.zeros(40, np.int64)
    b = np.clip(np.floor((np.log10(dens[alive]) + 10.0) / 0.25).astype(int), 0, 39)
    np.add.at(hist, b, 1)
    return {"dead": int((~alive).sum()), "ultralow": int((alive & (dens < ultralow)).sum()),
            "dense": int((dens > 0.01).sum()), "hist": hist}


def oracle(cfg, W, ids, saes):
    """Recomputes eval.json's numbers from the documented rule: context i = ids[i*T : i*T+T],
    targets ids[i*T+1 : i*T+T+1], every position predicted and reconstructed."""
    win = np.stack([ids[i * T: i * T + T + 1] for i in range(N_CTX_EVAL)])  # (n, T+1)
    # the model sees T+1 tokens; causal attention keeps positions < T as with T tokens
    logits, loss, hooks = rf.np_forward(cfg, W, win)
    lp_clean = log_softmax(logits[:, :T])
    N = N_CTX_EVAL * T
    clean = loss[:, :T].mean()
    res = []
    for s in saes:
        h = s["hook"]
        x = hooks[h][:, :T].reshape(N, -1)
        f = encode(s, hooks[h])
        xh_full = decode(s, f)
        lz, lossz, _ = rf.np_forward(cfg, W, win, zero=h)
        ls, losss, _ = rf.np_forward(cfg, W, win, replace={h: lambda a, xh=xh_full: xh})
        lpz, lps = log_softmax(lz[:, :T]), log_softmax(ls[:, :T])
        p = np.exp(lp_clean)
        f = f[:, :T].reshape(N, -1)
        xh = xh_full[:, :T].reshape(N, -1)
        nx, nh = np.linalg.norm(x, axis=1), np.linalg.norm(xh, axis=1)
        nz, both = nx > 0, (nx > 0) & (nh > 0)
        cos = ((x * xh).sum(1)[both] / (nx * nh)[both]).mean() if both.any() else math.nan
        r = {"loss_sae": losss[:, :T].mean(), "loss_zero": lossz[:, :T].mean(),
             "kl": (p * (lp_clean - lps)).sum(-1).mean(), "kl_zero": (p * (lp_clean - lpz)).sum(-1).mean(),
             "mse": ((xh - x) ** 2).sum() / x.size,
             "fvu": ((xh - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum(),
             "cos": cos,
             "l2_ratio": (nh[nz] / nx[nz]).mean(),
             "l0": (f != 0).sum(1).mean(), "l1": np.abs(f).sum(1).mean(),
             "fires": (f != 0).sum(0), "neuron_fires": (x > 0).sum(0), "neuron_l0": (x > 0).sum(1).mean()}
        r["recovered"] = (r["loss_zero"] - r["loss_sae"]) / (r["loss_zero"] - clean)
        res.append(r)
    return clean, res


# ---------------------------------------------------------------- comparisons
def read_h5_density(path):
    import h5py
    with h5py.File(path, "r") as f:
        return {k: f[k][...] for k in f.keys()}, dict(f.attrs)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    meta = h.pop("__metadata__", {})
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], "<f4").reshape(v["shape"])
            for k, v in h.items()}, meta


def compare(tag, ev, clean, r, exact=None):
    lo, re, fe, ne = ev["loss"], ev["reconstruction"], ev["features"], ev["neurons"]
    near(lo["clean"], clean, f"{tag}: L_clean", 1e-5)
    near(lo["sae"], r["loss_sae"], f"{tag}: L_sae", 1e-5)
    near(lo["zero"], r["loss_zero"], f"{tag}: L_zero", 1e-5)
    near(lo["recovered"], r["recovered"], f"{tag}: loss recovered", 1e-4, 2e-4)
    near(lo["kl"], r["kl"], f"{tag}: KL(clean||sae)", 1e-3, 2e-6)
    near(lo["kl_zero"], r["kl_zero"], f"{tag}: KL(clean||zero)", 1e-3, 2e-6)
    near(re["mse"], r["mse"], f"{tag}: MSE", 1e-4, 1e-9)
    near(re["fvu"], r["fvu"], f"{tag}: FVU", 1e-4, 1e-9)
    near(re["explained_variance"], 1 - r["fvu"], f"{tag}: explained variance", 1e-4, 1e-9)
    if math.isnan(r["cos"]):  # x̂ = 0 on every row: no cosine (JSON null)
        check(re["cos"] is None, f"{tag}: cos undefined")
    else:
        near(re["cos"], r["cos"], f"{tag}: cos", 1e-5, 1e-6)
    near(re["l2_ratio"], r["l2_ratio"], f"{tag}: L2 ratio", 1e-5, 1e-6)
    near(re["l0"], r["l0"], f"{tag}: L0", 0, 2.0 / (N_CTX_EVAL * T))  # a boundary flip at most
    near(re["l1"], r["l1"], f"{tag}: L1", 1e-4, 1e-6)
    o = density(r["fires"], N_CTX_EVAL * T, ULTRALOW)
    check(abs(fe["dead"] - o["dead"]) <= 1 and abs(fe["ultralow"] - o["ultralow"]) <= 1
          and abs(fe["dense"] - o["dense"]) <= 1,
          f"{tag}: dead/ultralow/dense {fe['dead']}/{fe['ultralow']}/{fe['dense']} vs {o['dead']}/{o['ultralow']}/{o['dense']}")
    check(np.abs(np.array(fe["log10_density_histogram"]["counts"]) - o["hist"]).sum() <= 2, f"{tag}: density histogram")
    on = density(r["neuron_fires"], N_CTX_EVAL * T, ULTRALOW)
    check(ne["dead"] == on["dead"] and ne["dense"] == on["dense"], f"{tag}: neuron dead/dense")
    near(ne["l0"], r["neuron_l0"], f"{tag}: neuron L0", 0, 1e-9)
    ho = ev["heldout"]
    check(ho["n_contexts"] == N_CTX_EVAL and ho["context"] == T and ho["tokens"] == N_CTX_EVAL * T
          and ho["end_token"] == N_CTX_EVAL * T + 1 and "rule" in ho, f"{tag}: held-out rule recorded")
    if exact == "identity":
        check(lo["recovered"] == 1.0 or abs(lo["recovered"] - 1) < 1e-6, f"{tag}: identity recovers the loss ({lo['recovered']!r})")
        check(abs(lo["kl"]) < 1e-7, f"{tag}: identity KL 0 ({lo['kl']!r})")
        check(abs(lo["sae"] - lo["clean"]) < 1e-7 and re["fvu"] < 1e-10, f"{tag}: identity L_sae = L_clean, FVU 0")
    if exact == "zero":
        check(abs(lo["recovered"]) < 1e-6 and abs(lo["kl"] - lo["kl_zero"]) < 1e-7,
              f"{tag}: zero SAE = zero ablation (recovered {lo['recovered']!r})")


def run(cmd, what):
    r = subprocess.run(cmd, capture_output=True, text=True)
    check(r.returncode == 0, f"{what} exits 0")
    if r.returncode:
        print(r.stdout[-3000:], r.stderr[-3000:])
    return r


def main():
    driver, work = sys.argv[1], sys.argv[2]
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    rng = np.random.default_rng(11)
    cfg = rf.base_cfg()
    W = rf.random_model(cfg, rng)
    W64 = {k: v.astype(np.float64) for k, v in W.items()}
    rf.save_model(os.path.join(work, "model"), cfg, W)
    V, C, M = cfg["d_vocab"], cfg["d_model"], cfg["d_mlp"]
    ids = rng.integers(0, V, N_CTX_EVAL * T + 9)  # 9 tokens past the last context: unused
    write_tokens(os.path.join(work, "tokens"), ids, 50, V)
    post, mid = "blocks.0.mlp.hook_post", "blocks.0.hook_resid_mid"

    def rnd(*shape, s=1.0):
        return rng.normal(0, s, shape)

    S = 96
    eye = np.eye(M)
    saes = {
        "random": write_sae(f"{work}/random", "standard", post, rnd(M, S, s=0.15), rnd(S, s=0.3), rnd(S, M, s=0.1), rnd(M, s=0.05)),
        "topk": write_sae(f"{work}/topk", "topk", post, rnd(M, S, s=0.15), rnd(S, s=0.3), rnd(S, M, s=0.1), rnd(M, s=0.05), k=7),
        "jumprelu": write_sae(f"{work}/jumprelu", "jumprelu", post, rnd(M, S, s=0.15), rnd(S, s=0.3), rnd(S, M, s=0.1),
                              rnd(M, s=0.05), threshold=rng.uniform(0, 0.4, S)),
        "resid_mid": write_sae(f"{work}/resid_mid", "standard", mid, rnd(C, S, s=0.3), rnd(S, s=0.3), rnd(S, C, s=0.3), rnd(C, s=0.1)),
        "identity": write_sae(f"{work}/identity", "standard", post, eye, np.zeros(M), eye, np.zeros(M)),
        "topk_all": write_sae(f"{work}/topk_all", "topk", post, eye, np.zeros(M), eye, np.zeros(M), k=M),
        "jumprelu_0": write_sae(f"{work}/jumprelu_0", "jumprelu", post, eye, np.zeros(M), eye, np.zeros(M), threshold=np.zeros(M)),
        "zero": write_sae(f"{work}/zero", "standard", post, np.zeros((M, M)), np.zeros(M), np.zeros((M, M)), np.zeros(M)),
    }
    names = list(saes)
    clean, res = oracle(cfg, W64, ids, [saes[n] for n in names])
    exact = {"identity": "identity", "topk_all": "identity", "jumprelu_0": "identity", "zero": "zero"}
    job = os.path.join(work, "job.yaml")
    with open(job, "w") as f:
        f.write(f"""run: {{name: evaltest, out_dir: {work}/run, seed: 1, log_every_s: 1000}}
corpus: {{context: {T}, token_dir: {work}/tokens}}
model: {{dir: {work}/model, hook: {post}}}
sae: {{out_dir: {work}/random, ultralow_density: {ULTRALOW}}}
generate: {{sample_per_context: {T}}}
eval: {{tokens: {N_CTX_EVAL * T + 5}, batch: {BATCH}}}
""")
    mpirun = [os.environ.get("MS_MPIRUN", "mpirun")] + os.environ.get("MS_MPI_FLAGS", "").split()
    monosem = os.path.join(os.environ["MS_BIN"], "monosem")

    # 1) the stage on 2 ranks: the job's SAE
    r = run(mpirun + ["-n", "2", monosem, "eval", job], "monosem eval (2 ranks)")
    out = r.stdout
    for key in ("L_clean", "L_sae", "L_zero", "loss recovered", "KL", "MSE", "FVU", "L0", "dead", "ultralow"):
        check(key in out, f"stage prints {key}")
    ev = json.load(open(f"{work}/random/eval.json"))
    compare("stage random", ev, clean, res[names.index("random")])
    rec = open(f"{work}/run/run-eval.yaml").read()
    check("eval.sae:" in rec and "L_sae" in rec and "recovered" in rec, "run record has a line for the SAE")
    dens, attrs = read_h5_density(f"{work}/random/eval_density.h5")
    o = res[names.index("random")]
    check(np.abs(dens["feature_fires"] - o["fires"]).sum() <= 2, "eval_density.h5 feature_fires = oracle's firing counts")
    check(np.array_equal(dens["neuron_fires"], o["neuron_fires"]), "eval_density.h5 neuron_fires = oracle's")
    sp, meta = read_safetensors(f"{work}/random/saelens/sparsity.safetensors")
    check(np.allclose(sp["sparsity"], np.log10(dens["feature_fires"] / (N_CTX_EVAL * T) + 1e-10), atol=1e-6)
          and "eval" in meta.get("density_source", ""), "sparsity.safetensors = log10 eval densities, source recorded")

    # 2) every SAE in one pass, on 1 and 3 ranks
    evs = {}
    for np_ in (1, 3):
        for n in names:
            for fn in ("eval.json", "eval_density.h5"):
                if os.path.exists(f"{work}/{n}/{fn}"):
                    os.remove(f"{work}/{n}/{fn}")
        r = run(mpirun + ["-n", str(np_), driver, job] + [f"{work}/{n}" for n in names], f"eval_driver {np_} rank(s)")
        check(r.stdout.count("L_zero") >= len(names) + 1, f"{np_} rank(s): comparison table printed")
        evs[np_] = {n: json.load(open(f"{work}/{n}/eval.json")) for n in names}
        for i, n in enumerate(names):
            compare(f"{np_}r {n}", evs[np_][n], clean, res[i], exact.get(n))
    for n in names:
        a, b = evs[1][n], evs[3][n]
        for sec, key in (("loss", "sae"), ("loss", "kl"), ("reconstruction", "fvu"), ("reconstruction", "l0")):
            near(b[sec][key], a[sec][key], f"1 vs 3 ranks {n} {key}", 1e-5, 1e-9)
        check(a["features"]["dead"] == b["features"]["dead"], f"1 vs 3 ranks {n}: dead")

    # 3) errors are one line on every rank, never a hang
    bad = os.path.join(work, "bad.yaml")
    with open(bad, "w") as f:
        f.write(open(job).read().replace(f"{work}/random", f"{work}/missing"))
    r = subprocess.run(mpirun + ["-n", "2", monosem, "eval", bad], capture_output=True, text=True)
    check(r.returncode != 0 and "missing/saelens/cfg.json" in r.stderr, f"missing SAE: one clear error ({r.stderr.strip()[:200]})")
    print(f"{len(FAILS)} failure(s)")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
