"""What one training step of each comparison head costs, side by side in one run (python -m daam.compare's loop).

    python benchmarks/bench_compare_training.py

On a batch shaped like the audio comparison's (64 clips x 5 Whisper layers x 40 frames x 384, cached in float16
as daam.train's FeatureCache keeps them): the step is the batch's conversion to float32, forward, cross-entropy
and backward. Prints each head's step time as a ratio to mean pooling's, and the layer mix alone, the einsum it
replaced against daam.pools.mix_layers. Medians over interleaved rounds (every variant once per round), so that
drift in the machine hits all of them alike."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_core import interleaved_medians  # noqa: E402
from daam import DAAMClassifier, DAAMConfig  # noqa: E402
from daam.pools import COMPARED, mix_layers  # noqa: E402

BATCH, LAYERS, POSITIONS, DIM, CLASSES = 64, 5, 40, 384, 26


def main() -> None:
    torch.manual_seed(0)
    features = torch.randn(BATCH, POSITIONS, LAYERS, DIM).half()  # positions first, as the cache pads them
    mask = torch.arange(POSITIONS)[None] < torch.randint(POSITIONS // 2, POSITIONS + 1, (BATCH, 1))
    labels = torch.randint(0, CLASSES, (BATCH,))
    letters = [chr(ord("A") + i) for i in range(CLASSES)]

    def step(model: nn.Module):
        def run():
            hidden = features.float().movedim(1, 2)  # (batch, layers, positions, dim)
            nn.functional.cross_entropy(model(hidden, mask), labels).backward()
        return run

    heads = {name: step(DAAMClassifier(DAAMConfig("audio", letters, LAYERS, DIM, pool=name)))
             for name in COMPARED}
    hidden = features.float().movedim(1, 2).contiguous()
    logits = torch.zeros(LAYERS, requires_grad=True)
    mixes = {"einsum": lambda: torch.einsum("blpd,l->bpd", hidden, logits.softmax(0)).sum().backward(),
             "mix_layers": lambda: mix_layers(hidden, logits).sum().backward()}
    times = interleaved_medians({**heads, **mixes}, rounds=15)
    print(f"one training step on ({BATCH}, {LAYERS}, {POSITIONS}, {DIM}) features, 2 threads: ratio to mean pooling")
    for name in COMPARED:
        print(f"  {name:<22} {times[name] / times['mean']:5.2f}x   ({times[name] * 1e3:.1f} ms)")
    print(f"layer mix, forward + backward: einsum / mix_layers = {times['einsum'] / times['mix_layers']:.2f}x "
          f"({times['einsum'] * 1e3:.1f} vs {times['mix_layers'] * 1e3:.1f} ms)")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
