"""Fashion-MNIST (Zalando Research, MIT licence) from the Debian package `dataset-fashion-mnist`.

A stratified subset of the official training images is split into training and validation; the
official test images are the test split. Every image goes through daam.images.prepare_image, the
same function the app uses."""

from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import SPLIT_SEED, Task, stratified_split

ROOT = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's idx files: (n, 28, 28) uint8 images and (n,) uint8 labels."""
    images, labels = root / f"{part}-images-idx3-ubyte.gz", root / f"{part}-labels-idx1-ubyte.gz"
    if not images.is_file():
        raise DataError(f"Fashion-MNIST not found in {root}: `apt-get install dataset-fashion-mnist`, or pass --builtin-data DIR")
    with gzip.open(images) as f:
        pixels = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(labels) as f:
        targets = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return pixels, targets


def task(args):
    root = Path(args.builtin_data or ROOT)
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
    task = Task("Fashion-MNIST clothing (10 classes)", LABELS, inputs, targets, split,
                {"files": str(root), "sha256": digest.hexdigest(), "examples": len(inputs),
                 "split": {"seed": SPLIT_SEED, "train_and_val_from": "official training images (stratified subset)",
                           "test_from": "official test images (random subset)"}})
    return task
