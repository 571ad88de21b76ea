"""Speed and memory of the DAAM core, measured side by side in one run.

    python benchmarks/bench_core.py            # prints a table of ratios
On x of shape (8, 512, 768), norm_axis 1, 8 heads, 4 densities, 2 CPU threads.
Peak memory is measured in a fresh subprocess per variant: RSS sampled every 0.5 ms
during one fwd+bwd, peak minus RSS before it, after a small warm-up run has paged in the kernels."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from daam import MultiHeadDensityAdaptiveAttention  # noqa: E402
from loop_reference import loop_density_attention  # noqa: E402
from timing import median_seconds  # noqa: E402

SHAPE, HEADS, DENSITIES = (8, 512, 768), 8, 4


def make_variant(name: str, mode: str):
    """A callable x -> y for one variant; parameters require grad."""
    daam = MultiHeadDensityAdaptiveAttention(1, HEADS, DENSITIES, mode=mode)
    if name == "ours":
        return daam
    if name == "loop":
        return lambda x: loop_density_attention(x, 1, daam.mean_offsets, daam.scales, daam.mixture_weights, mode, daam.eps)
    if name == "mha":
        mha = nn.MultiheadAttention(SHAPE[-1], HEADS, batch_first=True)
        return lambda x: mha(x, x, x, need_weights=False)[0]
    if name == "floor":
        return lambda x: x * 2
    raise ValueError(name)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-of", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        return peak_memory_child(*args.memory_of)

    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(*SHAPE, requires_grad=True)
    print(f"x {SHAPE}, norm_axis 1, {HEADS} heads, {DENSITIES} densities, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    mha_t = median_seconds(fwd_bwd(make_variant("mha", "mixture"), x), args.repeats)
    floor_t = median_seconds(forward_only(make_variant("floor", "mixture"), x), args.repeats)
    rows = []
    for mode in ("mixture", "product"):
        ours, loop = make_variant("ours", mode), make_variant("loop", mode)
        ours_t, loop_t = median_seconds(fwd_bwd(ours, x), args.repeats), median_seconds(fwd_bwd(loop, x), args.repeats)
        ours_fwd = median_seconds(forward_only(ours, x), args.repeats)
        mem_ours, mem_loop = peak_memory("ours", mode), peak_memory("loop", mode)
        rows += [
            (mode, "fwd+bwd ms: ours / loop", f"{ours_t*1e3:.0f} / {loop_t*1e3:.0f}", f"loop is {loop_t/ours_t:.1f}x slower", "goal >= 3x"),
            (mode, "fwd+bwd ms: ours / MultiheadAttention", f"{ours_t*1e3:.0f} / {mha_t*1e3:.0f}", f"MHA is {mha_t/ours_t:.1f}x slower", "goal >= 10x"),
            (mode, "forward ms: ours / x*2", f"{ours_fwd*1e3:.1f} / {floor_t*1e3:.2f}", f"ours is {ours_fwd/floor_t:.0f}x the floor", "goal <= 6x"),
            (mode, "peak MiB fwd+bwd: ours / loop", f"{mem_ours:.0f} / {mem_loop:.0f}", f"ratio {mem_ours/max(mem_loop, 1e-9):.2f}", ""),
        ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
