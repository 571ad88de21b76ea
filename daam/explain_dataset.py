"""Explain a whole dataset: one Parquet row per item, for a dataset view to read.

    python -m daam.explain_dataset --checkpoint my-reviews --split test     # into my-reviews/dataset: the app's Dataset tab
    python -m daam.explain_dataset --checkpoint DIR --data PATH --out OUT [--split test] [--items N]
    torchrun --nproc_per_node 2 -m daam.explain_dataset ...          # the parts shared out between processes

The data is the checkpoint's own (the files it was trained on, from its metrics.json, or its built-in dataset)
unless --data names other files (daam.data.files). OUT (default: the checkpoint's dataset/ folder, which the app
reads) gets one part-NNNNN.parquet per --part-items items, each written whole or not at all (a rename): a run that
is stopped resumes from the parts it has not written. A row (daam.dataset_view reads them): id (the item's number
in the data), split, input (the text, the file's path, or "item N" for an in-memory picture or clip, then in
`media` as PNG or FLAC bytes), label, predicted_label, confidence, correct, probabilities, position_labels,
relevance (per position), gates (per head and position: each head's mean raw gate over its channels),
relevance_method, z_counts (per head, the position stage's z-values counted in explanation.Z_EDGES' bins) and
the relevance's trust measures on this item (daam.faithfulness.trust_measures: comprehensiveness, sufficiency,
log_odds)."""

from __future__ import annotations

import argparse
import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import cli, distributed
from .data import Task, seeded_sample
from .errors import DataError
from .faithfulness import trust_measures, unit_case
from .features import encoding_order
from .modalities import modality
from .model import load_pretrained

PART_ITEMS = 1024
BATCH = 64  # inputs per explain_batch: as the encoder runs in training


def media(item) -> tuple[str, bytes | None]:
    """An input as the row keeps it: a text or a file's path as itself; a picture (uint8 array) as PNG bytes and a
    clip ((rate, samples)) as FLAC bytes, which explain() reads back as they are."""
    if isinstance(item, (str, Path)):
        return str(item), None
    buffer = io.BytesIO()
    if isinstance(item, tuple):
        import soundfile as sf

        rate, samples = item
        sf.write(buffer, np.asarray(samples, dtype=np.float32), int(rate), format="FLAC")
    else:
        from PIL import Image

        Image.fromarray(np.asarray(item, dtype=np.uint8)).save(buffer, format="PNG")
    return "", buffer.getvalue()


def rows(model, task: Task, items: list[int], split_of: dict[int, str], trust: bool = True) -> list[dict]:
    """The Parquet rows of these items of the task (in their order), explained in batches of similar lengths; the
    trust measures (one more batched pass of the model per item) where `trust` and the modality has a deletion
    test."""
    out = {}
    measured = trust and bool(modality(model.config.modality).case)
    order = [items[k] for k in encoding_order([task.inputs[i] for i in items], task.sort_key)]  # pads less
    for start in range(0, len(order), BATCH):
        chunk = order[start:start + BATCH]
        for i, e in zip(chunk, model.explain_batch([task.inputs[i] for i in chunk], layer_details=False)):
            shown, data = media(task.inputs[i])
            target = e.labels.index(e.predicted_label)
            measures = {"comprehensiveness": None, "sufficiency": None, "log_odds": None}
            if measured:
                case = unit_case(model, task.inputs[i])
                measures = trust_measures(case, case.per_unit(e.position_relevance), target)
            z_counts = e.z_counts["positions"].tolist()
            out[i] = {"id": i, "split": split_of[i], "input": shown or f"item {i}", "media": data,
                        "label": task.labels[task.targets[i]], "predicted_label": e.predicted_label,
                        "confidence": float(e.probabilities[target]),
                        "correct": e.predicted_label == task.labels[task.targets[i]],
                        "probabilities": [float(p) for p in e.probabilities],
                        "position_labels": list(e.position_labels), "relevance": e.position_relevance.tolist(),
                        "gates": e.position_weights.tolist(), "relevance_method": e.relevance_method,
                        "z_counts": z_counts, **measures}
    return [out[i] for i in items]


def in_label_order(task: Task, labels: list[str]) -> Task:
    """The task with its targets numbered as the checkpoint numbers its labels (other files list the same labels in
    their own order: sorted names, or as they first appear); a DataError when the labels themselves differ."""
    if sorted(task.labels) != sorted(labels):
        raise DataError(f"the data's labels {task.labels} are not the checkpoint's {labels}")
    number = [labels.index(name) for name in task.labels]
    return replace(task, labels=list(labels), targets=[number[t] for t in task.targets])


def compact(table):
    """The table with every list of floats (relevance, gates, probabilities) as float32 and the z counts as int32:
    half the size, and float32 is what the model computed them in."""
    import pyarrow as pa

    def smaller(kind):
        if pa.types.is_list(kind):
            return pa.list_(smaller(kind.value_type))
        return {pa.float64(): pa.float32(), pa.int64(): pa.int32()}.get(kind, kind)

    return table.cast(pa.schema([pa.field(f.name, smaller(f.type) if pa.types.is_list(f.type) else f.type)
                                 for f in table.schema]))


def explain_dataset(checkpoint: Path, data: str | None, out: Path | None = None, split: str | None = None,
                    part_items: int = PART_ITEMS, items: int | None = None, builtin_data: str | None = None,
                    trust: bool = True) -> int:
    """Write the parts this process owns (every world-th) that are not written yet; the number of items all the
    processes explained. `items`: a seeded random sample of that many (in their order), not every item."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    processes = distributed.current()
    model = load_pretrained(checkpoint, device=processes.device)
    task = cli.checkpoint_task(checkpoint, data, builtin_data)
    task = in_label_order(task, model.config.labels)
    split_of = {i: name for name, idx in task.split.items() for i in idx}
    chosen = seeded_sample(sorted(task.split[split]) if split else list(range(len(task.inputs))), items)
    parts = [chosen[s:s + part_items] for s in range(0, len(chosen), part_items)]
    out = out or checkpoint / "dataset"
    out.mkdir(parents=True, exist_ok=True)
    done = 0
    mine = range(processes.rank, len(parts), processes.world)
    for number in tqdm(mine, desc="explaining", unit="part", disable=not processes.main):
        path = out / f"part-{number:05d}.parquet"
        if path.exists():
            continue
        partial = path.with_suffix(".parquet.partial")
        pq.write_table(compact(pa.Table.from_pylist(rows(model, task, parts[number], split_of, trust))), partial,
                       compression="zstd")
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
    parser.add_argument("--builtin-data", help="where a built-in dataset's files are (as daam.train's flag)")
    parser.add_argument("--out", type=Path, help="a directory for the Parquet parts (default: CHECKPOINT/dataset, "
                                                 "where the app's Dataset tab looks)")
    parser.add_argument("--split", choices=["train", "val", "test"], help="only this split (default: every item)")
    parser.add_argument("--items", type=cli.positive(int), help="a seeded random sample of this many items")
    parser.add_argument("--part-items", type=cli.positive(int), default=PART_ITEMS, help="items per Parquet part")
    parser.add_argument("--no-trust-measures", action="store_true",
                        help="leave out each item's comprehensiveness, sufficiency and log-odds (one more batched pass "
                             "of the model per item)")
    args = parser.parse_args(argv)
    distributed.start()
    try:
        explained = explain_dataset(args.checkpoint, args.data, args.out, args.split, args.part_items, args.items,
                                    args.builtin_data, not args.no_trust_measures)
        if distributed.current().main:
            print(f"explained {explained} items into {args.out or args.checkpoint / 'dataset'}")
    except (DataError, FileNotFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    finally:
        distributed.stop()


if __name__ == "__main__":
    main()
