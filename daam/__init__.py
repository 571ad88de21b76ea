"""DAAM Lens: Density Adaptive Attention modules and the models built on them."""

from .attention import (
    DensityAdaptiveAttention,
    DensityBlock,
    GaussianAdaptiveAttention,
    GaussianBlock,
    MultiHeadDensityAdaptiveAttention,
    MultiHeadGaussianAdaptiveAttention,
)

__all__ = [
    "DensityAdaptiveAttention",
    "MultiHeadDensityAdaptiveAttention",
    "DensityBlock",
    "GaussianAdaptiveAttention",
    "MultiHeadGaussianAdaptiveAttention",
    "GaussianBlock",
]
