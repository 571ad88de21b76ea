"""The fused fast path (`fused=True`): one kernel for statistics, gate and product, forward and backward.

On the CPU it is daam/fused_gate.c, compiled once per machine with the system's C compiler and cached by the
hash of the source, the compiler and the CPU (under $DAAM_CACHE, default ~/.cache/daam-lens); loading a cached
build takes milliseconds, so nothing is compiled when the app starts once a machine has it. Elsewhere (CUDA) the
module's forward goes through torch.compile, which emits Triton kernels. Where neither works (no C compiler, no
Triton) the module warns once and runs its eager path. float64 inputs always run eager: the kernel is float32.

The fused backward is for training: it is not itself differentiable, and a backward with create_graph=True raises
DOUBLE_BACKWARD's message rather than return a gradient whose own derivative would be wrong."""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Callable

import torch

SOURCE = Path(__file__).with_name("fused_gate.c")
_library: ctypes.CDLL | None = None
_unavailable: str | None = None  # why the kernel cannot be used, once that is known
_warned = False


def cache_dir() -> Path:
    return Path(os.environ.get("DAAM_CACHE", Path.home() / ".cache" / "daam-lens")) / "kernels"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


def _build_key(compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else platform.processor()
    flags = next((line for line in cpu.splitlines() if line.startswith("flags")), cpu)  # -march=native depends on it
    return hashlib.sha256(SOURCE.read_bytes() + version.encode() + flags.encode()).hexdigest()[:16]


def _load() -> ctypes.CDLL:
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler found (set CC, or install gcc)")
    path = cache_dir() / f"fused_gate-{_build_key(compiler)}.so"
    if not path.exists():  # the one compile a machine pays (about a second)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        command = [compiler, "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-std=gnu11", "-fopenmp", "-shared", "-fPIC", str(SOURCE), "-o", str(partial)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCE.name} failed: {done.stderr.strip()[:500]}")
        os.replace(partial, path)  # atomic: a concurrent process sees the whole library or none
    lib = ctypes.CDLL(str(path))
    ptr, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    lib.daam_fused_forward.argtypes = [ptr, ptr, i64, i64, i64, ptr, i64, ptr, ptr, i64, i64, i64, ptr, f32,
                                       ptr, ptr, ptr, ptr, ptr, i32]
    lib.daam_fused_backward.argtypes = [ptr, ptr, ptr, i64, i64, i64, ptr, i64, ptr, ptr, i64, i64, i64, ptr,
                                        ptr, ptr, ptr, ptr, i32]
    return lib


def _fall_back(reason: str) -> None:
    global _warned
    if not _warned:
        warnings.warn(f"daam: fused=True runs the eager path: {reason}", RuntimeWarning, stacklevel=3)
        _warned = True


def _built() -> ctypes.CDLL | None:
    global _library, _unavailable
    if _library is None and _unavailable is None:
        try:
            _library = _load()
        except (OSError, RuntimeError) as error:
            _unavailable = str(error)
    return _library


def cpu_kernel() -> ctypes.CDLL | None:
    """The compiled CPU kernel, built on first use; None (after one warning) where it cannot be built."""
    if _built() is None:
        _fall_back(_unavailable)
    return _library


def cpu_kernel_available() -> bool:
    """Whether the CPU kernel is built or builds here (once per machine), without the warning when it does not: for
    callers that choose the fused path only where it runs."""
    return _built() is not None


def compiled(fn: Callable) -> Callable:
    """fn through torch.compile, falling back to fn itself (after one warning) if compiling fails."""
    state = {"fn": None}

    def run(*args, **kwargs):
        if state["fn"] is None:
            state["fn"] = torch.compile(fn, dynamic=False)
        if state["fn"] is not fn:
            try:
                return state["fn"](*args, **kwargs)
            except Exception as error:  # noqa: BLE001 — any compiler failure means: run eager
                _fall_back(f"torch.compile failed ({type(error).__name__}: {str(error)[:200]})")
                state["fn"] = fn
        return fn(*args, **kwargs)

    return run


DOUBLE_BACKWARD = ("fused=True computes its backward in a compiled kernel that is not itself differentiable, so a "
                   "backward with create_graph=True (double backward, gradgradcheck, a gradient penalty) cannot run "
                   "through it: build the module with fused=False (the eager path differentiates twice).")


def _address(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class Layout:
    """How an (A, N, B) view of the input maps to statistics segments and parameter rows."""

    def __init__(self, A: int, N: int, B: int, seg_start: torch.Tensor, row_a: torch.Tensor, row_n: torch.Tensor,
                 eps: float) -> None:
        self.A, self.N, self.B, self.eps = A, N, B, eps
        self.seg_start, self.row_a, self.row_n = (t.to(torch.int32).contiguous() for t in (seg_start, row_a, row_n))
        self.S = len(seg_start) - 1


class FusedDensity(torch.autograd.Function):
    """y = x * gate(z) for x3 (A, N, B) float32 and a parameter table (R, 3, K, W); see fused_gate.c."""

    @staticmethod
    def forward(ctx, x3, real3, table, layout: Layout, want_details: bool):
        lib, L = cpu_kernel(), layout
        R, _, K, W = table.shape
        x3, table = x3.contiguous(), table.detach().contiguous()
        y = torch.empty_like(x3)
        gate, z = (torch.empty_like(x3), torch.empty_like(x3)) if want_details else (None, None)
        mean = torch.empty(L.A, L.S, L.B, dtype=torch.float32)
        rstd = torch.empty_like(mean)
        lib.daam_fused_forward(x3.data_ptr(), _address(real3), L.A, L.N, L.B, L.seg_start.data_ptr(), L.S,
                               L.row_a.data_ptr(), L.row_n.data_ptr(), R, K, W, table.data_ptr(), L.eps,
                               y.data_ptr(), _address(gate), _address(z), mean.data_ptr(), rstd.data_ptr(),
                               torch.get_num_threads())
        ctx.save_for_backward(x3, real3, table, mean, rstd)
        ctx.layout = L
        if want_details:
            ctx.mark_non_differentiable(gate, z)
            return y, gate, z
        return y, x3.new_empty(0), x3.new_empty(0)

    @staticmethod
    def backward(ctx, grad_y, _grad_gate, _grad_z):
        if torch.is_grad_enabled():  # create_graph=True: the kernel's gradient has no derivative of its own
            raise RuntimeError(DOUBLE_BACKWARD)
        x3, real3, table, mean, rstd = ctx.saved_tensors
        L, (R, _, K, W) = ctx.layout, table.shape
        grad_y = grad_y.contiguous()
        grad_x, grad_table = torch.empty_like(x3), torch.zeros_like(table)
        cpu_kernel().daam_fused_backward(
            x3.data_ptr(), _address(real3), grad_y.data_ptr(), L.A, L.N, L.B, L.seg_start.data_ptr(), L.S,
            L.row_a.data_ptr(), L.row_n.data_ptr(), R, K, W, table.data_ptr(), mean.data_ptr(), rstd.data_ptr(),
            grad_x.data_ptr(), grad_table.data_ptr(), torch.get_num_threads())
        return grad_x, None, grad_table, None, None
