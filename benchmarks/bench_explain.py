"""explain() latency against the bare encoder forward on the same sentences, in one run; then explain_batch of 64
sentences with the density stages through the fused kernel (what from_pretrained chooses on the CPU) against eager.

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
    batch = [SENTENCES[i % 3] for i in range(64)]
    seconds = {}
    for fused in (True, False, True, False):  # interleaved: the machine's drift falls on both
        model.use_fused_kernel(fused)
        seconds.setdefault(fused, []).append(median_seconds(lambda: model.explain_batch(batch), max(3, args.repeats // 4)))
    fused_s, eager_s = min(seconds[True]), min(seconds[False])
    print(f"explain_batch of 64 sentences: fused kernel {fused_s * 1e3:.0f} ms, eager {eager_s * 1e3:.0f} ms: "
          f"{eager_s / fused_s:.2f}x faster fused")


if __name__ == "__main__":
    main()
