"""Names kept for code written against the original GaussianAdaptiveAttention release: daam's own modules under their
Gaussian names, taking `num_gaussians` for `num_densities`. (Code that needs the original's maths and signatures
as they were uses the drop-in packages density_adaptive_attention and gaussian_adaptive_attention instead.)"""

from __future__ import annotations

from typing import Sequence

from .attention import DensityAdaptiveAttention, DensityBlock, MultiHeadDensityAdaptiveAttention


class GaussianAdaptiveAttention(DensityAdaptiveAttention):
    def __init__(self, norm_axis: int, num_heads: int, num_gaussians: int, padding_value: float | None = None,
                 mean_offset_init: float = 0.0, eps: float = 1e-8, mode: str = "mixture", fused: bool = False) -> None:
        super().__init__(norm_axis, num_heads, num_gaussians, padding_value, mean_offset_init, eps, mode, fused)


class MultiHeadGaussianAdaptiveAttention(MultiHeadDensityAdaptiveAttention):
    def __init__(self, norm_axis: int, num_heads: int, num_gaussians: int, padding_value: float | None = None,
                 eps: float = 1e-8, mode: str = "mixture", head_axis: int | None = None,
                 mean_offset_init: float = 0.0, fused: bool = False) -> None:
        super().__init__(norm_axis, num_heads, num_gaussians, padding_value, eps, mode, head_axis, mean_offset_init, fused)


class GaussianBlock(DensityBlock):
    def __init__(self, norm_axes: Sequence[int], num_heads: Sequence[int], num_gaussians: Sequence[int],
                 num_layers: int, padding_value: float | None = None, eps: float = 1e-8,
                 mode: str = "mixture", fused: bool = False) -> None:
        super().__init__(norm_axes, num_heads, num_gaussians, num_layers, padding_value, eps, mode, fused)
