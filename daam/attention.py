"""Density Adaptive Attention (DAAM): gate every element by a learned density of its z-score.

For an input x and a normalisation axis, each element is standardised against the
statistics of its slice, z = (x - mean) / sqrt(var + eps), and multiplied by a gate
g(z) drawn from a per-head density with K learnable components:

    mixture (default): g(z) = sum_k w_k exp(-(z - mu_k)^2 / (2 s_k^2))    in [0, 1]
    product (original): g(z) = prod_k exp(-(z - mu_k)^2 / (2 s_k^2))

A product of Gaussians is itself one (scaled) Gaussian, so "product" can never be
multi-modal; it is kept for compatibility with the original release and to show
that collapse. Both gates are evaluated from their exponents (log space), so no
factor underflows before the others are combined.

Heads are independent parameter sets. By default the normalisation axis is cut into
num_heads contiguous chunks (the last takes the remainder), each with its own
statistics and density. With head_axis=d, axis d is cut into head groups instead and
the statistics stay along the normalisation axis. Every head and density is computed
in one batched expression; nothing loops over them.

This module is the layer: input checks, padding, the standardisation's layout and the fused path. The heads'
densities, their gate and curves are daam.densities.DensityHeads; the autograd functions with hand-written
backwards are daam.density_functions.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn

from . import fused
from .densities import DensityHeads, _check_positive_int
from .density_functions import _Standardise

DENSITY_PARAMETERS = ("mean_offsets", "raw_scales", "mixture_logits")  # each module's learnable density
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _resolve_axis(name: str, axis: int, ndim: int, shape: torch.Size) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an input of shape {tuple(shape)} ({ndim} dims)")
    return axis % ndim


def real_entries(x: torch.Tensor, padding_value: float | None, mask: torch.Tensor | None) -> torch.Tensor | None:
    """Which entries of x are real, shaped like x: an explicit boolean mask (broadcast to x) wins over
    padding_value (NaN padding is found with isnan); None when every entry is real."""
    if mask is not None:
        mask = torch.as_tensor(mask, device=x.device)
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be boolean (True = real entry), got dtype {mask.dtype}")
        try:
            return torch.broadcast_to(mask, x.shape)
        except RuntimeError:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not broadcast to the input shape {tuple(x.shape)}"
            ) from None
    if padding_value is None:
        return None
    if isinstance(padding_value, float) and math.isnan(padding_value):
        return ~torch.isnan(x)
    return x != padding_value


def _warn_deprecated_flag() -> None:
    warnings.warn("return_weights and return_attention_details are deprecated in daam's own modules: pass "
                  "return_intermediates=True and read the gate from its Intermediates (.gate). The drop-in packages "
                  "density_adaptive_attention and gaussian_adaptive_attention keep the original's "
                  "return_attention_details.", FutureWarning, stacklevel=3)


def head_index(size: int, num_heads: int, device: torch.device | None = None) -> torch.Tensor:
    """Head of each of `size` entries: chunks of size // num_heads, the last head takes the remainder."""
    chunk = size // num_heads
    return torch.arange(size, device=device).div(chunk, rounding_mode="floor").clamp_(max=num_heads - 1)


@dataclass
class Intermediates:
    """What a density attention layer computed on its way to y = x * gate (forward(return_intermediates=True))."""

    z: torch.Tensor  # the standardised input, shaped like x (float32; padding: 0)
    gate: torch.Tensor  # shaped like x (padding: 1)


class _DensityAttention(DensityHeads):
    """Shared implementation: standardise x along norm_axis, gate each element by its head's density of z."""

    def __init__(
        self,
        norm_axis: int,
        num_heads: int,
        num_densities: int,
        padding_value: float | None = None,
        mean_offset_init: float = 0.0,
        eps: float = 1e-8,
        mode: str = "mixture",
        head_axis: int | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__(num_heads, num_densities, mean_offset_init, mode)
        if not isinstance(norm_axis, int) or isinstance(norm_axis, bool):
            raise ValueError(f"norm_axis must be an int, got {norm_axis!r}")
        if head_axis is not None and (not isinstance(head_axis, int) or isinstance(head_axis, bool)):
            raise ValueError(f"head_axis must be an int or None, got {head_axis!r}")
        if not (isinstance(eps, (int, float)) and eps > 0 and math.isfinite(eps)):
            raise ValueError(f"eps must be a positive finite number, got {eps!r}")
        self.norm_axis, self.head_axis = norm_axis, head_axis
        self.padding_value, self.eps = padding_value, float(eps)
        self.fused = bool(fused)  # daam/fused.py: one compiled kernel for the whole layer, forward and backward

    # ---------------------------------------------------------------- forward
    def _real_mask(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        return real_entries(x, self.padding_value, mask)

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1:
            raise ValueError(f"input must have at least 1 dimension, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"input must be a floating-point tensor, got dtype {x.dtype}")
        norm_axis = _resolve_axis("norm_axis", self.norm_axis, x.dim(), x.shape)
        param_axis = norm_axis
        if self.head_axis is not None:
            param_axis = _resolve_axis("head_axis", self.head_axis, x.dim(), x.shape)
        if x.shape[param_axis] < self.num_heads:
            which = "norm_axis" if self.head_axis is None else "head_axis"
            raise ValueError(
                f"num_heads={self.num_heads} exceeds the {x.shape[param_axis]} entries on {which}={param_axis} "
                f"of the input of shape {tuple(x.shape)}"
            )
        return norm_axis, param_axis

    def _segment_z_scores(self, x3: torch.Tensor, weight: torch.Tensor | None, heads: torch.Tensor):
        """z-scores with statistics per head chunk of P, for x3 of shape (A, P, B)."""
        A, P, B = x3.shape
        H = self.num_heads
        if P % H == 0:  # even chunks: a free view (A, heads, chunk, B), statistics along the chunk
            grouped = (A, H, P // H, B)
            return _Standardise.apply(x3.view(grouped), None if weight is None else weight.view(grouped), 2,
                                      self.eps).view(A, P, B)
        # The last head takes the remainder: segment sums, still no loop over heads.
        def per_head(values):  # (A, P, B) -> (A, heads, B)
            return values.new_zeros(A, H, B).index_add(1, heads, values)

        def spread(values):  # (A, heads, B) -> (A, P, B)
            return values.index_select(1, heads)

        if weight is None:
            count = torch.bincount(heads, minlength=H).to(x3.dtype).view(1, H, 1)
        else:
            count = per_head(weight).clamp(min=1)
        mean = per_head(x3 if weight is None else x3 * weight) / count
        centred = x3 - spread(mean)
        sq = centred.square() if weight is None else centred.square() * weight
        return centred * spread(torch.rsqrt(per_head(sq) / count + self.eps))

    def _standardise(self, x: torch.Tensor, mask: torch.Tensor | None):
        """Shared set-up of forward and z_scores.

        Returns x (float32 when it came in half precision), the real-entry mask (or None), the
        z-scores as the (A, P, B) view around the axis the heads are laid along (None for an
        empty input; padding gets z = 0), and each of the P positions' head."""
        norm_axis, param_axis = self._check_input(x)
        x = x.float() if x.dtype in _LOW_PRECISION else x
        real = self._real_mask(x, mask)
        shape = x.shape
        # (A, P, B) is a free reshape, no transposes.
        view = (math.prod(shape[:param_axis]), shape[param_axis], math.prod(shape[param_axis + 1:]))
        heads = head_index(view[1], self.num_heads, x.device)  # (P,)
        if x.numel() == 0:
            return x, real, None, heads
        weight = None if real is None else real.to(x.dtype)
        # Padding may be NaN, inf or huge: the statistics never see it (0 * NaN would still be NaN); x, returned
        # for the output, keeps it, and padding passes through untouched.
        values = x if real is None else x.masked_fill(~real, 0.0)
        if self.head_axis is None:
            z = self._segment_z_scores(values.reshape(view), None if weight is None else weight.reshape(view), heads)
        else:
            z = _Standardise.apply(values, weight, norm_axis, self.eps).reshape(view)
        if real is not None:
            z = z.masked_fill(~real.reshape(view), 0.0)  # padding's z is meaningless: keep it finite
        return x, real, z, heads

    @torch.no_grad()
    def z_scores(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The standardised input each gate is evaluated at, shaped like x (float32; padding: 0)."""
        x, _, z, _ = self._standardise(x, mask)
        return x.clone() if z is None else z.reshape(x.shape)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
        return_attention_details: bool = False,
        *,
        return_intermediates: bool = False,
    ):
        """y = x * gate(z); padding entries come out unchanged.

        mask: optional boolean tensor broadcastable to x, True = real entry (overrides padding_value).
        return_intermediates: also return Intermediates(z, gate), shaped like x, so callers need not standardise
        again. return_weights / return_attention_details (deprecated, a FutureWarning): also return the gate."""
        in_dtype = x.dtype if isinstance(x, torch.Tensor) else None
        if return_weights or return_attention_details:
            _warn_deprecated_flag()
        want_details = return_weights or return_attention_details or return_intermediates
        done = self._fused_forward(x, mask, want_details) if self.fused else None
        y, gate, z = done if done is not None else self._eager_forward(x, mask)
        y = y.to(in_dtype)
        if return_intermediates:
            return y, Intermediates(z, gate)
        if return_weights or return_attention_details:
            return y, gate.to(in_dtype)
        return y

    def _eager_forward(self, x: torch.Tensor, mask: torch.Tensor | None):
        """(y, gate, z), y and gate in float32 when x came in half precision."""
        x, real, z, heads = self._standardise(x, mask)
        if z is None:  # nothing to gate
            return x.clone(), torch.ones_like(x), x.clone()
        gate = self._gate(z, heads).reshape(x.shape)
        if real is not None:
            gate = gate.masked_fill(~real, 1.0)  # padding passes through untouched
        return x * gate, gate, z.reshape(x.shape)

    def _fused_forward(self, x: torch.Tensor, mask: torch.Tensor | None, want_details: bool):
        """(y, gate, z) from the fused kernel, or None where the eager path must run (see daam/fused.py)."""
        if not isinstance(x, torch.Tensor) or x.dtype == torch.float64 or x.numel() == 0:
            return None
        if x.device.type != "cpu":
            if getattr(self, "_compiled_forward", None) is None:
                self._compiled_forward = fused.compiled(self._eager_forward)
            return self._compiled_forward(x, mask)
        if want_details and torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return None  # the CPU kernel's backward carries y's gradient alone; one through the gate or z needs eager
        norm_axis, param_axis = self._check_input(x)
        if (self.head_axis is not None and param_axis == norm_axis) or fused.cpu_kernel() is None:
            return None  # heads along the statistics' own axis: the kernel wants one head per segment
        real = self._real_mask(x, mask)
        shape = x.shape
        A, N, B = math.prod(shape[:norm_axis]), shape[norm_axis], math.prod(shape[norm_axis + 1:])
        H, size = self.num_heads, shape[param_axis]
        rows_a, rows_n = torch.zeros(A, dtype=torch.int32), torch.zeros(N, dtype=torch.int32)
        per_head = self._parameter_table()  # (heads, 3, K)
        segments = torch.tensor([0, N])
        if self.head_axis is None:  # heads are chunks of the normalisation axis: one segment each
            segments = torch.cat([torch.arange(H) * (N // H), torch.tensor([N])])
            rows_n, table = head_index(N, H), per_head[..., None]
        elif param_axis < norm_axis:
            stride = math.prod(shape[param_axis + 1:norm_axis])
            rows_a, table = head_index(size, H)[torch.arange(A) // stride % size], per_head[..., None]
        else:  # heads along B: every column b gets its head's parameters
            stride = math.prod(shape[param_axis + 1:])
            table = per_head[head_index(size, H)[torch.arange(B) // stride % size]].permute(1, 2, 0)[None]
        layout = fused.Layout(A, N, B, segments, rows_a, rows_n, self.eps)
        real3 = None if real is None else real.reshape(A, N, B).to(torch.uint8).contiguous()
        y, gate, z = fused.FusedDensity.apply(x.float().reshape(A, N, B), real3, table.float(), layout, want_details)
        return y.reshape(shape), gate.reshape(shape) if want_details else None, z.reshape(shape) if want_details else None

    def _parameter_table(self) -> torch.Tensor:
        """Per head, (offset, -1/(2 scale^2), log weight) of each component: (heads, 3, K); the product is one."""
        if self.mode == "product":
            centre, scale, peak = self.collapsed_gaussian()
            return torch.stack([centre, -0.5 / scale.square(), peak.log()], 1)[..., None]
        return torch.stack([self.mean_offsets, -0.5 / self.scales.square(), torch.log_softmax(self.mixture_logits, -1)], 1)

    def extra_repr(self) -> str:
        return (
            f"norm_axis={self.norm_axis}, num_heads={self.num_heads}, num_densities={self.num_densities}, "
            f"mode={self.mode!r}, head_axis={self.head_axis}, eps={self.eps}, fused={self.fused}"
        )


OVERLAP_GRID = torch.linspace(-4, 4, 33)  # the z-range the head-movement goals are measured on
OVERLAP_MARGIN = 0.1  # two heads' gates closer than this (mean |g_i - g_j|) are pushed apart


def head_overlap(model: nn.Module) -> torch.Tensor:
    """For every multi-head density stage, the mean over pairs of heads of max(0, margin - mean |g_i - g_j|):
    zero once every two heads of a stage differ by the margin, so it never pulls heads further apart than that."""
    total = torch.zeros(())
    for module in model.modules():
        if isinstance(module, _DensityAttention) and module.num_heads > 1:
            curves = module.gate_curves(OVERLAP_GRID)  # (heads, grid)
            i, j = torch.triu_indices(module.num_heads, module.num_heads, offset=1)
            total = total + torch.relu(OVERLAP_MARGIN - (curves[i] - curves[j]).abs().mean(-1)).mean()
    return total


class DensityAdaptiveAttention(_DensityAttention):
    """One density over the whole normalisation axis.

    `num_heads` is accepted so code written against the original release (whose
    single module receives it from its multi-head parent) keeps working; a single
    module is one head."""

    def __init__(
        self,
        norm_axis: int,
        num_heads: int,
        num_densities: int,
        padding_value: float | None = None,
        mean_offset_init: float = 0.0,
        eps: float = 1e-8,
        mode: str = "mixture",
        fused: bool = False,
    ) -> None:
        _check_positive_int("num_heads", num_heads)
        super().__init__(norm_axis, 1, num_densities, padding_value, mean_offset_init, eps, mode, fused=fused)


class MultiHeadDensityAdaptiveAttention(_DensityAttention):
    """num_heads independent densities over chunks of norm_axis, or over groups of head_axis."""

    def __init__(
        self,
        norm_axis: int,
        num_heads: int,
        num_densities: int,
        padding_value: float | None = None,
        eps: float = 1e-8,
        mode: str = "mixture",
        head_axis: int | None = None,
        mean_offset_init: float = 0.0,
        fused: bool = False,
    ) -> None:
        super().__init__(norm_axis, num_heads, num_densities, padding_value, mean_offset_init, eps, mode, head_axis, fused)


class DensityBlock(nn.Module):
    """num_layers residual multi-head layers: x <- x + layer_i(x) on real entries."""

    def __init__(
        self,
        norm_axes: Sequence[int],
        num_heads: Sequence[int],
        num_densities: Sequence[int],
        num_layers: int,
        padding_value: float | None = None,
        eps: float = 1e-8,
        mode: str = "mixture",
        fused: bool = False,
    ) -> None:
        super().__init__()
        _check_positive_int("num_layers", num_layers)
        for name, values in (("norm_axes", norm_axes), ("num_heads", num_heads), ("num_densities", num_densities)):
            if not isinstance(values, Sequence) or len(values) != num_layers:
                got = len(values) if isinstance(values, Sequence) else type(values).__name__
                raise ValueError(f"{name} must be a list of num_layers={num_layers} entries, got {got}")
        self.padding_value = padding_value
        self.layers = nn.ModuleList(
            MultiHeadDensityAdaptiveAttention(axis, heads, k, padding_value, eps, mode, fused=fused)
            for axis, heads, k in zip(norm_axes, num_heads, num_densities)
        )

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        return_weights: bool = False,
        return_attention_details: bool = False,
        *,
        return_intermediates: bool = False,
    ):
        """x <- x + layer_i(x), layer by layer. return_intermediates: (y, {"layer_0": Intermediates, ...}), each
        layer's z and gate. return_weights / return_attention_details (deprecated, a FutureWarning): (y,
        {"layer_0": gate, ...})."""
        if return_weights or return_attention_details:
            _warn_deprecated_flag()
        # Padding is found once, on the input: the residual sum would otherwise change it.
        real = self.layers[0]._real_mask(x, mask) if isinstance(x, torch.Tensor) else None
        want_details = return_intermediates or return_weights or return_attention_details
        details = {}
        for i, layer in enumerate(self.layers):
            if want_details:  # asked for only when wanted: a fused layer then runs its kernel, backward included
                gated, details[f"layer_{i}"] = layer(x, mask=real, return_intermediates=True)
            else:
                gated = layer(x, mask=real)
            x = x + gated if real is None else torch.where(real, x + gated, x)
        if return_intermediates:
            return x, details
        if return_weights or return_attention_details:
            return x, {name: inter.gate.to(gated.dtype) for name, inter in details.items()}
        return x
