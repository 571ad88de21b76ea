"""Speed and memory of the DAAM core, measured side by side in one run.

    python benchmarks/bench_core.py                 # prints a table of ratios (CPU, 2 threads)
    python benchmarks/bench_core.py --device cuda   # the same variants on a GPU
On x of shape (8, 512, 768), norm_axis 1, 8 heads, 4 densities, 2 CPU threads. Variants: the eager default,
fused=True (daam/fused.py), a per-head, per-density loop written from the equations, nn.MultiheadAttention,
and one torch.exp(x, out=buf) pass as the floor. Times are medians over rounds that run every variant once, in
turn, so that drift in the machine hits all of them alike. Peak memory is measured in a fresh subprocess per
variant: RSS sampled every 0.5 ms during one fwd+bwd, peak minus RSS before it, after a small warm-up run has
paged in the kernels. The fused kernel's one-off build is timed in a fresh subprocess with an empty cache, and
its load from the cache beside it. On CUDA, fused=True is the forward through torch.compile (Triton): its first call
(the compile) is timed instead of the C build, times are taken after torch.cuda.synchronize(), and peak memory is
torch.cuda.max_memory_allocated over one fwd+bwd, minus what was allocated before it."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from daam import MultiHeadDensityAdaptiveAttention  # noqa: E402
from loop_reference import loop_density_attention  # noqa: E402

SHAPE, HEADS, DENSITIES = (8, 512, 768), 8, 4


def make_variant(name: str, mode: str, device: str = "cpu"):
    """A callable x -> y for one variant; parameters require grad."""
    daam = MultiHeadDensityAdaptiveAttention(1, HEADS, DENSITIES, mode=mode, fused=name == "fused").to(device)
    if name in ("eager", "fused"):
        return daam
    if name == "loop":
        return lambda x: loop_density_attention(x, 1, daam.mean_offsets, daam.scales, daam.mixture_weights, mode, daam.eps)
    if name == "mha":
        mha = nn.MultiheadAttention(SHAPE[-1], HEADS, batch_first=True).to(device)
        return lambda x: mha(x, x, x, need_weights=False)[0]
    raise ValueError(name)


def synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved_medians(runs: dict, rounds: int, device: str = "cpu") -> dict:
    """Median seconds of each callable, over `rounds` rounds that call every one once, after one warm-up round."""
    samples = {name: [] for name in runs}
    for round_ in range(rounds + 1):
        for name, run in runs.items():
            synchronise(device)
            start = time.perf_counter()
            run()
            synchronise(device)
            if round_:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def fwd_bwd(fn, x):
    def run():
        x.grad = None
        fn(x).sum().backward()
    return run


def forward_only(fn, x):
    def run():
        with torch.no_grad():
            fn(x)
    return run


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_memory_child(name: str, mode: str) -> None:
    torch.set_num_threads(2)
    x = torch.randn(*SHAPE, requires_grad=True)
    fn = make_variant(name, mode)
    fn(torch.randn(2, SHAPE[1], SHAPE[2], requires_grad=True)).sum().backward()  # page in the kernels first
    before, peak, done = rss_bytes(), [0], threading.Event()

    def sample():  # ru_maxrss would include import-time peaks, so sample RSS while it runs
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    fn(x).sum().backward()
    done.set()
    sampler.join()
    print(max(peak[0] - before, 0))


def peak_memory(name: str, mode: str) -> float:
    out = subprocess.run([sys.executable, __file__, "--memory-of", name, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 2**20


def kernel_build_seconds() -> tuple[float, float]:
    """(cold build, load from cache) of the fused kernel, each in a fresh process with its own empty cache."""
    code = "import time, daam.fused as f; t = time.perf_counter(); f.cpu_kernel(); print(time.perf_counter() - t)"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "DAAM_CACHE": cache}
        cold, warm = (float(subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                                           text=True, check=True).stdout) for _ in range(2))
    return cold, warm


def timed_runs(variants: dict, mha, x: torch.Tensor, buf: torch.Tensor) -> dict:
    """What each table times: every variant's fwd+bwd and forward (the loop: fwd+bwd only), MultiheadAttention's
    fwd+bwd and one exp pass, the floor."""
    runs = {f"{name} fwd+bwd": fwd_bwd(fn, x) for name, fn in variants.items()}
    runs |= {f"{name} fwd": forward_only(fn, x) for name, fn in variants.items() if name != "loop"}
    return runs | {"mha fwd+bwd": fwd_bwd(mha, x), "exp floor": forward_only(lambda t: torch.exp(t, out=buf), x)}


def variant_rows(mode: str, name: str, t: dict, memory: dict, goals: tuple[str, ...], places: int) -> list[tuple]:
    """A variant's rows of the table: fwd+bwd against the loop and against MultiheadAttention, forward against the
    exp floor, peak memory against the loop; times in ms to `places` decimals (the floor's to one more)."""
    ms, loop, mha, floor, fwd = (t[key] * 1e3 for key in (f"{name} fwd+bwd", "loop fwd+bwd", "mha fwd+bwd",
                                                            "exp floor", f"{name} fwd"))
    return [
        (mode, f"fwd+bwd ms: {name} / loop", f"{ms:.{places}f} / {loop:.{places}f}", f"{name} is {loop/ms:.1f}x faster",
         goals[0]),
        (mode, f"fwd+bwd ms: {name} / MultiheadAttention", f"{ms:.{places}f} / {mha:.{places}f}",
         f"{name} is {mha/ms:.1f}x faster", goals[1]),
        (mode, f"forward ms: {name} / exp(x, out=buf)", f"{fwd:.{places + 1}f} / {floor:.{places + 1}f}",
         f"{fwd/floor:.1f}x the floor", goals[2]),
        (mode, f"peak MiB fwd+bwd: {name} / loop", f"{memory[name]:.0f} / {memory['loop']:.0f}",
         f"ratio {memory[name]/max(memory['loop'], 1e-9):.2f}", goals[3]),
    ]


def cuda_peak_memory(fn, x) -> float:
    """MiB allocated at the peak of one fwd+bwd on the GPU, beyond what was allocated before it."""
    x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn(x).sum().backward()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def main_cuda(rounds: int) -> None:
    """The CPU table's variants on the GPU: eager, fused (torch.compile), the loop and nn.MultiheadAttention."""
    torch.manual_seed(0)
    x = torch.randn(*SHAPE, device="cuda", requires_grad=True)
    buf = torch.empty(SHAPE, device="cuda")
    print(f"x {SHAPE} on {torch.cuda.get_device_name()}, norm_axis 1, {HEADS} heads, {DENSITIES} densities, "
          f"torch {torch.__version__}, medians of {rounds} interleaved rounds")
    rows = []
    mha = make_variant("mha", "mixture", "cuda")
    for mode in ("mixture", "product"):
        variants = {name: make_variant(name, mode, "cuda") for name in ("eager", "fused", "loop")}
        start = time.perf_counter()
        fwd_bwd(variants["fused"], x)()  # the first call compiles
        synchronise("cuda")
        compile_s = time.perf_counter() - start
        t = interleaved_medians(timed_runs(variants, mha, x, buf), rounds, "cuda")
        memory = {name: cuda_peak_memory(fn, x) for name, fn in variants.items()}
        rows.append((mode, "fused: first call (torch.compile)", f"{compile_s:.1f} s", "", ""))
        for name in ("eager", "fused"):
            rows += variant_rows(mode, name, t, memory, ("",) * 4, places=2)
    print_rows(rows)


def print_rows(rows: list[tuple]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--memory-of", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        return peak_memory_child(*args.memory_of)
    if args.device == "cuda":
        return main_cuda(args.rounds)

    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(*SHAPE, requires_grad=True)
    buf = torch.empty(SHAPE)
    cold, warm = kernel_build_seconds()
    print(f"x {SHAPE}, norm_axis 1, {HEADS} heads, {DENSITIES} densities, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, medians of {args.rounds} interleaved rounds")
    print(f"fused kernel: first build {cold:.2f} s (once per machine), load from its cache {warm * 1e3:.0f} ms")
    rows = []
    mha = make_variant("mha", "mixture")
    for mode in ("mixture", "product"):
        variants = {name: make_variant(name, mode) for name in ("eager", "fused", "loop")}
        t = interleaved_medians(timed_runs(variants, mha, x, buf), args.rounds)
        memory = {name: peak_memory(name, mode) for name in ("eager", "fused", "loop")}
        for name, goals in (("eager", ("goal >= 1.5x", "", "", "goal <= 1")),
                            ("fused", ("goal >= 3x", "goal >= 10x", "goal <= 3x", "goal <= 1"))):
            rows += variant_rows(mode, name, t, memory, goals, places=1)
    print_rows(rows)


if __name__ == "__main__":
    main()
