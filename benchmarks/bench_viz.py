"""Figure JSON size and build time for the largest inputs the app accepts.

    python benchmarks/bench_viz.py
Budget: each figure's JSON <= 300 KB for 512 tokens, 49 patches or 10 s of audio; all figures of
one explanation built in <= 100 ms. Inputs are synthetic arrays of the real shapes (random values
are the worst case for the embedded PNG)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from timing import median_seconds  # noqa: E402
from viz import explanation_figures  # noqa: E402

rng = np.random.default_rng(0)
HEADS, K, LAYERS, DIM, GRID = 4, 3, 7, 384, np.linspace(-4, 4, 161)


def synthetic(modality: str, positions: int, position_labels: list[str], extras: dict) -> dict:
    comps = rng.uniform(0, 0.5, (HEADS, K, len(GRID)))
    density = {"grid": GRID, "curve": comps.sum(1), "components": comps, "mode": "mixture"}
    return {
        "modality": modality, "labels": [f"class {i}" for i in range(10)], "probabilities": rng.dirichlet(np.ones(10)),
        "predicted_label": "class 0", "position_labels": position_labels,
        "position_weights": rng.uniform(0, 1, (HEADS, positions)), "layer_importance": rng.uniform(0, 1, (LAYERS, DIM)),
        "layer_names": [f"layer {i}" for i in range(LAYERS)], "density": {"positions": density, "layers": density},
        "z_values": {s: [rng.normal(size=1000) for _ in range(HEADS)] for s in ("positions", "layers")},
        "extras": extras,
    }


CASES = {
    "text, 512 tokens": synthetic("text", 512, [f"tok{i}" for i in range(512)],
                                  {"baseline_weights": rng.dirichlet(np.ones(512), HEADS)}),
    "image, 49 patches": synthetic("image", 49, [f"{r},{c}" for r in range(7) for c in range(7)],
                                   {"image": (rng.uniform(0, 255, (224, 224))).astype(np.uint8)}),
    "audio, 10 s": synthetic("audio", 250, [f"{t * 0.04:.2f}s" for t in range(250)],
                             {"log_mel": rng.normal(size=(64, 1001)), "frame_times": np.arange(1001) * 0.01,
                              "position_times": np.arange(250) * 0.04}),
}


def main() -> None:
    print(f"{'input':<20} {'figure':<18} {'JSON KB':>8}  budget 300 KB")
    for case, data in CASES.items():
        build = median_seconds(lambda: explanation_figures(data), 5) * 1e3
        figs = explanation_figures(data)
        for name, fig in figs.items():
            size = len(fig if isinstance(fig, str) else fig.to_json()) / 1000
            print(f"{case:<20} {name:<18} {size:>8.1f}  {'ok' if size <= 300 else 'OVER'}")
        print(f"{case:<20} {'all figures built':<18} {build:>6.1f} ms  (budget 100 ms: {'ok' if build <= 100 else 'OVER'})")


if __name__ == "__main__":
    main()
