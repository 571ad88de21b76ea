"""`python -m daam`: a one-screen demo of the core modules, without the app (`python app.py`)."""

import torch

from daam import DensityBlock, MultiHeadDensityAdaptiveAttention


def main() -> None:
    torch.manual_seed(0)
    block = DensityBlock([1, 1, 1], [4, 4, 4], [5, 5, 5], 3, None, 1e-8)
    x = torch.rand(10, 128)
    y, details = block(x, return_intermediates=True)
    print(f"DensityBlock: {tuple(x.shape)} -> {tuple(y.shape)}; mean gate per layer:",
          ", ".join(f"{k}={v.gate.mean():.3f}" for k, v in details.items()))

    grid = torch.linspace(-4, 4, 33)
    print("\nTwo densities at z = -2 and +2 (scale 0.6): the gate over z")
    for mode in ("mixture", "product"):
        layer = MultiHeadDensityAdaptiveAttention(1, 1, 2, mode=mode)
        with torch.no_grad():
            layer.mean_offsets.copy_(torch.tensor([[-2.0, 2.0]]))
            layer.raw_scales.fill_(-0.2)
        curve = layer.density_curve(grid)[0]
        bars = "".join(" .:-=+*#%@"[min(9, int(v * 10))] for v in curve / curve.max())
        print(f"  {mode:8s} |{bars}|  peak {curve.max():.3g}")
    print("  (mixture keeps both modes; the product collapses to one Gaussian between them)")


if __name__ == "__main__":
    main()
