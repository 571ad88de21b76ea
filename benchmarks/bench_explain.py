"""explain() latency against the bare encoder forward on the same sentences, in one run.

    python benchmarks/bench_explain.py [--checkpoint checkpoints/text]
Goal: explain() <= 2x the encoder + 50 ms."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from daam import load_pretrained  # noqa: E402
from timing import median_seconds  # noqa: E402

SENTENCES = [
    "Great.",
    "A warm, funny and surprisingly moving film about growing up.",
    "The plot is a mess, the jokes land with a thud and the ending drags on for what feels like an hour.",
    " ".join(["An ambitious, sprawling, occasionally brilliant and frequently exhausting epic."] * 12),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default=str(Path(__file__).resolve().parents[1] / "checkpoints" / "text"))
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = load_pretrained(args.checkpoint)
    encoder = model.encoder
    print(f"{'tokens':>6}  {'encoder ms':>10}  {'explain ms':>10}  {'ratio':>5}  {'goal: explain <= 2*enc+50':>26}")
    for text in SENTENCES:
        n = len(encoder([text]).position_labels[0])
        enc = median_seconds(lambda: encoder([text]), args.repeats) * 1e3
        exp = median_seconds(lambda: model.explain(text), args.repeats) * 1e3
        print(f"{n:>6}  {enc:>10.1f}  {exp:>10.1f}  {exp / enc:>5.2f}  {'met' if exp <= 2 * enc + 50 else 'MISSED':>26}")


if __name__ == "__main__":
    main()
