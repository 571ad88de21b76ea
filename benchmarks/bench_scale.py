"""Scale, side by side in one run, with a tiny local encoder (a 2-layer, 32-wide random BERT) so that it is quick:

    python benchmarks/bench_scale.py [--small 10000] [--large 100000] [--processes 2]

- peak RSS of `python -m daam.train` on `--small` and on `--large` generated sentences (features on disk: the
  ratio should stay near 1; goal <= 1.2);
- encoding throughput into the disk cache against the bare encoder's own forward pass on the same batches in the
  same order, in seven interleaved rounds, each going first in turn (goal >= 0.9);
- one process against `--processes` under `torchrun --nproc_per_node N` (on a GPU machine, N = its GPUs: one process
  each) on the small set, 4 epochs, 8 shards: items per second of the whole run, the items each process encoded,
  and each run's DAAM test accuracy;
- `daam.explain_dataset` on the small set with the one-process checkpoint, and on the shipped text checkpoint's
  test sentences: items per second against the bare encoder's (goal >= 0.8, at a real encoder's cost).
The sentences are random words from a small vocabulary; the label says whether a "good" word outnumbers a "bad" one."""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOOD, BAD = ["good", "great", "fine", "lovely"], ["bad", "awful", "dull", "poor"]
FILLER = [f"w{i}" for i in range(200)]
PEAK_RSS = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
            "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_sentences(path: Path, count: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(count):
            words = rng.choices(FILLER, k=rng.randint(6, 14)) + rng.choices(GOOD if i % 2 else BAD, k=2)
            rng.shuffle(words)
            writer.writerow([" ".join(words), "positive" if i % 2 else "negative"])
    return path


def tiny_bert(directory: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *GOOD, *BAD, *FILLER])}
    BertTokenizerFast(vocab=vocab).save_pretrained(directory)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(directory)
    return directory


def train_command(data: Path, encoder: Path, out: Path, *options: str, processes: int = 1) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    return [sys.executable, *launcher, "-m", "daam.train", "--data", str(data), "--encoder", str(encoder),
            "--out", str(out), "--seeds", "1", *options]


def peak_rss_mb(command: list[str], env: dict) -> float:
    done = subprocess.run([sys.executable, "-c", PEAK_RSS, *command], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True)
    return int(done.stdout) / 1024


def bare_throughput(encoder, texts: list[str]) -> float:
    """Items per second of the encoder's own forward pass over texts in batches of 64, in their order."""
    import torch

    encoder(texts[:64])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(texts), 64):
        encoder(texts[start:start + 64])
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # a GPU's work is queued: done only once it has run
    return len(texts) / (time.perf_counter() - started)


def encoding_ratio(texts: list[str], encoder_dir: Path, cache: Path, rounds: int = 7) -> list[tuple[float, float]]:
    """Per round, items per second encoding into a fresh disk cache, and of the bare encoder on the same batches in
    the same order, measured one after the other: rounds interleaved, since the tiny encoder takes about a second
    over the items and the machine's speed drifts by more than the difference between the two; and which goes
    first alternates, so that a drift (or the disk still flushing the last round's cache) favours neither."""
    import torch

    from daam.features import encode_to_disk
    from daam.modalities.text import TextEncoder

    torch.set_num_threads(2)
    encoder = TextEncoder(path=str(encoder_dir), max_length=64).to("cuda" if torch.cuda.is_available() else "cpu")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] for i in order]

    def into_cache(round_: int) -> float:
        started = time.perf_counter()
        encode_to_disk(encoder, texts, [0] * len(texts), cache / f"round-{round_}", batch_size=64, order=order)
        return len(texts) / (time.perf_counter() - started)

    os.sync()  # what the steps before wrote (their caches, checkpoints) is flushed now, not during these rounds
    bare_throughput(encoder, ordered)  # warm-up
    out = []
    for round_ in range(rounds):
        if round_ % 2 == 0:
            bare = bare_throughput(encoder, ordered)
            out.append((into_cache(round_), bare))
        else:
            disk = into_cache(round_)
            out.append((disk, bare_throughput(encoder, ordered)))
    return out


def shipped_text_ratio(tmp: Path) -> tuple[float, float]:
    """explain_dataset's items per second on the shipped text checkpoint's test sentences (read from its dataset
    Parquet, so no dataset need be installed), and its encoder's own on the same sentences in batches of 64 of
    similar lengths, as explain_dataset batches them. A tiny encoder leaves DAAM's own work as most of the time;
    this is the ratio at a real encoder's cost."""
    import pyarrow.parquet as pq
    import torch

    from daam.explain_dataset import explain_dataset
    from daam.model import load_pretrained

    checkpoint = ROOT / "checkpoints" / "text"
    table = pq.read_table(checkpoint / "dataset", columns=["input", "label"]).to_pylist()
    data = tmp / "shipped-text.csv"
    with open(data, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows((row["input"], row["label"]) for row in table)
    torch.set_num_threads(2)
    bare = bare_throughput(load_pretrained(checkpoint).encoder, sorted((row["input"] for row in table), key=len))
    started = time.perf_counter()
    explain_dataset(checkpoint, str(data), tmp / "shipped-explained", trust=False)
    return len(table) / (time.perf_counter() - started), bare


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=2,
                        help="the processes run against one (on a GPU machine: its GPUs, one process each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="daam-scale-") as tmp:
        tmp = Path(tmp)
        encoder = tiny_bert(tmp / "bert")
        env = dict(os.environ, DAAM_FEATURE_CACHE=str(tmp / "features"), HF_HUB_OFFLINE="1")
        rss = {}
        for count in (args.small, args.large):
            data = write_sentences(tmp / f"sentences-{count}.csv", count)
            rss[count] = peak_rss_mb(train_command(data, encoder, tmp / f"ckpt-{count}", "--epochs", "1"), env)
        print(f"peak RSS of daam.train: {args.small:,} items {rss[args.small]:.0f} MB, {args.large:,} items "
              f"{rss[args.large]:.0f} MB: {rss[args.large] / rss[args.small]:.2f}x   (goal <= 1.2)")

        texts = [row[0] for row in list(csv.reader(open(tmp / f"sentences-{args.small}.csv")))[1:]]
        rounds = encoding_ratio(texts, encoder, tmp / "encoding")
        ratios = sorted(disk / bare for disk, bare in rounds)
        disk, bare = rounds[-1]
        print(f"encoding {args.small:,} items: into the disk cache {disk:.0f} items/s, the bare encoder {bare:.0f} "
              f"items/s (the last of {len(rounds)} interleaved rounds); ratio per round "
              f"{', '.join(f'{r:.2f}' for r in ratios)}, median {ratios[len(ratios) // 2]:.2f}x   (goal >= 0.9)")

        data = tmp / f"sentences-{args.small}.csv"
        seconds = {}
        for processes in sorted({1, args.processes}):
            cache = tmp / f"features-{processes}"
            started = time.perf_counter()
            command = train_command(data, encoder, tmp / f"procs-{processes}", "--epochs", "4", "--shard-items",
                                    str(-(-args.small // 8)), processes=processes)
            subprocess.run(command, cwd=ROOT,
                           env=env | {"DAAM_FEATURE_CACHE": str(cache)}, capture_output=True, check=True)
            seconds[processes] = time.perf_counter() - started
            shards = [json.loads(p.read_text()) for p in cache.rglob("shard-*.json")]
            per_rank = {r: sum(len(s["items"]) for s in shards if s["encoded_by"] == r) for r in range(processes)}
            accuracy = json.loads((tmp / f"procs-{processes}" / "metrics.json").read_text())["results"]["daam"]
            print(f"{processes} process{'es' if processes > 1 else ''}: {args.small / seconds[processes]:.0f} items/s "
                  f"over the whole run ({seconds[processes]:.0f} s), items encoded per process {per_rank}, "
                  f"DAAM test accuracy {accuracy['test_accuracy']['mean']:.4f}")
        if args.processes > 1:
            print(f"{args.processes} processes / 1: {seconds[1] / seconds[args.processes]:.2f}x the items per second "
                  f"({os.cpu_count()} cores, {gpu_count()} GPUs here)")

        from daam.explain_dataset import explain_dataset

        started = time.perf_counter()
        explain_dataset(tmp / "procs-1", None, tmp / "explained", trust=False)  # as before the trust measures
        explained = args.small / (time.perf_counter() - started)
        print(f"explain_dataset, tiny encoder: {explained:.0f} items/s (Parquet rows, relevance and gates included, "
              f"without the trust measures), the bare encoder {bare:.0f} items/s: {explained / bare:.2f}x")
        explained, bare = shipped_text_ratio(tmp)
        print(f"explain_dataset, the shipped text checkpoint (MiniLM) on its test sentences: {explained:.0f} items/s, "
              f"the bare encoder {bare:.0f} items/s: {explained / bare:.2f}x   (goal >= 0.8)")


if __name__ == "__main__":
    main()
