"""The app's cold start and its per-request overhead over explain(), measured in one run.

    python benchmarks/bench_app.py
Cold start: process start -> first /explain_text answer (goal <= 15 s on 2 CPU cores).
Overhead: median /explain_text round trip through gradio_client minus median explain() called
in this process on the same sentence (goal <= 50 ms)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from daam import load_pretrained  # noqa: E402
from timing import median_seconds  # noqa: E402

SENTENCE = "A warm, funny and beautifully acted film that earns every one of its tears."


def main() -> None:
    from gradio_client import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False"))
    try:
        while True:
            try:
                client = Client(url, verbose=False)
                client.predict(SENTENCE, api_name="/explain_text")
                break
            except Exception:
                if proc.poll() is not None or time.perf_counter() - start > 120:
                    raise SystemExit("the app did not answer within 120 s")
                time.sleep(0.2)
        cold = time.perf_counter() - start
        via_app = median_seconds(lambda: client.predict(SENTENCE, api_name="/explain_text"), 20)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    torch.set_num_threads(2)
    model = load_pretrained(ROOT / "checkpoints" / "text")
    direct = median_seconds(lambda: model.explain(SENTENCE), 20)
    print(f"cold start (process start -> first /explain_text answer): {cold:.1f} s   (goal <= 15 s)")
    print(f"/explain_text round trip {via_app * 1e3:.1f} ms, explain() {direct * 1e3:.1f} ms: "
          f"overhead {(via_app - direct) * 1e3:.1f} ms   (goal <= 50 ms)")


if __name__ == "__main__":
    main()
