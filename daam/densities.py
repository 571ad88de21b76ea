"""Per-head densities: the learnable offsets, scales and mixture weights of `num_heads` heads of `num_densities`
components each, the gate they give a standardised input, and their curves for the view.

    mixture: g(z) = sum_k w_k exp(-(z - mu_k)^2 / (2 s_k^2))    product: g(z) = prod_k exp(-(z - mu_k)^2 / (2 s_k^2))
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .density_functions import _MixtureGate

MODES = ("mixture", "product")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class DensityHeads(nn.Module):
    """The density parameters of every head, (heads, densities) each, and what they compute."""

    def __init__(self, num_heads: int, num_densities: int, mean_offset_init: float = 0.0, mode: str = "mixture") -> None:
        super().__init__()
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("num_densities", num_densities)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.num_heads, self.num_densities, self.mode = num_heads, num_densities, mode
        # Scales start spread around 1 so the components are distinguishable from the first step.
        spread = torch.linspace(0.5, 1.5, num_densities) if num_densities > 1 else torch.ones(1)
        raw_scale = spread + torch.log(-torch.expm1(-spread))  # inverse softplus
        self.mean_offsets = nn.Parameter(torch.full((num_heads, num_densities), float(mean_offset_init)))
        self.raw_scales = nn.Parameter(raw_scale.repeat(num_heads, 1))
        self.mixture_logits = nn.Parameter(torch.zeros(num_heads, num_densities))

    @property
    def scales(self) -> torch.Tensor:  # (heads, densities), strictly positive
        return F.softplus(self.raw_scales) + 1e-3

    @property
    def mixture_weights(self) -> torch.Tensor:  # (heads, densities), rows sum to 1
        return torch.softmax(self.mixture_logits, dim=-1)

    def collapsed_gaussian(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The single Gaussian a product of the K densities equals, per head: (offset, scale, peak).

        prod_k exp(-c_k (z - mu_k)^2) = peak * exp(-(z - m)^2 / (2 S^2)) with precision
        1/S^2 = sum_k 1/s_k^2, m the precision-weighted mean of the mu_k and peak <= 1.
        Shapes (heads,)."""
        c = 0.5 / self.scales.square()  # (heads, K)
        total = c.sum(-1)
        centre = (c * self.mean_offsets).sum(-1) / total
        residual = (c * (self.mean_offsets - centre[:, None]).square()).sum(-1)
        return centre, torch.rsqrt(2 * total), torch.exp(-residual)

    def _gate(self, z: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """Gate of z (A, P, B), where heads (P,) gives each position's head."""
        if self.mode == "product":  # one Gaussian per head: one exp per element instead of K
            centre, scale, peak = (t[heads].unsqueeze(1) for t in self.collapsed_gaussian())  # (P, 1)
            return torch.exp(-0.5 * ((z - centre) / scale).square()) * peak
        neg_inv_two_var = -0.5 / self.scales.square()
        log_w = torch.log_softmax(self.mixture_logits, dim=-1)
        params = (p[heads].T[:, None, :, None] for p in (self.mean_offsets, neg_inv_two_var, log_w))  # (K, 1, P, 1)
        offsets, neg_inv_two_var, log_w = params
        if torch.compiler.is_compiling():  # one expression, which the compiler fuses without the (K, A, P, B) tensor
            return torch.addcmul(log_w, (z - offsets).square(), neg_inv_two_var).exp().sum(0)
        return _MixtureGate.apply(z.contiguous(), offsets, neg_inv_two_var, log_w)

    def density_parameters(self) -> dict:
        """Per-head density parameters as detached float32 tensors of shape (heads, densities).

        In product mode also the single Gaussian the product equals (collapsed_*, shape (heads,))."""
        with torch.no_grad():
            params = {
                "offsets": self.mean_offsets.float().clone(),
                "scales": self.scales.float(),
                "weights": self.mixture_weights.float(),
                "mode": self.mode,
            }
            if self.mode == "product":
                params["collapsed_offset"], params["collapsed_scale"], params["collapsed_peak"] = (
                    t.float() for t in self.collapsed_gaussian())
        return params

    @torch.no_grad()
    def set_density_parameters(self, offsets, scales, weights) -> None:
        """Set every head's densities from (heads, densities) offsets, positive scales and positive weights
        (weights are normalised per head): the inverse of density_parameters()."""
        shape = self.mean_offsets.shape
        values = [torch.as_tensor(v, dtype=torch.float32).reshape(shape) for v in (offsets, scales, weights)]
        offsets, scales, weights = values
        if not (scales > 1e-3).all() or not (weights > 0).all():
            raise ValueError("scales must exceed 0.001 and weights must be positive")
        self.mean_offsets.copy_(offsets)
        self.raw_scales.copy_(torch.log(torch.expm1(scales - 1e-3)))  # inverse of softplus(raw) + 1e-3
        self.mixture_logits.copy_(torch.log(weights / weights.sum(-1, keepdim=True)))

    def gate_curves(self, z: torch.Tensor) -> torch.Tensor:
        """Every head's gate over a 1-D grid of z: (heads, grid), differentiable in the density parameters."""
        grid = torch.as_tensor(z, dtype=torch.float32, device=self.mean_offsets.device).reshape(1, 1, -1)
        heads = torch.arange(self.num_heads, device=grid.device)
        return self._gate(grid.expand(1, self.num_heads, -1), heads)[0]

    @torch.no_grad()
    def density_curve(self, z: torch.Tensor, components: bool = False):
        """Every head's gate over a 1-D grid of z: (heads, grid).

        With components=True also returns each component, (heads, densities, grid):
        w_k N_k(z) in mixture mode (they sum to the gate), the factors in product mode."""
        gate = self.gate_curves(z)
        grid = torch.as_tensor(z, dtype=torch.float32, device=self.mean_offsets.device).reshape(1, 1, -1)
        if not components:
            return gate
        expo = -(grid[0, :, :, None] - self.mean_offsets[:, None]).square() * (0.5 / self.scales.square())[:, None]
        if self.mode == "mixture":
            expo = expo + torch.log_softmax(self.mixture_logits, -1)[:, None]
        return gate, expo.exp().transpose(1, 2)  # (heads, densities, grid)
