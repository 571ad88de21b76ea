"""The original release's maths (gaussian-adaptive-attention 0.1.5, density_adaptive_attention), without its bugs.

Per head (a chunk of the normalisation axis, the last taking the remainder), with mean m and unbiased
variance v of the head's real entries and u = x - m, the original gates every entry by

    gate = prod_k N(u; d_k, c_k^2 v), normalised to sum to 1 over the head's entries

with offsets d_k in x units and learnable c_k (initialised from randn). The product of K Gaussians in u is
one Gaussian: log gate = -P (u - C)^2 / (2 v) + const, with precision P = sum_k 1/c_k^2 and centre
C = sum_k (d_k / c_k^2) / P, and the constant cancels in the normalisation. So the gate is a softmax of
those logits over the head's entries: no factor underflows or overflows, where the original's product of
K small or large numbers gives 0 or NaN.

The modules keep the original constructors, forward signatures, parameter names (`mean_offsets`, `c`) and
state_dict layout (`attention_heads.j.…`, `layers.i.…`), so its checkpoints load. What they fix:
eps reaches every head (the original's multi-head and block constructors pass it into mean_offset_init),
mean_offset_init initialises the offsets, padding is left out of the statistics and the normalisation and
passes through untouched (a block no longer adds it to itself), NaN or infinite padding stays where it is.
`daam`'s own classes are the true mixture; these exist so code written for the original runs unchanged."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from . import fused
from .attention import _LOW_PRECISION, _check_positive_int, _resolve_axis, real_entries


def normalised_product_gate(x: torch.Tensor, norm_axis: int, offsets: torch.Tensor, c: torch.Tensor,
                            real: torch.Tensor | None, eps: float) -> torch.Tensor:
    """The original's gate for x, with (heads, K) offsets and c: shaped like x, summing to 1 over each head's
    real entries along norm_axis (padding: 0)."""
    heads_n = offsets.shape[0]
    if x.dim() < 1 or not x.is_floating_point():
        raise ValueError(f"input must be a floating-point tensor with at least 1 dimension, got {x.dtype} {tuple(x.shape)}")
    axis = _resolve_axis("norm_axis", norm_axis, x.dim(), x.shape)
    if x.shape[axis] < heads_n:
        raise ValueError(f"num_heads={heads_n} exceeds the {x.shape[axis]} entries on norm_axis={axis} "
                         f"of the input of shape {tuple(x.shape)}")
    dtype = torch.float32 if x.dtype in _LOW_PRECISION else torch.promote_types(x.dtype, offsets.dtype)
    A, N, B = math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1:])
    x3 = x.to(dtype).reshape(A, N, B)
    real3 = None if real is None else real.reshape(A, N, B)
    inv_c2 = c.to(dtype).square().reciprocal()  # (heads, K)
    precision = inv_c2.sum(-1)
    centre = (offsets.to(dtype) * inv_c2).sum(-1) / precision
    # Heads are chunks of head_index's layout: heads 0..H-2 take `chunk` entries each, the last the rest. So the
    # axis is at most two dense blocks of (A, heads, entries, B), where every per-head sum is a plain reduction.
    chunk, last = N // heads_n, N - (heads_n - 1) * (N // heads_n)
    blocks = [(0, heads_n, chunk)] if last == chunk else [(0, heads_n - 1, chunk), (heads_n - 1, 1, last)]
    gates = []
    for first, heads, entries in blocks:
        rows = slice(first * chunk, first * chunk + heads * entries)
        x4 = x3[:, rows].reshape(A, heads, entries, B)
        real4 = None if real3 is None else real3[:, rows].reshape(A, heads, entries, B)
        gate = _block_gate(x4, real4, precision[first:first + heads], centre[first:first + heads], eps)
        gates.append(gate.reshape(A, heads * entries, B))
    return (torch.cat(gates, 1) if len(gates) > 1 else gates[0]).reshape(x.shape)


def _block_gate(x: torch.Tensor, real: torch.Tensor | None, precision: torch.Tensor, centre: torch.Tensor,
                eps: float) -> torch.Tensor:
    """normalised_product_gate on x (A, heads, entries, B), each head's entries along dim 2."""
    if real is not None:
        x = x.masked_fill(~real, 0.0)  # NaN or inf padding must not reach the sums
    count = x.new_full((1,), x.shape[2]) if real is None else real.sum(2, keepdim=True, dtype=x.dtype)
    u = x - x.sum(2, keepdim=True) / count.clamp(min=1)
    square = u.square() if real is None else u.square().masked_fill(~real, 0.0)
    var = square.sum(2, keepdim=True) / (count - 1).clamp(min=1) + eps  # unbiased, as the original
    logits = -0.5 * precision[:, None, None] * (u - centre[:, None, None]).square() / var
    if real is None:
        return logits.softmax(2)
    # A head with no real entry has only -inf logits, whose softmax is NaN: its gate is 0, as padding's is.
    return logits.masked_fill(~real, -math.inf).softmax(2).masked_fill(~real, 0.0)


_compiled_gate = fused.compiled(normalised_product_gate)  # fused=True: compiled on first use, cached by inductor


def _gate(module: nn.Module, *args) -> torch.Tensor:
    return (_compiled_gate if module.fused else normalised_product_gate)(*args)


def _apply(x: torch.Tensor, gate: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    y = x * gate.to(x.dtype)
    return y if real is None else torch.where(real, y, x)


class _OriginalHead(nn.Module):
    """One head of the original: the whole normalisation axis, K densities."""

    def __init__(self, norm_axis: int, num_heads: int, num_densities: int, padding_value: float | None = None,
                 mean_offset_init: float = 0.0, eps: float = 1e-8, *, fused: bool = False) -> None:
        super().__init__()
        if not isinstance(norm_axis, int) or isinstance(norm_axis, bool):
            raise ValueError(f"norm_axis must be an int, got {norm_axis!r}")
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("num_densities", num_densities)
        if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a positive finite number, got {eps!r}")
        self.norm_axis, self.num_heads, self.padding_value, self.eps = norm_axis, num_heads, padding_value, float(eps)
        self.fused = bool(fused)  # through torch.compile (daam/fused.py)
        self.mean_offsets = nn.Parameter(torch.full((num_densities,), float(mean_offset_init)))
        self.c = nn.Parameter(torch.randn(num_densities))

    def forward(self, x: torch.Tensor, return_attention_details: bool = False, *, mask: torch.Tensor | None = None):
        """y = x * gate; with return_attention_details also the gate (detached). mask: True = real entry."""
        real = real_entries(x, self.padding_value, mask)
        gate = _gate(self, x, self.norm_axis, self.mean_offsets[None], self.c[None], real, self.eps)
        y = _apply(x, gate, real)
        return (y, gate.detach()) if return_attention_details else y


class _OriginalMultiHead(nn.Module):
    """num_heads heads over chunks of the normalisation axis, computed at once from the heads' parameters."""

    head_class = _OriginalHead

    def __init__(self, norm_axis: int, num_heads: int, num_densities: int, padding_value: float | None = None,
                 eps: float = 1e-8, *, mean_offset_init: float = 0.0, fused: bool = False) -> None:
        super().__init__()
        _check_positive_int("num_heads", num_heads)
        self.norm_axis, self.num_heads, self.padding_value, self.eps = norm_axis, num_heads, padding_value, float(eps)
        self.fused = bool(fused)
        self.attention_heads = nn.ModuleList(
            self.head_class(norm_axis, num_heads, num_densities, padding_value, mean_offset_init, eps)
            for _ in range(num_heads))

    def forward(self, x: torch.Tensor, return_attention_details: bool = False, *, mask: torch.Tensor | None = None):
        real = real_entries(x, self.padding_value, mask)
        offsets = torch.stack([h.mean_offsets for h in self.attention_heads])  # (heads, K)
        c = torch.stack([h.c for h in self.attention_heads])
        gate = _gate(self, x, self.norm_axis, offsets, c, real, self.eps)
        y = _apply(x, gate, real)
        return (y, gate.detach()) if return_attention_details else y


class _OriginalBlock(nn.Module):
    """num_layers residual multi-head layers, x <- x + layer(x) on real entries (padding stays as it came)."""

    layer_class = _OriginalMultiHead

    def __init__(self, norm_axes: Sequence[int], num_heads: Sequence[int], num_densities: Sequence[int],
                 num_layers: int, padding_value: float | None = None, eps: float = 1e-8, *, fused: bool = False) -> None:
        super().__init__()
        _check_positive_int("num_layers", num_layers)
        if not (len(norm_axes) == len(num_heads) == len(num_densities) == num_layers):
            raise ValueError("Lengths of norm_axes, num_heads and the densities per layer must match "
                             f"num_layers={num_layers}, got {len(norm_axes)}, {len(num_heads)}, {len(num_densities)}")
        self.padding_value = padding_value
        self.layers = nn.ModuleList(
            self.layer_class(axis, heads, k, padding_value, eps, fused=fused)
            for axis, heads, k in zip(norm_axes, num_heads, num_densities))

    def forward(self, x: torch.Tensor, return_attention_details: bool = False, *, mask: torch.Tensor | None = None):
        real = real_entries(x, self.padding_value, mask)  # found once: the residual sum would change padding
        details = {}
        for i, layer in enumerate(self.layers):
            y, details[f"layer_{i}"] = layer(x, return_attention_details=True, mask=real)
            x = x + y if real is None else torch.where(real, x + y, x)
        return (x, details) if return_attention_details else x


# The two releases' public names: the density one takes num_densities, the Gaussian one num_gaussians.
class DensityAdaptiveAttention(_OriginalHead):
    pass


class MultiHeadDensityAdaptiveAttention(_OriginalMultiHead):
    head_class = DensityAdaptiveAttention


class DensityBlock(_OriginalBlock):
    layer_class = MultiHeadDensityAdaptiveAttention


class GaussianAdaptiveAttention(_OriginalHead):
    def __init__(self, norm_axis: int, num_heads: int, num_gaussians: int, padding_value: float | None = None,
                 mean_offset_init: float = 0.0, eps: float = 1e-8, *, fused: bool = False) -> None:
        super().__init__(norm_axis, num_heads, num_gaussians, padding_value, mean_offset_init, eps, fused=fused)


class MultiHeadGaussianAdaptiveAttention(_OriginalMultiHead):
    head_class = GaussianAdaptiveAttention

    def __init__(self, norm_axis: int, num_heads: int, num_gaussians: int, padding_value: float | None = None,
                 eps: float = 1e-8, *, mean_offset_init: float = 0.0, fused: bool = False) -> None:
        super().__init__(norm_axis, num_heads, num_gaussians, padding_value, eps, mean_offset_init=mean_offset_init,
                         fused=fused)


class GaussianBlock(_OriginalBlock):
    layer_class = MultiHeadGaussianAdaptiveAttention

    def __init__(self, norm_axes: Sequence[int], num_heads: Sequence[int], num_gaussians: Sequence[int],
                 num_layers: int, padding_value: float | None = None, eps: float = 1e-8, *, fused: bool = False) -> None:
        super().__init__(norm_axes, num_heads, num_gaussians, num_layers, padding_value, eps, fused=fused)
