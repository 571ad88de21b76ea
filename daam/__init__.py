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

from .explanation import Explanation  # noqa: E402
from .hub import load_checkpoints, load_pretrained  # noqa: E402
from .model import DAAMClassifier, DAAMConfig  # noqa: E402

__all__ += ["DAAMClassifier", "DAAMConfig", "Explanation", "load_pretrained", "load_checkpoints"]
