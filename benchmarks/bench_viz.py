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
from daam.explanation import AudioExtras, ImageExtras  # noqa: E402
from viz import explanation_figures  # noqa: E402

rng = np.random.default_rng(0)
HEADS, K, LAYERS, DIM, GRID = 4, 3, 7, 384, np.linspace(-4, 4, 161)


def synthetic(modality: str, positions: int, position_labels: list[str], extras: dict | None) -> dict:
    comps = rng.uniform(0, 0.5, (HEADS, K, len(GRID)))
    parameters = {"offsets": rng.normal(size=(HEADS, K)), "scales": rng.uniform(0.5, 2, (HEADS, K)),
                  "weights": rng.dirichlet(np.ones(K), HEADS)}
    density = {"grid": GRID, "curve": comps.sum(1), "components": comps, "mode": "mixture"} | parameters
    return {
        "modality": modality, "labels": [f"class {i}" for i in range(10)], "probabilities": rng.dirichlet(np.ones(10)),
        "predicted_label": "class 0", "position_labels": position_labels,
        "position_weights": rng.uniform(0, 1, (HEADS, positions)), "position_relevance": rng.normal(size=positions),
        "head_relevance": rng.normal(size=(HEADS, positions)), "layer_importance": rng.uniform(0, 1, (LAYERS, DIM)),
        "layer_names": [f"layer {i}" for i in range(LAYERS)], "density": {"positions": density, "layers": density},
        "z_counts": {s: rng.integers(0, 10 ** 5, (HEADS, 40)) for s in ("positions", "layers")},
        "extras": extras, "truncated": False, "truncation_note": "", "timings": {},
    }


CASES = {
    "text, 512 tokens": synthetic("text", 512, [f"tok{i}" for i in range(512)], None),
    "image, 49 patches": synthetic("image", 49, [f"{r},{c}" for r in range(7) for c in range(7)],
                                   ImageExtras(rng.uniform(0, 255, (224, 224)).astype(np.uint8)).to_dict()),
    "audio, 10 s": synthetic("audio", 250, [f"{t * 0.04:.2f}s" for t in range(250)],
                             AudioExtras(log_mel=rng.normal(size=(64, 1001)), frame_times=np.arange(1001) * 0.01,
                                         position_times=np.arange(250) * 0.04, duration_s=10.0).to_dict()),
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
