"""Where a run keeps its features: in memory, on disk in shards (resumable), or nowhere (streamed)."""

import json

import pytest
import torch

from daam.encoders import Encoded
from daam.errors import DataError
from daam.features import FeatureCache, StreamingFeatures, cache_key, encode_to_disk, input_digest


class RaggedEncoder(torch.nn.Module):
    """Item i (an int) -> i % 7 + 1 positions of (layers 2, dim 3) values that name it; counts what it encoded."""

    position_axis = 2

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.encoded, self.fail_after = [], fail_after

    def forward(self, items: list) -> Encoded:
        if self.fail_after is not None and len(self.encoded) >= self.fail_after:
            raise KeyboardInterrupt  # the run is killed here
        self.encoded += items
        lengths = [i % 7 + 1 for i in items]
        features = torch.zeros(len(items), 2, max(lengths), 3)
        for row, (item, n) in enumerate(zip(items, lengths)):
            features[row, :, :n] = item + torch.arange(n * 6, dtype=torch.float32).reshape(2, n, 3) / 8
        mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]
        notes = ["the input was truncated" if item % 10 == 0 else "" for item in items]
        return Encoded(features, mask, [[""] * n for n in lengths], notes)


def in_memory(items: list, labels: list) -> FeatureCache:
    out = RaggedEncoder()(items)
    rows = [out.features[r, :, : int(out.mask[r].sum())].movedim(1, 0).to(torch.float16) for r in range(len(items))]
    return FeatureCache(rows, torch.tensor(labels), position_axis=2)


def test_disk_shards_give_the_in_memory_batches_and_count_truncation(tmp_path):
    items, labels = list(range(50)), [i % 3 for i in range(50)]
    order = sorted(range(50), key=lambda i: i % 7)
    disk = encode_to_disk(RaggedEncoder(), items, labels, tmp_path / "cache", batch_size=8, order=order, shard_items=16)
    memory = in_memory(items, labels)
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.json")) == [f"shard-0000{k}.json" for k in range(4)]
    assert disk.truncated == 5 and [disk.length(i) for i in items] == [memory.length(i) for i in items]
    for idx in ([0, 1, 2], [49, 7, 13, 30], list(range(50))):
        for got, expected in zip(disk.batch(idx), memory.batch(idx)):
            assert torch.equal(got, expected)


def test_a_killed_run_resumes_from_its_last_complete_shard(tmp_path):
    items, labels = list(range(40)), [0, 1] * 20
    with pytest.raises(KeyboardInterrupt):
        encode_to_disk(RaggedEncoder(fail_after=20), items, labels, tmp_path, batch_size=4, shard_items=16)
    assert [p.name for p in sorted(tmp_path.glob("*.json"))] == ["shard-00000.json"]  # the second never committed
    again = RaggedEncoder()
    disk = encode_to_disk(again, items, labels, tmp_path, batch_size=4, shard_items=16)
    assert again.encoded == list(range(16, 40))  # every item encoded exactly once over both runs
    for got, expected in zip(disk.batch(items), in_memory(items, labels).batch(items)):
        assert torch.equal(got, expected)
    (tmp_path / "shard-00001.json").write_text(json.dumps({"items": [99], "lengths": [1], "row_shape": [2, 3],
                                                            "truncated": 0}))
    with pytest.raises(RuntimeError, match="other items"):
        encode_to_disk(RaggedEncoder(), items, labels, tmp_path, batch_size=4, shard_items=16)


def test_a_full_disk_is_said_and_the_rerun_resumes(tmp_path, monkeypatch):
    import errno
    import threading

    import daam.features

    items, labels = list(range(48)), [0, 1] * 24
    synced = []

    def fsync_until_full(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(daam.features.os, "fsync", fsync_until_full)
    with pytest.raises(DataError, match="No space left on device.*kept.*run again to resume"):
        encode_to_disk(RaggedEncoder(), items, labels, tmp_path / "cache", batch_size=4, shard_items=16)
    committed = sorted(p.name for p in (tmp_path / "cache").glob("*.json"))
    assert "shard-00000.json" in committed and "shard-00001.json" not in committed
    monkeypatch.undo()
    again = RaggedEncoder()
    disk = encode_to_disk(again, items, labels, tmp_path / "cache", batch_size=4, shard_items=16)
    done_before = [i for name in committed for i in json.loads((tmp_path / "cache" / name).read_text())["items"]]
    assert sorted(again.encoded + done_before) == items  # every item once over both runs
    for got, expected in zip(disk.batch(items), in_memory(items, labels).batch(items)):
        assert torch.equal(got, expected)
    # A write that fails once, the disk then freed, after its shard's commit was asked for: that shard, and every
    # one after, stay uncommitted.
    writes, commit_asked, commit = [], threading.Event(), daam.features.ShardWriter.commit

    def write_failing_once(self, buffer) -> None:
        writes.append(len(buffer))
        if len(writes) == 6:  # the second batch of the second shard
            commit_asked.wait(timeout=10)
            raise OSError(errno.ENOSPC, "No space left on device")
        self.rows.write(buffer)

    def asking(self, index, summary) -> None:
        commit(self, index, summary)
        commit_asked.set()

    monkeypatch.setattr(daam.features.ShardWriter, "_write", write_failing_once)
    monkeypatch.setattr(daam.features.ShardWriter, "commit", asking)
    with pytest.raises(DataError, match="No space left"):
        encode_to_disk(RaggedEncoder(), items, labels, tmp_path / "flaky", batch_size=4, shard_items=16)
    assert sorted(p.name for p in (tmp_path / "flaky").glob("*.json")) == ["shard-00000.json"]  # batches 1-4
    monkeypatch.undo()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match="could not make the feature cache's directory"):
        encode_to_disk(RaggedEncoder(), items, labels, tmp_path / "a-file" / "cache")


def test_the_cache_key_changes_with_the_inputs_and_the_encoder(tmp_path):
    import numpy as np

    spec = {"encoder": {"name": "e"}, "preprocessing": {"max_length": 64}}
    assert cache_key(["a", "b"], spec) == cache_key(["a", "b"], spec)
    assert cache_key(["a", "b"], spec) != cache_key(["a", "c"], spec)
    assert cache_key(["a", "b"], spec) != cache_key(["a", "b"], spec | {"preprocessing": {"max_length": 32}})
    picture = np.zeros((4, 4), np.uint8)
    changed = picture.copy()
    changed[0, 0] = 1
    assert input_digest([picture]) != input_digest([changed])
    clip = tmp_path / "a.wav"
    clip.write_bytes(b"1")
    before = input_digest([str(clip)])
    clip.write_bytes(b"12")
    assert input_digest([str(clip)]) != before  # a file that changed is encoded again


def test_streaming_runs_the_encoder_for_each_batch():
    encoder = RaggedEncoder()
    stream = StreamingFeatures(encoder, list(range(10)), torch.arange(10), sort_key=lambda i: i % 7)
    features, mask, labels = stream.batch([3, 4])
    expected = in_memory(list(range(10)), list(range(10))).batch([3, 4])
    assert torch.equal(features, expected[0]) and torch.equal(mask, expected[1]) and labels.tolist() == [3, 4]
    assert encoder.encoded == [3, 4] and stream.length(9) == 2
