"""Fit a checkpoint's out-of-distribution detector (daam.ood) after training, without retraining it:

    python -m daam.fit_ood --checkpoint checkpoints/image [--items 4000]

From (a seeded sample of) the training split's features, the threshold from the validation split's; the share of
the test split flagged is recorded in metrics.json["ood"] and the card. The data is the checkpoint's own (its files,
or its modality's built-in dataset)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .cli import checkpoint_task, positive
from .errors import DataError
from .model import load_pretrained
from .model_card import write_card
from .data import seeded_sample
from .ood import FIT_ITEMS, OOD_FILE, encoded_batches, fit_for, summary, view_features


def fit_for_checkpoint(checkpoint: Path, data: str | None = None, builtin_data: str | None = None,
                       items: int = FIT_ITEMS) -> dict:
    """Fit and save the detector of a trained checkpoint from (a sample of) its training and validation splits,
    and report the share of its test split flagged; recorded in metrics.json["ood"] and the card."""
    model = load_pretrained(checkpoint)
    task = checkpoint_task(checkpoint, data, builtin_data)
    chosen = {name: seeded_sample(task.split[name], items) for name in ("train", "val", "test")}
    features = {name: view_features(model, encoded_batches(model, [task.inputs[i] for i in idx]))
                for name, idx in chosen.items()}
    targets = torch.tensor([task.targets[i] for i in chosen["train"]])
    detector = fit_for(model.config, features["train"], targets, features["val"])
    detector.save(checkpoint)
    report = summary(detector, features, {name: len(idx) for name, idx in chosen.items()})
    metrics_path = checkpoint / "metrics.json"
    if metrics_path.is_file():  # a detection rate measured with an earlier detector no longer holds: dropped
        metrics = json.loads(metrics_path.read_text())
        metrics["ood"] = report
        metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
        write_card(checkpoint, metrics, model.config)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daam.fit_ood", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", help="the files it was trained on, where metrics.json does not say")
    parser.add_argument("--builtin-data", help="where a built-in dataset's files are (as daam.train's flag)")
    parser.add_argument("--items", type=positive(int), default=FIT_ITEMS, help="at most this many items of each split")
    args = parser.parse_args(argv)
    try:
        report = fit_for_checkpoint(args.checkpoint, args.data, args.builtin_data, args.items)
    except (DataError, FileNotFoundError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    print(f"wrote {args.checkpoint / OOD_FILE}: threshold {report['threshold']} (the {report['quantile']:.0%} "
          f"quantile of validation), {report['test_flagged']:.1%} of {report['test_items']} test items flagged")


if __name__ == "__main__":
    main()
