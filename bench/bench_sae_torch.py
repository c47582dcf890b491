#!/usr/bin/python3
"""bench/bench_sae_torch.py: PyTorch CPU baseline of the same relu-l1 SAE training step as
bench_sae (autograd forward/backward, parallel-component removal, Adam, renormalisation).

usage: /usr/bin/python3 bench/bench_sae_torch.py --d 512 --m 4096 --batch 4096 --threads 2
                                                  [--regime dense|sparse] [--steps 3]
Prints "torch_act_per_s N" (best step after a warm-up, wall clock), "torch_act_per_cpu_s N"
(per process-CPU-second: robust to other jobs at 1 thread) and "torch_l0 N".
Regimes as in bench_sae.c: dense = fresh Kaiming init on Gaussian inputs; sparse = a
trained-like dictionary (W_dec = true directions, W_enc = W_decᵀ, negative b_enc) on sparse
sums of L = d_sae/200 true directions.
"""
import argparse
import math
import os
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--regime", default="dense")
    ap.add_argument("--steps", type=int, default=3)
    a = ap.parse_args()
    # Debian's torch runs its GEMMs on OpenBLAS, whose own pool ignores torch.set_num_threads:
    # pin it before the import, or a "1-thread" baseline silently uses every core
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)
    import torch  # noqa: E402 (after the thread pins)

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    d, m, B = a.d, a.m, a.batch
    l1 = 0.004
    if a.regime == "sparse":
        D = torch.randn(m, d)
        D /= D.norm(dim=1, keepdim=True)
        L = max(1, m // 200)
        idx = torch.randint(0, m, (B, L))
        coef = 0.5 + torch.rand(B, L)
        x = torch.einsum("bl,bld->bd", coef, D[idx])
        W_dec = D.clone()
        W_enc = D.t().contiguous()
        cut = 3.0 * math.sqrt(L / d) * 0.75 + 0.25
        b_enc = torch.full((m,), -cut)
    else:
        x = torch.randn(B, d)
        W_dec = (torch.rand(m, d) * 2 - 1) * math.sqrt(6.0 / m)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        W_enc = (torch.rand(d, m) * 2 - 1) * math.sqrt(6.0 / d)
        b_enc = torch.zeros(m)
    b_dec = torch.zeros(d)
    params = [torch.nn.Parameter(t) for t in (W_enc, b_enc, W_dec, b_dec)]
    W_enc, b_enc, W_dec, b_dec = params
    opt = torch.optim.Adam(params, lr=1e-6, betas=(0.9, 0.999), eps=1e-8)
    best = float("inf")
    best_cpu = float("inf")
    l0 = 0.0
    for it in range(a.steps + 1):
        t0 = time.perf_counter()
        c0 = time.process_time()
        z = (x - b_dec) @ W_enc + b_enc
        f = torch.relu(z)
        xhat = f @ W_dec + b_dec
        loss = ((xhat - x) ** 2).mean() + l1 * f.sum(dim=1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            g = W_dec.grad
            g -= (g * W_dec).sum(dim=1, keepdim=True) * W_dec
            opt.step()
            W_dec /= W_dec.norm(dim=1, keepdim=True)
            l0 = (f > 0).float().sum(dim=1).mean().item()
        dt = time.perf_counter() - t0
        dc = time.process_time() - c0
        if it > 0:
            best = min(best, dt)
            best_cpu = min(best_cpu, dc)
    print(f"torch_act_per_s {B / best:.1f}")
    print(f"torch_act_per_cpu_s {B / best_cpu:.1f}")
    print(f"torch_l0 {l0:.1f}")


if __name__ == "__main__":
    main()
