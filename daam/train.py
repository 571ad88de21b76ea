"""Train a DAAM checkpoint and its baselines on cached encoder features.

    python -m daam.train text --out checkpoints/text
    python -m daam.train image --out checkpoints/image
    python -m daam.train audio --out checkpoints/audio
    python -m daam.train --data reviews.csv --out my-checkpoint    # your own data (daam.data.files)

Each modality's data and architecture come from its task (daam.data.*, named by daam.modalities).
Steps: split (seed recorded); encode every example once with the frozen encoder; train DAAM and two
baselines (mean-pool linear probe, softmax attention pooling) for several seeds, selecting each run's
epoch on validation; evaluate every selected model on the test split (and any held-out set, such as
real recordings) once, at the end; ship the DAAM seed with the best validation accuracy, its metrics,
curves and model card."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .attention import DENSITY_PARAMETERS, head_overlap
from .data import HeldOutSet, Task
from .metrics import classification_report, head_movement, mean_sd
from .model import DAAMClassifier, DAAMConfig
from .pools import BASELINES
from .model_card import write_card
from .features import FeatureCache, StreamingFeatures, cache_key, encode_to_disk
from .settings import TrainSettings


BULK_COMPILE_FROM = 2000  # inputs: below this the one-off compile costs more than it saves (bench_encoders.py)


def encode_all(encoder, inputs: list, labels: list[int], batch_size: int = 64, sort_key=None) -> FeatureCache:
    """Every input through the frozen encoder once, in memory (small sets: a run's held-out ones). sort_key groups
    similar lengths so batches pad less."""
    order = sorted(range(len(inputs)), key=lambda i: sort_key(inputs[i])) if sort_key else list(range(len(inputs)))
    items: list[torch.Tensor | None] = [None] * len(inputs)
    truncated = 0
    for start in tqdm(range(0, len(order), batch_size), desc="encoding (once)", unit="batch"):
        idx = order[start:start + batch_size]
        out = encoder([inputs[i] for i in idx])
        features = out.features.movedim(encoder.position_axis, 1)  # (batch, positions, ...)
        for row, i in enumerate(idx):
            items[i] = features[row, :int(out.mask[row].sum())].to(torch.float16).clone()
        truncated += sum("truncated" in note for note in out.truncation_notes)
    return FeatureCache(items, torch.tensor(labels), encoder.position_axis, truncated)


def features_for(task: Task, encoder, config: DAAMConfig, args, batch_size: int = 64):
    """A run's features: on disk under --cache-dir, in a directory named by the inputs and the encoder (a later run
    on the same data reuses it; a killed one resumes it), or with --no-cache none (the encoder runs for every batch).
    An encoder that can compile itself for bulk work does so when there are enough inputs for it to pay off."""
    if getattr(args, "no_cache", False):
        return StreamingFeatures(encoder, task.inputs, torch.tensor(task.targets), task.sort_key)
    if len(task.inputs) >= BULK_COMPILE_FROM and hasattr(encoder, "compile_for_bulk"):
        encoder.compile_for_bulk(batch_size)
    inputs = task.inputs
    order = sorted(range(len(inputs)), key=lambda i: task.sort_key(inputs[i])) if task.sort_key else None
    key = cache_key(inputs, {"encoder": config.encoder, "preprocessing": config.preprocessing})
    return encode_to_disk(encoder, inputs, task.targets, feature_cache_root(args) / key, batch_size, order)


def feature_cache_root(args) -> Path:
    """--cache-dir, else $DAAM_FEATURE_CACHE, else ~/.cache/daam-lens/features."""
    default = os.environ.get("DAAM_FEATURE_CACHE") or Path.home() / ".cache" / "daam-lens" / "features"
    return Path(getattr(args, "cache_dir", None) or default).expanduser()


def parameter_groups(model: nn.Module, settings: TrainSettings) -> list[dict]:
    """The density parameters apart, without weight decay (it would pull offsets and logits back to 0), at their
    own rate; everything else at settings.lr with weight decay."""
    groups = {True: [], False: []}
    for name, parameter in model.named_parameters():
        groups[name.rsplit(".", 1)[-1] in DENSITY_PARAMETERS].append(parameter)
    return [{"params": groups[False], "lr": settings.lr, "weight_decay": settings.weight_decay},
            {"params": groups[True], "lr": settings.density_lr or settings.lr, "weight_decay": 0.0}]


def length_buckets(idx: list[int], cache: FeatureCache, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: sort within random pools of 50 batches, then shuffle the batches.

    Random batches would pad every snippet to the long tail's length."""
    order = idx[:]
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=cache.length)
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict(model: nn.Module, cache: FeatureCache, idx: list[int], batch_size: int = 256) -> tuple[np.ndarray, float]:
    model.eval()
    preds, loss = [], 0.0
    by_length = sorted(range(len(idx)), key=lambda j: cache.length(idx[j]))  # less padding
    for start in range(0, len(idx), batch_size):
        rows = by_length[start:start + batch_size]
        features, mask, y = cache.batch([idx[j] for j in rows])
        logits = model(features, mask)
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        preds.append((rows, logits.argmax(-1).numpy()))
    out = np.empty(len(idx), dtype=int)
    for rows, p in preds:
        out[rows] = p
    return out, loss / len(idx)


def fit(model: nn.Module, cache: FeatureCache, split: dict, settings: TrainSettings, seed: int, desc: str):
    """Train, keeping the weights of the epoch with the best validation accuracy."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    groups = [g for g in parameter_groups(model, settings) if g["params"]]
    optimiser = torch.optim.AdamW(groups)
    steps = settings.epochs * -(-len(split["train"]) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, [g["lr"] for g in groups], total_steps=steps,
                                                   pct_start=0.1)
    y_val = cache.labels[split["val"]].numpy()
    curves = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    best = (-1.0, None, -1)
    for epoch in tqdm(range(settings.epochs), desc=desc, unit="epoch", leave=False):
        model.train()
        total = 0.0
        for batch in length_buckets(split["train"], cache, settings.batch_size, rng):
            features, mask, y = cache.batch(batch)
            loss = nn.functional.cross_entropy(model(features, mask), y)
            penalty = settings.head_diversity * head_overlap(model) if settings.head_diversity else 0.0
            optimiser.zero_grad()
            (loss + penalty).backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(y)  # the curves report the classification loss alone
        pred, val_loss = predict(model, cache, split["val"])
        accuracy = float((pred == y_val).mean())
        curves["train_loss"].append(round(total / len(split["train"]), 5))
        curves["val_loss"].append(round(val_loss, 5))
        curves["val_accuracy"].append(round(accuracy, 5))
        if accuracy > best[0]:
            best = (accuracy, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
    model.load_state_dict(best[1])
    return {"val_accuracy": round(best[0], 4), "best_epoch": best[2], "curves": curves}


# ---------------------------------------------------------------------------- the run
def train_seeds(make, cache: FeatureCache, split: dict, settings: TrainSettings, seeds: list[int],
                name: str) -> list[tuple[int, nn.Module, dict]]:
    """One model per seed, made and trained from that seed: (seed, model, fit's record) each."""
    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = make()
        runs.append((seed, model, fit(model, cache, split, settings, seed, f"{name} seed {seed}")))
    return runs


def best_on_validation(runs: list) -> int:
    """Index of the (seed, model, info) run with the best validation accuracy: the one that ships."""
    return max(range(len(runs)), key=lambda i: runs[i][2]["val_accuracy"])


def evaluate_held_out(held_out: HeldOutSet, encoder: nn.Module, trained: dict, labels: list[str]) -> dict:
    """Every trained model's accuracy on a held-out set (mean ± sd over seeds), and the shipped DAAM's report."""
    cache = encode_all(encoder, held_out.inputs, held_out.targets)
    every, y = list(range(len(held_out.inputs))), np.array(held_out.targets)
    out = {"source": held_out.source, "examples": len(every)}
    for name, runs in trained.items():
        out[name] = mean_sd([float((predict(model, cache, every)[0] == y).mean()) for _, model, _ in runs])
    shipped = trained["daam"][best_on_validation(trained["daam"])][1]
    out["selected_daam"] = classification_report(y, predict(shipped, cache, every)[0], labels)
    return out


def learned_densities(model: DAAMClassifier) -> dict:
    """Per density stage, how far the heads moved from their initial gates and how distinct they ended."""
    initial = DAAMClassifier(model.config).densities()  # the density initialisation has no randomness
    return {stage: head_movement(initial[stage], final) for stage, final in model.densities().items()}


def run(task: Task, encoder: nn.Module, config: DAAMConfig, settings: TrainSettings, args, data_time_s: float = 0.0) -> dict:
    """Encode once; train DAAM and both baselines for each seed; test once; ship the best-on-validation DAAM."""
    started = time.time()
    sizes = {k: len(v) for k, v in task.split.items()}
    print(f"{task.description}: {len(task.inputs)} examples, split sizes {sizes}")
    cache = features_for(task, encoder, config, args)
    makers = {"daam": lambda: DAAMClassifier(config)}
    makers |= {name: lambda name=name: DAAMClassifier(config.baseline(name)) for name in BASELINES}
    seeds = list(range(args.seeds))
    trained = {name: train_seeds(make, cache, task.split, settings, seeds, name) for name, make in makers.items()}

    # The test split is touched here only, once per selected model.
    y_test = cache.labels[task.split["test"]].numpy()
    test_groups = [task.groups[i] for i in task.split["test"]] if task.groups else None
    results, curves = {}, {}
    for name, runs in trained.items():
        reports = [classification_report(y_test, predict(model, cache, task.split["test"])[0], task.labels, test_groups)
                   for _, model, _ in runs]
        chosen = best_on_validation(runs)
        results[name] = {
            "test_accuracy": mean_sd([r["accuracy"] for r in reports]),
            "test_macro_f1": mean_sd([r["macro_f1"] for r in reports]),
            "val_accuracy": mean_sd([r[2]["val_accuracy"] for r in runs]),
            "selected_seed": runs[chosen][0],
            "selected_test": reports[chosen],
        }
        curves[name] = {str(seed): info["curves"] for seed, _, info in runs}

    out = Path(args.out)
    shipped = trained["daam"][best_on_validation(trained["daam"])][1]
    metrics = {
        "task": task.description,
        "labels": task.labels,
        "data": task.provenance | ({"truncated": cache.truncated} if cache.truncated else {}),
        "split": {"sizes": sizes} | task.provenance.get("split", {}),
        "seeds": seeds,
        "selection": "per run: epoch with the best validation accuracy; shipped DAAM: the seed with the best validation accuracy",
        "train_settings": vars(settings),
        "results": results,
        "head_movement": learned_densities(shipped),
        "quick": bool(args.quick),
    }
    for name, held_out in task.held_out.items():
        metrics[name] = None if held_out is None else evaluate_held_out(held_out, encoder, trained, task.labels)
    metrics["train_time_s"] = round(time.time() - started, 1)
    metrics["data_time_s"] = data_time_s
    write_checkpoint(out, shipped, metrics, curves)
    print(f"test accuracy (mean ± sd over {len(seeds)} seeds): " + ", ".join(
        f"{n} {r['test_accuracy']['mean']:.4f} ± {r['test_accuracy']['sd']:.4f}" for n, r in results.items()))
    print(f"wrote {out} in {metrics['train_time_s']} s (and {data_time_s} s making the data)")
    return metrics


def write_checkpoint(out: Path, model: DAAMClassifier, metrics: dict, curves: dict) -> None:
    """A run's checkpoint files (weights, config, metrics, curves, card), whole or not at all: written into a hidden
    folder beside `out`, then each moved into place (a rename) once all are complete. Files a run does not write,
    such as a comparison's, stay; a run that fails or is interrupted leaves `out` as it was, or absent."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        model.save_pretrained(staging)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (staging / "training_curves.json").write_text(json.dumps(curves) + "\n")
        write_card(staging, metrics, model.config)
        out.mkdir(exist_ok=True)
        for path in staging.iterdir():
            os.replace(path, out / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    from .cli import build_parser, parse, prepare, run_command, settings_for

    parser = build_parser("python -m daam.train", __doc__)
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    args = parse(parser, argv)

    def work() -> None:
        settings = settings_for(args)
        task, encoder, config, data_time_s = prepare(args)
        run(task, encoder, config, settings, args, data_time_s)

    run_command(parser, work)


if __name__ == "__main__":
    main()
