"""The app's cold start and its per-request overhead over explain(), measured in one run.

    python benchmarks/bench_app.py
Cold start: process start -> first /explain_text answer (goal <= 15 s on 2 CPU cores).
Overhead: median /explain_text round trip through gradio_client minus median explain() called
in this process on the same sentence (goal <= 50 ms), beside the round trip of a do-nothing endpoint
(benchmarks/trivial_app.py): Gradio's own floor."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from daam import load_pretrained  # noqa: E402
from serving import serve  # noqa: E402
from timing import median_seconds  # noqa: E402

SENTENCE = "A warm, funny and beautifully acted film that earns every one of its tears."


def main() -> None:
    from gradio_client import Client

    start = time.perf_counter()
    with serve(ROOT / "app.py") as (_, url):
        client = Client(url, verbose=False)
        client.predict(SENTENCE, api_name="/explain_text")
        cold = time.perf_counter() - start
        via_app = median_seconds(lambda: client.predict(SENTENCE, api_name="/explain_text"), 20)
    with serve(ROOT / "benchmarks" / "trivial_app.py") as (_, url):
        client = Client(url, verbose=False)
        floor = median_seconds(lambda: client.predict(SENTENCE, api_name="/echo"), 20)
    torch.set_num_threads(2)
    model = load_pretrained(ROOT / "checkpoints" / "text")
    direct = median_seconds(lambda: model.explain(SENTENCE), 20)
    print(f"cold start (process start -> first /explain_text answer): {cold:.1f} s   (goal <= 15 s)")
    print(f"/explain_text round trip {via_app * 1e3:.1f} ms, explain() {direct * 1e3:.1f} ms: "
          f"overhead {(via_app - direct) * 1e3:.1f} ms   (goal <= 50 ms)")
    print(f"Gradio's floor: a do-nothing endpoint (benchmarks/trivial_app.py) round trip {floor * 1e3:.1f} ms; "
          f"/explain_text, explain() included, takes {(via_app - floor) * 1e3:+.1f} ms beyond it")


if __name__ == "__main__":
    main()
