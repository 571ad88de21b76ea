"""Density attention written straight from the equations, one head, density and chunk at a time.

The independent check the vectorised modules are tested against, and the baseline in
benchmarks/bench_core.py."""

import torch


def loop_density_attention(x, norm_axis, offsets, scales, weights, mode, eps, head_axis=None):
    """x * gate(z) with offsets, scales, weights of shape (heads, densities)."""
    H, K = offsets.shape
    split_axis = norm_axis if head_axis is None else head_axis
    n = x.shape[split_axis]
    chunks = []
    for h in range(H):
        lo, hi = h * (n // H), ((h + 1) * (n // H) if h < H - 1 else n)
        part = x.narrow(split_axis, lo, hi - lo)
        mean = part.mean(norm_axis, keepdim=True)
        var = ((part - mean) ** 2).mean(norm_axis, keepdim=True)
        z = (part - mean) / torch.sqrt(var + eps)
        gate = torch.zeros_like(z) if mode == "mixture" else torch.ones_like(z)
        for k in range(K):
            density = torch.exp(-((z - offsets[h, k]) ** 2) / (2 * scales[h, k] ** 2))
            gate = gate + weights[h, k] * density if mode == "mixture" else gate * density
        chunks.append(part * gate)
    return torch.cat(chunks, dim=split_axis)
