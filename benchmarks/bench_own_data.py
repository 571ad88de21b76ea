"""Your own data, end to end: a 2,000-row text CSV and a folder of 1,000 pictures trained with the default encoders,
and the app serving the text checkpoint beside the shipped ones, in one run.

    python benchmarks/bench_own_data.py [--rows 2000] [--images 1000] [--skip-images]

Prints each run's wall time (process start to checkpoint written) against its goal (text <= 300 s, images <= 600 s
on 2 CPU cores), and the app's cold start (process start -> first /explain_ answer) and per-request overhead over
explain() when it serves the text checkpoint, beside the same figures for the shipped text checkpoint. The data is
generated here (made-up reviews: examples/data/make_reviews.py; pictures: drawn shapes), in a temporary folder."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from serving import serve  # noqa: E402
from timing import median_seconds  # noqa: E402

SENTENCE = "The kettle broke after a week. Avoid it."
SHAPES = ("circle", "square", "triangle", "cross")


def write_reviews(path: Path, rows: int) -> Path:
    import csv

    spec = importlib.util.spec_from_file_location("make_reviews", ROOT / "examples" / "data" / "make_reviews.py")
    make_reviews = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_reviews)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(make_reviews.reviews(rows))
    return path


def draw_shapes(root: Path, count: int) -> Path:
    """count pictures of drawn shapes (4 classes), 96x96, random place, size and colours."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for i in range(count):
        shape = SHAPES[i % len(SHAPES)]
        picture = Image.new("RGB", (96, 96), tuple(int(v) for v in rng.integers(150, 256, 3)))
        draw = ImageDraw.Draw(picture)
        size, (x, y) = int(rng.integers(30, 60)), rng.integers(5, 30, 2)
        colour = tuple(int(v) for v in rng.integers(0, 110, 3))
        box = (x, y, x + size, y + size)
        if shape == "circle":
            draw.ellipse(box, fill=colour)
        elif shape == "square":
            draw.rectangle(box, fill=colour)
        elif shape == "triangle":
            draw.polygon([(x, y + size), (x + size, y + size), (x + size // 2, y)], fill=colour)
        else:
            draw.rectangle((x + size // 3, y, x + 2 * size // 3, y + size), fill=colour)
            draw.rectangle((x, y + size // 3, x + size, y + 2 * size // 3), fill=colour)
        (root / shape).mkdir(parents=True, exist_ok=True)
        picture.save(root / shape / f"{i}.png")
    return root


def timed_training(data: Path, out: Path) -> tuple[float, str]:
    """Wall seconds of python -m daam.train --data data --out out, and its line of test accuracies."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "daam.train", "--data", str(data), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"training on {data} failed:\n{done.stderr[-2000:]}")
    accuracy = next(line for line in done.stdout.splitlines() if line.startswith("test accuracy"))
    return time.perf_counter() - started, accuracy


def app_figures(checkpoint: Path, rounds: int = 20) -> dict[str, tuple[float, float]]:
    """Per app, the one serving your checkpoint and the one serving the shipped ones: its cold start (process start
    -> first /explain_ answer) and its median /explain_ round trip, both apps up at once and their requests
    interleaved, so that the machine's drift falls on both alike."""
    from gradio_client import Client

    apps = {"yours": (["--checkpoint", str(checkpoint)], f"/explain_{checkpoint.name}"), "shipped": ([], "/explain_text")}
    with contextlib.ExitStack() as stack:
        calls, cold = {}, {}
        for who, (args, endpoint) in apps.items():
            started = time.perf_counter()
            _, url = stack.enter_context(serve(ROOT / "app.py", *args))
            client = Client(url, verbose=False)
            calls[who] = lambda client=client, endpoint=endpoint: client.predict(SENTENCE, api_name=endpoint)
            calls[who]()
            cold[who] = time.perf_counter() - started
        samples = {who: [] for who in apps}
        for _ in range(rounds):
            for who, call in calls.items():
                started = time.perf_counter()
                call()
                samples[who].append(time.perf_counter() - started)
    return {who: (cold[who], statistics.median(samples[who])) for who in apps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--skip-images", action="store_true")
    args = parser.parse_args()
    import torch

    from daam import load_pretrained

    with tempfile.TemporaryDirectory(prefix="daam-own-data-") as tmp:
        tmp = Path(tmp)
        text_s, text_accuracy = timed_training(write_reviews(tmp / "reviews.csv", args.rows), tmp / "reviews")
        print(f"text: {args.rows}-row CSV -> checkpoint in {text_s:.0f} s   (goal <= 300 s: {text_s / 300:.2f} of it)"
              f"\n  {text_accuracy}")
        if not args.skip_images:
            image_s, image_accuracy = timed_training(draw_shapes(tmp / "shapes", args.images), tmp / "shapes-ckpt")
            print(f"images: {args.images} pictures -> checkpoint in {image_s:.0f} s   (goal <= 600 s: "
                  f"{image_s / 600:.2f} of it)\n  {image_accuracy}")
        figures = app_figures(tmp / "reviews")
        (own_cold, own_trip), (shipped_cold, shipped_trip) = figures["yours"], figures["shipped"]
        torch.set_num_threads(2)
        model = load_pretrained(tmp / "reviews")
        own = median_seconds(lambda: model.explain(SENTENCE), 20)
        shipped_model = load_pretrained(ROOT / "checkpoints" / "text")
        shipped = median_seconds(lambda: shipped_model.explain(SENTENCE), 20)
    print(f"app cold start: serving your checkpoint {own_cold:.1f} s, the shipped three {shipped_cold:.1f} s "
          f"({own_cold / shipped_cold:.2f}x; goal <= 1)")
    print(f"/explain_ overhead over explain(): your checkpoint {(own_trip - own) * 1e3:.1f} ms, "
          f"the shipped text checkpoint {(shipped_trip - shipped) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
