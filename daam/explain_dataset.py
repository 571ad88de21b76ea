"""Explain a whole dataset: one Parquet row per item, for a dataset view to read.

    python -m daam.explain_dataset --checkpoint my-reviews --out my-reviews-explained
    python -m daam.explain_dataset --checkpoint DIR --data PATH --out OUT [--split test]
    torchrun --nproc_per_node 2 -m daam.explain_dataset ...          # the parts shared out between processes

The data is the checkpoint's own (the files it was trained on, from its metrics.json) unless --data names other
files (daam.data.files). OUT gets one part-NNNNN.parquet per --part-items items, each written whole or not at all
(a rename): a run that is stopped resumes from the parts it has not written. A row: id (the item's number in the
data), split, input (the text, or the file's path), label, predicted_label, probabilities, position_labels,
relevance (per position), gates (per head and position: each head's mean raw gate over its channels) and
relevance_method."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tqdm.auto import tqdm

from . import distributed
from .data import files
from .errors import DataError
from .model import load_pretrained

PART_ITEMS = 1024
BATCH = 64  # inputs per explain_batch: as the encoder runs in training


def rows(model, task, items: list[int], split_of: dict[int, str]) -> list[dict]:
    """The Parquet rows of these items of the task, explained in batches."""
    out = []
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        for i, e in zip(chunk, model.explain_batch([task.inputs[i] for i in chunk])):
            out.append({"id": i, "split": split_of[i], "input": str(task.inputs[i]), "label": task.labels[task.targets[i]],
                        "predicted_label": e.predicted_label, "probabilities": [float(p) for p in e.probabilities],
                        "position_labels": list(e.position_labels), "relevance": e.position_relevance.tolist(),
                        "gates": e.position_weights.tolist(), "relevance_method": e.relevance_method})
    return out


def explain_dataset(checkpoint: Path, data: str | None, out: Path, split: str | None = None,
                    part_items: int = PART_ITEMS) -> int:
    """Write the parts this process owns (every world-th) that are not written yet; the number of items all the
    processes explained."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    processes = distributed.current()
    model = load_pretrained(checkpoint, device=processes.device)
    task = files.task_of_checkpoint(checkpoint, data)  # the checkpoint's own files unless --data names others
    if task.labels != model.config.labels:
        raise DataError(f"the data's labels {task.labels} are not the checkpoint's {model.config.labels}")
    split_of = {i: name for name, idx in task.split.items() for i in idx}
    items = sorted(task.split[split]) if split else list(range(len(task.inputs)))
    parts = [items[s:s + part_items] for s in range(0, len(items), part_items)]
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    mine = range(processes.rank, len(parts), processes.world)
    for number in tqdm(mine, desc="explaining", unit="part", disable=not processes.main):
        path = out / f"part-{number:05d}.parquet"
        if path.exists():
            continue
        partial = path.with_suffix(".parquet.partial")
        pq.write_table(pa.Table.from_pylist(rows(model, task, parts[number], split_of)), partial)
        os.replace(partial, path)
        done += len(parts[number])
    distributed.barrier()
    return int(distributed.summed(done))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daam.explain_dataset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", help="other files than the checkpoint's own (daam.data.files), read with the columns "
                                       "it was trained with")
    parser.add_argument("--out", required=True, type=Path, help="a directory for the Parquet parts")
    parser.add_argument("--split", choices=["train", "val", "test"], help="only this split (default: every item)")
    parser.add_argument("--part-items", type=int, default=PART_ITEMS, help="items per Parquet part")
    args = parser.parse_args(argv)
    distributed.start()
    try:
        explained = explain_dataset(args.checkpoint, args.data, args.out, args.split, args.part_items)
        if distributed.current().main:
            print(f"explained {explained} items into {args.out}")
    except (DataError, FileNotFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    finally:
        distributed.stop()


if __name__ == "__main__":
    main()
