#!/usr/bin/python3
"""Mean over the true features of the max cosine to any decoder row of a trained SAE (sae.h5),
compared with a threshold; exits 1 below it."""
import sys
import h5py
import numpy as np

sae_h5, truth, thresh = sys.argv[1], sys.argv[2], float(sys.argv[3])
with h5py.File(sae_h5, "r") as f:
    W_dec = f["W_dec"][...]
F = np.load(truth)
assert W_dec.shape[1] == F.shape[1], (W_dec.shape, F.shape)
D = W_dec / np.maximum(np.linalg.norm(W_dec, axis=1, keepdims=True), 1e-12)
cos = F @ D.T
m = cos.max(axis=1)
print(f"mean max-cosine {m.mean():.4f} (min {m.min():.4f}, >0.9: {(m > 0.9).mean():.3f}) over {len(m)} true features")
sys.exit(0 if m.mean() > thresh else 1)
