"""DAAM Lens: Density Adaptive Attention modules and the models built on them.

Names are imported on first use (PEP 562), so the torch-free parts — `daam.explanation`, the
Explanation contract that `viz` reads, and `daam.modalities` — load without torch."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DensityAdaptiveAttention": "attention",
    "MultiHeadDensityAdaptiveAttention": "attention",
    "DensityBlock": "attention",
    "GaussianAdaptiveAttention": "compat",
    "MultiHeadGaussianAdaptiveAttention": "compat",
    "GaussianBlock": "compat",
    "DAAMClassifier": "model",
    "DAAMConfig": "model",
    "load_pretrained": "model",
    "Explanation": "explanation",
    "InputError": "errors",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'daam' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
