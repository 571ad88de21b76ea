"""Train a DAAM checkpoint and its baselines on cached encoder features.

    python -m daam.train text --out checkpoints/text
    python -m daam.train image --out checkpoints/image
    python -m daam.train audio --out checkpoints/audio
    python -m daam.train --data reviews.csv --out my-checkpoint    # your own data (daam.data.files)
    torchrun --nproc_per_node 2 -m daam.train ...                  # several processes (daam.distributed)

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
from .data import HeldOutSet, Task, seeded_sample
from .metrics import classification_report, head_movement, mean_sd
from .model import DAAMClassifier, DAAMConfig
from .pools import BASELINES
from .model_card import write_card
from .ood import FIT_ITEMS, cached_batches, view_features
from .ood import fit_for as fit_ood_for
from .ood import summary as ood_summary
from . import distributed
from .features import FeatureCache, encode_all, features_for
from .settings import TrainSettings


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
    device = next(model.parameters()).device
    preds, loss = [], 0.0
    by_length = sorted(range(len(idx)), key=lambda j: cache.length(idx[j]))  # less padding
    for start in range(0, len(idx), batch_size):
        rows = by_length[start:start + batch_size]
        features, mask, y = (t.to(device) for t in cache.batch([idx[j] for j in rows]))
        logits = model(features, mask).float()
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        preds.append((rows, logits.argmax(-1).cpu().numpy()))
    out = np.empty(len(idx), dtype=int)
    for rows, p in preds:
        out[rows] = p
    return out, loss / len(idx)


def fit(model: nn.Module, cache: FeatureCache, split: dict, settings: TrainSettings, seed: int, desc: str):
    """Train, keeping the weights of the epoch with the best validation accuracy; returns the model on the CPU.

    In a group of processes (daam.distributed) every process draws the same batches and trains on its share of each
    (every world-th example) through DistributedDataParallel, whose averaged gradients make a step the one process
    would take on the whole batch: the same steps and schedule, whatever the number of processes. Each evaluates
    the whole validation split, so all choose the same epoch."""
    processes = distributed.current()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.to(processes.device)
    stepped = model if processes.world == 1 else nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    groups = [g for g in parameter_groups(model, settings) if g["params"]]
    optimiser = torch.optim.AdamW(groups)
    steps = settings.epochs * -(-len(split["train"]) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, [g["lr"] for g in groups], total_steps=steps,
                                                   pct_start=0.1)
    y_val = cache.labels[split["val"]].numpy()
    curves = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    best = (-1.0, None, -1)
    for epoch in tqdm(range(settings.epochs), desc=desc, unit="epoch", leave=False, disable=not processes.main):
        model.train()
        total = 0.0
        for batch in length_buckets(split["train"], cache, settings.batch_size, rng):  # the same in every process
            if len(batch) < processes.world:  # too small to share out (a pool's last few examples)
                schedule.step()
                continue
            features, mask, y = (t.to(processes.device) for t in cache.batch(batch[processes.rank::processes.world]))
            with distributed.autocast(processes.device):
                logits = stepped(features, mask)
            loss = nn.functional.cross_entropy(logits.float(), y)
            penalty = settings.head_diversity * head_overlap(model) if settings.head_diversity else 0.0
            optimiser.zero_grad()
            (loss + penalty).backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(y)  # the curves report the classification loss alone
        pred, val_loss = predict(model, cache, split["val"])
        accuracy = float((pred == y_val).mean())
        curves["train_loss"].append(round(distributed.summed(total) / len(split["train"]), 5))
        curves["val_loss"].append(round(val_loss, 5))
        curves["val_accuracy"].append(round(accuracy, 5))
        if accuracy > best[0]:
            best = (accuracy, {k: v.clone() for k, v in model.state_dict().items()}, epoch)
    model.load_state_dict(best[1])
    model.cpu()
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
    """Encode once; train DAAM and both baselines for each seed; test once; ship the best-on-validation DAAM. In a
    group of processes only the first writes the checkpoint and prints."""
    started, processes = time.time(), distributed.current()
    say = print if processes.main else (lambda *_: None)
    sizes = {k: len(v) for k, v in task.split.items()}
    say(f"{task.description}: {len(task.inputs)} examples, split sizes {sizes}")
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
        "processes": processes.world,
        "results": results,
        "head_movement": learned_densities(shipped),
        "quick": bool(args.quick),
    }
    for name, held_out in task.held_out.items():
        metrics[name] = None if held_out is None else evaluate_held_out(held_out, encoder, trained, task.labels)
    if processes.main:  # daam.ood: from the training split's features, the threshold from validation's; seeded
        # samples of at most FIT_ITEMS items of each split, so that its memory does not grow with the data
        chosen = {name: seeded_sample(task.split[name], FIT_ITEMS) for name in ("train", "val", "test")}
        features = {name: view_features(shipped, cached_batches(cache, items)) for name, items in chosen.items()}
        try:
            shipped.ood = fit_ood_for(shipped.config, features["train"], cache.labels[chosen["train"]], features["val"])
            metrics["ood"] = ood_summary(shipped.ood, features, {name: len(items) for name, items in chosen.items()})
        except ValueError as error:  # too little data to measure distance with: the checkpoint simply has none
            say(f"note: {error}")
    metrics["train_time_s"] = round(time.time() - started, 1)
    metrics["data_time_s"] = data_time_s
    if processes.main:
        write_checkpoint(out, shipped, metrics, curves)
    say(f"test accuracy (mean ± sd over {len(seeds)} seeds): " + ", ".join(
        f"{n} {r['test_accuracy']['mean']:.4f} ± {r['test_accuracy']['sd']:.4f}" for n, r in results.items()))
    say(f"wrote {out} in {metrics['train_time_s']} s (and {data_time_s} s making the data)")
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

    distributed.start()  # torchrun / accelerate launch: join their group (nothing without a launcher)
    try:
        run_command(parser, work)
    finally:
        distributed.stop()


if __name__ == "__main__":
    main()
