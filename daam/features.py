"""Where a training run keeps its encoder features: in memory, on disk, or nowhere (the encoder runs each time).

Every kind answers the same three questions for the training loop (daam.train): `length(i)` (positions of item i,
for bucketing), `batch(idx)` (padded features, mask, labels) and `labels`.

    FeatureCache        every item's features in memory, float16, positions first and ragged (small data, tests)
    DiskFeatureCache    the same in shard files under a directory named by what was encoded (the inputs and the
                        encoder): written once, a shard at a time, and read back a batch at a time with plain reads,
                        so memory does not grow with the number of items. A shard counts once its index is written
                        (last, by a rename): a run that is killed resumes from its last complete shard.
    StreamingFeatures   no cache at all: each batch runs the encoder (data too large for the disk)
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from . import distributed
from .errors import DataError

SHARD_ITEMS = 4096  # items per shard: the unit of resumption, and of open files (a million items: 245)
BULK_COMPILE_FROM = 2000  # inputs: below this the one-off compile costs more than it saves (bench_encoders.py)


def pad(items: list[torch.Tensor], position_axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged (positions, ...) items -> float32 features with positions on position_axis, and the mask."""
    padded = nn.utils.rnn.pad_sequence(items, batch_first=True).float()  # (batch, positions, ...)
    lengths = torch.tensor([len(item) for item in items])
    mask = torch.arange(padded.shape[1])[None, :] < lengths[:, None]
    return padded.movedim(1, position_axis), mask


@dataclass
class FeatureCache:
    """Each example's encoder features in float16, positions first and ragged; `batch` pads them."""

    items: list[torch.Tensor]  # (positions, ...) each
    labels: torch.Tensor
    position_axis: int  # where positions go in a batch, as the encoder gives them
    truncated: int = 0  # inputs the encoder did not read whole (a text beyond its token limit)

    def length(self, i: int) -> int:
        return self.items[i].shape[0]

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (*pad([self.items[i] for i in idx], self.position_axis), self.labels[idx])


class DiskFeatureCache:
    """Features in shard files (see the module's docstring): shard-NNNNN.f16 holds its items' rows back to back,
    float16, positions first; shard-NNNNN.json their item numbers and lengths, written once the rows are."""

    def __init__(self, directory: Path, labels: torch.Tensor, position_axis: int, row_shape: tuple[int, ...],
                 shards: list[dict]) -> None:
        self.directory, self.labels, self.position_axis = Path(directory), labels, position_axis
        self.row_shape, self.row_bytes = tuple(row_shape), int(np.prod(row_shape)) * 2
        n = len(labels)
        self.shard, self.start, self.lengths = np.zeros(n, np.int32), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.truncated = 0
        for number, shard in enumerate(shards):
            items, lengths = np.asarray(shard["items"]), np.asarray(shard["lengths"])
            self.shard[items], self.lengths[items] = number, lengths
            self.start[items] = np.concatenate([[0], np.cumsum(lengths)[:-1]])  # in rows
            self.truncated += shard["truncated"]
        self._files: dict[int, int] = {}  # shard -> an open file descriptor, opened on first read

    def length(self, i: int) -> int:
        return int(self.lengths[i])

    def _rows(self, i: int) -> torch.Tensor:
        shard = int(self.shard[i])
        if shard not in self._files:
            self._files[shard] = os.open(self.directory / f"shard-{shard:05d}.f16", os.O_RDONLY)
        data = os.pread(self._files[shard], int(self.lengths[i]) * self.row_bytes, int(self.start[i]) * self.row_bytes)
        return torch.from_numpy(np.frombuffer(data, np.float16).reshape(-1, *self.row_shape).copy())

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (*pad([self._rows(i) for i in idx], self.position_axis), self.labels[idx])

    def __del__(self) -> None:
        for fd in getattr(self, "_files", {}).values():
            os.close(fd)


class StreamingFeatures:
    """No cache: each batch runs the encoder on its inputs. length() is the inputs' sort key (0 without one): it
    only orders items into batches of similar length."""

    def __init__(self, encoder, inputs: list, labels: torch.Tensor, sort_key=None) -> None:
        self.encoder, self.inputs, self.labels, self.sort_key = encoder, inputs, labels, sort_key
        self.position_axis, self.truncated = encoder.position_axis, 0

    def length(self, i: int) -> int:
        return self.sort_key(self.inputs[i]) if self.sort_key else 0

    @torch.no_grad()
    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.encoder([self.inputs[i] for i in idx])
        return out.features.float().cpu(), out.mask.cpu(), self.labels[idx]


def input_digest(inputs: list) -> str:
    """A fingerprint of the inputs: texts, file paths (with each file's size and time), arrays' bytes, and the
    fields of dataclasses such as prepared clips."""
    digest = hashlib.sha256()

    def feed(value) -> None:
        if isinstance(value, np.ndarray):
            digest.update(f"{value.dtype}{value.shape}".encode() + value.tobytes())
        elif dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                feed(getattr(value, field.name))
        elif isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
            stat = os.stat(value)
            digest.update(f"{value}|{stat.st_size}|{stat.st_mtime_ns}".encode())
        else:
            digest.update(repr(value).encode())
        digest.update(b"\0")

    for item in inputs:
        feed(item)
    return digest.hexdigest()


def cache_key(inputs: list, encoder_spec: dict) -> str:
    """The name of a cache directory: what was encoded, and by which encoder with which settings."""
    return hashlib.sha256((input_digest(inputs) + json.dumps(encoder_spec, sort_keys=True)).encode()).hexdigest()[:24]


def encode_to_disk(encoder, inputs: list, labels: list[int], directory: Path, batch_size: int = 64,
                   order: list[int] | None = None, shard_items: int = SHARD_ITEMS) -> DiskFeatureCache:
    """Every input through the frozen encoder once, into shards under directory (its name should be cache_key's);
    shards already complete there are kept, not encoded again. order: the encoding order (similar lengths
    together pad less); shards are consecutive runs of it. In a group of processes (daam.distributed) process r
    encodes the shards r, r + world, ...; all wait for every shard, then each reads them all."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"could not make the feature cache's directory {directory}: {error.strerror or error}. Pass "
                        "--cache-dir with a writable place, or --no-cache") from error
    processes = distributed.current()
    order = list(range(len(inputs))) if order is None else list(order)
    runs = [order[s:s + shard_items] for s in range(0, len(order), shard_items)]
    mine = list(range(processes.rank, len(runs), processes.world))
    with ShardWriter(directory) as writer:
        for number in tqdm(mine, desc="encoding to disk", unit="shard", disable=not processes.main):
            index = directory / f"shard-{number:05d}.json"
            if not index.exists():
                _write_shard(encoder, [inputs[i] for i in runs[number]], runs[number],
                             directory / f"shard-{number:05d}.f16", index, batch_size, processes.rank, writer)
    distributed.barrier()
    shards, row_shape = [], None
    for number, items in enumerate(runs):
        shard = json.loads((directory / f"shard-{number:05d}.json").read_text())
        if shard["items"] != items:
            raise RuntimeError(f"{directory / f'shard-{number:05d}.json'} holds other items than this run's: delete "
                               f"{directory} and run again")
        shards.append(shard)
        row_shape = row_shape or tuple(shard["row_shape"])
    return DiskFeatureCache(directory, torch.tensor(labels), encoder.position_axis, row_shape or (), shards)


class ShardWriter:
    """The disk's side of encoding (copying rows into the shard's file, fsync, the index) on a thread of its own, in
    the order given, so that it overlaps the encoder's next batches instead of adding to them: the thread waits on
    the disk with the GIL released. At most `depth` writes wait, holding their batches in memory. A failed write
    (a full disk) is raised, as a DataError, by the next call from the encoding side or on leaving the `with`,
    which first finishes what was given: a shard whose rows were all given is committed even if encoding failed.
    After a failed write nothing more runs, so no shard is committed over rows with a batch missing."""

    def __init__(self, directory: Path, depth: int = 8) -> None:
        self.directory, self.depth, self.pending, self.rows = directory, depth, collections.deque(), None
        self.thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="daam-shard-writer")
        self.failed = False  # once a write fails, nothing after it runs: no index over rows with a batch missing

    def open(self, rows_path: Path) -> None:
        self._submit(self._open, rows_path)

    def write(self, buffer: memoryview) -> None:
        self._submit(self._write, buffer)

    def commit(self, index: Path, summary: dict) -> None:
        self._submit(self._commit, index, summary)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.thread.shutdown(wait=True)
        if self.rows is not None:
            self.rows.close()  # the rows of a shard left uncommitted: no index, so encoded again on the next run
        while self.pending:
            future = self.pending.popleft()
            if kind is None:
                self._settle(future)

    def _submit(self, job, *args) -> None:
        self.pending.append(self.thread.submit(self._run, job, *args))
        while self.pending and (len(self.pending) > self.depth or self.pending[0].done()):
            self._settle(self.pending.popleft())

    def _settle(self, future: concurrent.futures.Future) -> None:
        try:
            future.result()
        except OSError as error:
            raise DataError(f"could not write the feature cache in {self.directory}: {error.strerror or error}. "
                            "The shards already complete there are kept: free some space (or pass --cache-dir on "
                            "another disk, or --no-cache to run the encoder each epoch instead) and run again to "
                            "resume.") from error

    # On the writer's thread:
    def _run(self, job, *args) -> None:
        if self.failed:
            return
        try:
            job(*args)
        except BaseException:
            self.failed = True
            raise

    def _open(self, rows_path: Path) -> None:
        self.rows = open(rows_path, "wb")

    def _write(self, buffer: memoryview) -> None:
        self.rows.write(buffer)

    def _commit(self, index: Path, summary: dict) -> None:
        """Once a shard's rows are on disk, its index: written aside, then renamed into place."""
        rows, self.rows = self.rows, None
        with rows:
            rows.flush()
            os.fsync(rows.fileno())
        partial = index.with_suffix(".json.partial")
        partial.write_text(json.dumps(summary))
        os.replace(partial, index)


def _write_shard(encoder, inputs: list, items: list[int], rows_path: Path, index: Path, batch_size: int,
                 rank: int, writer: ShardWriter) -> None:
    """One shard: its rows streamed to disk a batch at a time, then its index, by a rename: the shard's commit.
    The encoder runs here; the writes, in this order, on the writer's thread."""
    lengths, truncated, row_shape = [], 0, None
    writer.open(rows_path)
    for packed, batch_lengths, batch_truncated in encoded_rows(encoder, inputs, batch_size):
        writer.write(packed.numpy().data)  # contiguous: one write per batch, without a copy
        lengths += batch_lengths
        row_shape, truncated = tuple(packed.shape[1:]), truncated + sum(batch_truncated)
    writer.commit(index, {"items": items, "lengths": lengths, "row_shape": list(row_shape), "truncated": truncated,
                          "encoded_by": rank})


def encoded_rows(encoder, inputs: list, batch_size: int) -> Iterator[tuple[torch.Tensor, list[int], list[bool]]]:
    """Per batch of batch_size inputs (in the inputs' order): their features in float16 on the CPU over their real
    positions only, one input's after another, (sum of lengths, ...); each input's number of real positions; and
    whether the encoder truncated it. Packed a batch at a time: one copy and one write per batch, not per input."""
    for start in range(0, len(inputs), batch_size):
        out = encoder(inputs[start:start + batch_size])
        mask = out.mask.to(out.features.device)
        packed = out.features.movedim(encoder.position_axis, 1)[mask].to("cpu", torch.float16)  # (real positions, ...)
        yield packed, out.mask.sum(1).tolist(), ["truncated" in note for note in out.truncation_notes]


def encoding_order(inputs: list, sort_key=None) -> list[int]:
    """The order to encode inputs in: by sort_key (similar lengths together pad less), else as they come."""
    return sorted(range(len(inputs)), key=lambda i: sort_key(inputs[i])) if sort_key else list(range(len(inputs)))


def encode_all(encoder, inputs: list, labels: list[int], batch_size: int = 64, sort_key=None) -> FeatureCache:
    """Every input through the frozen encoder once, in memory (small sets: a run's held-out ones)."""
    order = encoding_order(inputs, sort_key)
    items: list[torch.Tensor | None] = [None] * len(inputs)
    truncated, done = 0, 0
    with tqdm(total=len(order), desc="encoding (once)", unit="input") as progress:
        for packed, lengths, batch_truncated in encoded_rows(encoder, [inputs[i] for i in order], batch_size):
            for i, features in zip(order[done:done + len(lengths)], packed.split(lengths)):
                items[i] = features.clone()  # a copy: not a view of the whole batch
            done, truncated = done + len(lengths), truncated + sum(batch_truncated)
            progress.update(len(lengths))
    return FeatureCache(items, torch.tensor(labels), encoder.position_axis, truncated)


def features_for(task, encoder, config, args, batch_size: int = 64):
    """A run's features: on disk under --cache-dir, in a directory named by the inputs and the encoder (a later run
    on the same data reuses it; a killed one resumes it), or with --no-cache none (the encoder runs for every batch).
    An encoder that can compile itself for bulk work does so when there are enough inputs for it to pay off. In a
    group of processes each encodes its share of the shards (encode_to_disk) on its own device."""
    encoder.to(distributed.current().device)
    if getattr(args, "no_cache", False):
        return StreamingFeatures(encoder, task.inputs, torch.tensor(task.targets), task.sort_key)
    if len(task.inputs) >= BULK_COMPILE_FROM and hasattr(encoder, "compile_for_bulk"):
        encoder.compile_for_bulk(batch_size)
    inputs = task.inputs
    key = cache_key(inputs, {"encoder": config.encoder, "preprocessing": config.preprocessing})
    return encode_to_disk(encoder, inputs, task.targets, feature_cache_root(args) / key, batch_size,
                          encoding_order(inputs, task.sort_key),
                          getattr(args, "shard_items", None) or SHARD_ITEMS)


def feature_cache_root(args) -> Path:
    """--cache-dir, else $DAAM_FEATURE_CACHE, else ~/.cache/daam-lens/features."""
    default = os.environ.get("DAAM_FEATURE_CACHE") or Path.home() / ".cache" / "daam-lens" / "features"
    return Path(getattr(args, "cache_dir", None) or default).expanduser()
