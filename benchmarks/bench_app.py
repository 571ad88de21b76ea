"""The app's cold start and its per-request overhead over explain(), measured in one run.

    python benchmarks/bench_app.py
Cold start: process start -> first /explain_text answer (goal <= 15 s on 2 CPU cores).
Overhead: median /explain_text round trip through gradio_client minus median explain() called
in this process on the same sentence (goal <= 50 ms), beside the round trip of a do-nothing endpoint
(benchmarks/trivial_app.py): Gradio's own floor.
Comparison: per modality, the median /compare_<modality> round trip on a shipped example beside its budget, the
/explain_<modality> round trip on the same input plus the other mechanisms' heads' own ms per item
(comparison.json's ms_per_item: they share the one encoder pass).
Dataset tab: the shipped text checkpoint's explained test set tiled to 10,000 rows; opening it (the Parquet read and
the tab's first summary, page, confusion matrix, per-class table and figures; goal <= 1 s) and refreshing it for a
filter (errors only and a label, and a text search; goal <= 200 ms), in this process."""

from __future__ import annotations

import json
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
COMPARED = {"text": SENTENCE, "image": "image_fmnist_shirt.png", "audio": "audio_espeak_b.wav"}  # examples/ files


def compare_rows(client) -> list[str]:
    """Per modality: the /compare_ round trip against /explain_ on the same input plus the other heads' cost."""
    from gradio_client import handle_file

    rows = []
    for modality, example in COMPARED.items():
        value = example if modality == "text" else handle_file(str(ROOT / "examples" / example))
        explain = median_seconds(lambda: client.predict(value, api_name=f"/explain_{modality}"), 10)
        compare = median_seconds(lambda: client.predict(value, api_name=f"/compare_{modality}"), 10)
        comparison = json.loads((ROOT / "checkpoints" / modality / "comparison.json").read_text())
        heads_ms = sum(row["ms_per_item"] for row in comparison["mechanisms"] if row["name"] != "daam")
        budget = explain * 1e3 + heads_ms
        rows.append(f"/compare_{modality} {compare * 1e3:.1f} ms against its budget {budget:.1f} ms "
                    f"(/explain_{modality} {explain * 1e3:.1f} ms + the other heads {heads_ms:.1f} ms): "
                    f"{compare * 1e3 / budget:.2f}x   (goal <= 1)")
    return rows


DATASET_ROWS = 10_000


def dataset_rows_timing() -> list[str]:
    """The Dataset tab on 10,000 rows: the shipped text test set, tiled (new ids), served from a copy of the
    checkpoint."""
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ui import serving

    shipped = ROOT / "checkpoints" / "text"
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "text10k"
        shutil.copytree(shipped, checkpoint, ignore=shutil.ignore_patterns("dataset", "mechanisms"))
        table = pq.read_table(shipped / "dataset")
        copies = -(-DATASET_ROWS // len(table))
        tiled = pa.concat_tables([table] * copies).slice(0, DATASET_ROWS)
        tiled = tiled.set_column(0, "id", pa.array(range(DATASET_ROWS)))
        (checkpoint / "dataset").mkdir()
        pq.write_table(tiled, checkpoint / "dataset" / "part-00000.parquet", compression="zstd")
        serving.serve([str(checkpoint)])
        serving.model_for("text10k")  # the app loads its models before serving; not part of opening the tab
        from ui.dataset_tab import ALL, MEAN_OF_HEADS, refresh, view

        defaults = [False, ALL, ALL, 0.0, 1.0, "", "id", False, MEAN_OF_HEADS]
        start = time.perf_counter()
        rows = len(view("text10k"))
        refresh("text10k", *defaults)
        opened = time.perf_counter() - start
        errors = median_seconds(lambda: refresh("text10k", True, "fresh", *defaults[2:]), 10)
        search = median_seconds(lambda: refresh("text10k", *defaults[:5], "funny", *defaults[6:]), 10)
    return [f"Dataset tab, {rows:,} rows: opens in {opened * 1e3:.0f} ms (goal <= 1000 ms); a filter (errors of one "
            f"label) {errors * 1e3:.0f} ms, a search {search * 1e3:.0f} ms (goal <= 200 ms)"]


def main() -> None:
    from gradio_client import Client

    dataset = dataset_rows_timing()  # first: this process serves a copy of the text checkpoint for it

    start = time.perf_counter()
    with serve(ROOT / "app.py") as (_, url):
        client = Client(url, verbose=False)
        client.predict(SENTENCE, api_name="/explain_text")
        cold = time.perf_counter() - start
        via_app = median_seconds(lambda: client.predict(SENTENCE, api_name="/explain_text"), 20)
        comparisons = compare_rows(client)
    with serve(ROOT / "benchmarks" / "trivial_app.py") as (_, url):
        client = Client(url, verbose=False)
        floor = median_seconds(lambda: client.predict(SENTENCE, api_name="/echo"), 20)
    torch.set_num_threads(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # where the app runs its models
    model = load_pretrained(ROOT / "checkpoints" / "text", device=device)
    direct = median_seconds(lambda: model.explain(SENTENCE), 20)
    print(f"models on {device}")
    print(f"cold start (process start -> first /explain_text answer): {cold:.1f} s   (goal <= 15 s)")
    print(f"/explain_text round trip {via_app * 1e3:.1f} ms, explain() {direct * 1e3:.1f} ms: "
          f"overhead {(via_app - direct) * 1e3:.1f} ms   (goal <= 50 ms)")
    print(f"Gradio's floor: a do-nothing endpoint (benchmarks/trivial_app.py) round trip {floor * 1e3:.1f} ms; "
          f"/explain_text, explain() included, takes {(via_app - floor) * 1e3:+.1f} ms beyond it")
    print("\n".join(comparisons))
    print("\n".join(dataset))


if __name__ == "__main__":
    main()
