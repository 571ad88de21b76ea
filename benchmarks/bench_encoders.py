"""Bulk encoding of pictures: the image encoder eager against compile_for_bulk, side by side in one run.

    python benchmarks/bench_encoders.py [--batch 64] [--rounds 5]

Training and the comparison encode tens of thousands of Fashion-MNIST pictures once (daam.features.encode_to_disk); this
prints the compile's one-off cost, the median time per batch of each path over interleaved rounds, their ratio,
and the largest difference between the two paths' features (random grey pictures, 2 CPU threads)."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daam.modalities.image import ImageEncoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    eager, bulk = ImageEncoder(), ImageEncoder()
    bulk.compile_for_bulk(args.batch)
    pictures = torch.randint(0, 256, (args.batch, 224, 224), generator=torch.Generator().manual_seed(0)).float()
    with torch.inference_mode():
        started = time.perf_counter()
        compiled = bulk._encode(pictures)
        compile_s = time.perf_counter() - started
        difference = float((compiled - eager.features(pictures)).abs().max())
        times = {"eager": [], "compiled": []}
        for _ in range(args.rounds):  # every path once per round, so drift hits both alike
            for name, encode in (("eager", eager.features), ("compiled", bulk._encode)):
                started = time.perf_counter()
                encode(pictures)
                times[name].append(time.perf_counter() - started)
    eager_s, compiled_s = statistics.median(times["eager"]), statistics.median(times["compiled"])
    print(f"image encoder, batches of {args.batch} pictures, median of {args.rounds} interleaved rounds:")
    print(f"  eager     {eager_s * 1e3:8.0f} ms/batch")
    print(f"  compiled  {compiled_s * 1e3:8.0f} ms/batch   {eager_s / compiled_s:.2f}x faster; "
          f"first batch (compiling) {compile_s:.1f} s")
    print(f"  largest feature difference {difference:.1e}; pays off after "
          f"{compile_s / max(eager_s - compiled_s, 1e-9):.0f} batches")


if __name__ == "__main__":
    main()
