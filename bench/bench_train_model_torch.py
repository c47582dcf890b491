#!/usr/bin/env python3
"""PyTorch CPU baseline for bench_train_model: the same one-layer model (d_model 128, d_mlp 512,
4x32 heads, LayerNorm, ReLU, untied unembedding), forward + backward + clip + AdamW per step.
usage: /usr/bin/python3 bench_train_model_torch.py [--B 32] [--T 128] [--vocab 4257] [--steps 20]
       [--threads N]  (run with the same thread count as the C benchmark)"""
import argparse, math, time
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(s, C, M, H, D, T, V):
        super().__init__()
        s.H, s.D = H, D
        s.W_E = nn.Parameter(torch.randn(V, C) * 0.02)
        s.W_pos = nn.Parameter(torch.randn(T, C) * 0.02)
        s.ln1, s.ln2, s.lnf = nn.LayerNorm(C), nn.LayerNorm(C), nn.LayerNorm(C)
        s.qkv = nn.Linear(C, 3 * H * D)
        s.o = nn.Linear(H * D, C)
        s.w_in, s.w_out = nn.Linear(C, M), nn.Linear(M, C)
        s.unembed = nn.Linear(C, V)

    def forward(s, x):
        B, T = x.shape
        h = s.W_E[x] + s.W_pos[:T]
        q, k, v = s.qkv(s.ln1(h)).view(B, T, 3, s.H, s.D).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(s.D)
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float('-inf')).softmax(-1)
        z = (att @ v).transpose(1, 2).reshape(B, T, s.H * s.D)
        h = h + s.o(z)
        h = h + s.w_out(F.relu(s.w_in(s.ln2(h))))
        return s.unembed(s.lnf(h))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--B', type=int, default=32)
    ap.add_argument('--T', type=int, default=128)
    ap.add_argument('--vocab', type=int, default=4257)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = Block(128, 512, 4, 32, a.T, a.vocab)
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2]
    other = [p for n, p in m.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': other, 'weight_decay': 0.0}],
                            lr=1e-3, betas=(0.9, 0.95))
    x = torch.randint(0, a.vocab, (a.B, a.T))
    y = torch.randint(0, a.vocab, (a.B, a.T))
    best, total = 1e30, 0.0
    for it in range(a.steps + 2):
        t0 = time.perf_counter()
        loss = F.cross_entropy(m(x).view(-1, a.vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if it >= 2:
            best = min(best, dt)
            total += dt
    tok = a.B * a.T
    print('torch %s, %d thread(s): train tokens/s best %.0f, mean %.0f' % (torch.__version__, a.threads, tok / best,
                                                                        tok * a.steps / total))


if __name__ == '__main__':
    main()
