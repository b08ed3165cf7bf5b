"""Shared timing and reporting helpers for the scripts in ``bench/``.

Usage::

    from ._timing import measure, Row, print_table

    t = measure(lambda: op(x), repeat=10, warmup=2, device=x.device)   # seconds, median

Timing rules (the same for every benchmark, so numbers are comparable):

* ``warmup`` untimed calls first (allocator, lazy init, CUDA kernel loading, thread pool
  and page warm-up), fewer if they alone take more than half of ``max_seconds``;
* then up to ``repeat`` timed calls, each timed on its own, and the **median** is returned;
* on CUDA each call is bracketed by CUDA events (device time, no host overhead between
  calls) and the device is synchronised before and after; on CPU ``time.perf_counter``
  is used around each call;
* ``max_seconds`` (optional) caps the total time spent on timed calls, so a very slow
  peer cannot blow the run budget: timing stops once the budget is used, but never
  before ``min_repeat`` timed calls.

Anything that is not the operation itself (building indices, CSR structures, random
inputs) must be done outside ``fn``.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import time
from dataclasses import dataclass
import argparse
import sys
from typing import Callable, Sequence

import torch

__all__ = [
    "measure",
    "synchronize",
    "cuda_peak_extra",
    "guarded",
    "max_abs_diff",
    "Row",
    "format_table",
    "print_table",
    "parse_count",
    "format_count",
    "machine_description",
    "busy_cpus",
    "choice_list",
    "command_line",
]


def _as_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return torch.device(device)


def synchronize(device: str | torch.device | None) -> None:
    """Wait for all queued work on ``device`` (no-op on CPU)."""
    dev = _as_device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measure(
    fn: Callable[[], object],
    repeat: int = 10,
    warmup: int = 2,
    device: str | torch.device | None = "cpu",
    max_seconds: float | None = None,
    min_repeat: int = 3,
) -> float:
    """Median wall (CPU) or device (CUDA) time of ``fn()`` in seconds.

    Args:
        fn: the operation; called with no arguments, its result is discarded.
        repeat: number of timed calls (upper bound when ``max_seconds`` is set).
        warmup: number of untimed calls before timing.
        device: where ``fn`` runs; ``"cuda"`` switches to CUDA-event timing.
        max_seconds: optional budget for the timed calls (see module docstring).
        min_repeat: timed calls always made, even past ``max_seconds``.
    """
    dev = _as_device(device)
    repeat = max(1, int(repeat))
    min_repeat = max(1, min(int(min_repeat), repeat))
    warm_start = time.perf_counter()
    for i in range(max(0, int(warmup))):
        fn()
        synchronize(dev)
        if max_seconds is not None and time.perf_counter() - warm_start > max_seconds / 2:
            break  # a slow op: one or two warmup calls are plenty
    synchronize(dev)

    times: list[float] = []
    budget_start = time.perf_counter()
    if dev.type == "cuda":
        for i in range(repeat):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
            if max_seconds is not None and i + 1 >= min_repeat and time.perf_counter() - budget_start > max_seconds:
                break
    else:
        for i in range(repeat):
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            times.append(t1 - t0)
            if max_seconds is not None and i + 1 >= min_repeat and t1 - budget_start > max_seconds:
                break
    return statistics.median(times)


def cuda_peak_extra(fn: Callable[[], object], device: str | torch.device | None = "cuda") -> int:
    """Peak CUDA memory allocated during one ``fn()`` call beyond what was allocated before it (bytes).

    ``torch.cuda.max_memory_allocated()`` after ``torch.cuda.reset_peak_memory_stats()``,
    minus ``torch.cuda.memory_allocated()`` before the call: outputs, gradients, the
    autograd graph and temporaries, everything that goes through PyTorch's caching
    allocator (memory a library takes with its own ``cudaMalloc`` is not seen). Call
    ``fn`` once before (warm-up) so that lazily created buffers are not counted.
    """
    dev = _as_device(device)
    gc.collect()
    torch.cuda.synchronize(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    before = torch.cuda.memory_allocated(dev)
    fn()
    torch.cuda.synchronize(dev)
    return torch.cuda.max_memory_allocated(dev) - before


def guarded(fn: Callable[[], object], what: str, failed=None):
    """``(fn(), "")``, or ``(failed, "OOM" / "error")`` when ``fn`` raises, so that one failed
    cell (CUDA out of memory, or any error: printed to stderr under ``what``) does not stop
    a benchmark; memory the failed call held is released (``torch.cuda.empty_cache``)."""
    try:
        return fn(), ""
    except torch.cuda.OutOfMemoryError:
        note, msg = "OOM", "out of memory, reported as OOM"
    except Exception as exc:  # noqa: BLE001 - report the cell and go on
        note, msg = "error", f"{type(exc).__name__}: {str(exc)[:300]}"
    print(f"  {what}: {msg}", file=sys.stderr, flush=True)
    gc.collect()  # outside the except block, so the traceback's tensors are gone
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return failed, note


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` computed in float64 (NaN if shapes differ; 0 for empty tensors)."""
    if a.shape != b.shape:
        return float("nan")
    if a.numel() == 0:
        return 0.0
    return float((a.double() - b.double()).abs().max())


@dataclass
class Row:
    """One line of a comparison table: our op vs one peer on the same inputs."""

    case: str
    op: str
    ours_s: float | None  # seconds (median)
    peer: str = ""
    peer_s: float | None = None
    max_diff: float | None = None
    match: bool | None = None  # allclose within the benchmark's tolerance
    gbps: float | None = None  # effective bandwidth of our op
    peak_frac: float | None = None  # gbps / peak
    note: str = ""

    @property
    def speedup(self) -> float | None:
        if self.ours_s is None or self.peer_s is None or self.ours_s <= 0:
            return None
        return self.peer_s / self.ours_s


def _ms(s: float | None) -> str:
    return "" if s is None else f"{s * 1e3:.3f}" if s < 0.01 else f"{s * 1e3:.2f}" if s < 1 else f"{s * 1e3:.1f}"


def _num(x: float | None, fmt: str) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    return format(x, fmt)


def format_table(rows: Sequence[Row], markdown: bool = False, show_bandwidth: bool = True,
                 show_peak: bool = True, ours_name: str = "pyengine") -> str:
    """Render rows as a GitHub markdown table or an aligned plain-text table."""
    headers = ["case", "op", f"{ours_name} ms", "peer", "peer ms", "speedup (peer/ours)", "max abs diff", "match"]
    if show_bandwidth:
        headers.append("GB/s")
        if show_peak:
            headers.append("% peak")
    headers.append("note")

    body: list[list[str]] = []
    for r in rows:
        sp = r.speedup
        line = [
            r.case,
            r.op,
            _ms(r.ours_s),
            r.peer or "-",
            _ms(r.peer_s),
            "" if sp is None else f"{sp:.2f}x",
            _num(r.max_diff, ".2e"),
            "" if r.match is None else ("yes" if r.match else "NO"),
        ]
        if show_bandwidth:
            line.append(_num(r.gbps, ".1f"))
            if show_peak:
                line.append("" if r.peak_frac is None else f"{100 * r.peak_frac:.1f}%")
        line.append(r.note)
        body.append(line)

    if markdown:
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        out = ["| " + " | ".join(headers) + " |",
               "|" + "|".join("---" if i < 2 or h in ("peer", "note", "match") else "---:"
                              for i, h in enumerate(headers)) + "|"]
        out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in body]
        return "\n".join(out)

    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(headers)]
    fmt_line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [fmt_line(headers), fmt_line(["-" * w for w in widths])]
    out += [fmt_line(line) for line in body]
    return "\n".join(out)


def print_table(rows: Sequence[Row], markdown: bool = False, **kwargs) -> None:
    print(format_table(rows, markdown=markdown, **kwargs))


_SUFFIX = {"k": 10**3, "K": 10**3, "m": 10**6, "M": 10**6, "g": 10**9, "G": 10**9}


def parse_count(text: str | int) -> int:
    """``"4M"`` -> 4_000_000, ``"250k"`` -> 250_000, ``"1e6"`` -> 1_000_000."""
    if isinstance(text, int):
        return text
    s = str(text).strip().replace("_", "")
    if s and s[-1] in _SUFFIX:
        return int(float(s[:-1]) * _SUFFIX[s[-1]])
    return int(float(s))


def format_count(n: int) -> str:
    for suffix, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= scale and n % (scale // 100 or 1) == 0:
            v = n / scale
            return f"{v:g}{suffix}"
    return str(n)


def machine_description(device: str | torch.device) -> str:
    """One line: CPU model / GPU name, thread count and torch version."""
    dev = _as_device(device)
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        return f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import platform

    model = model or platform.processor() or platform.machine()
    return f"{model}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def busy_cpus(seconds: float = 0.5) -> float | None:
    """How many CPUs other processes keep busy right now (Linux ``/proc/stat``), or None.

    Sampled over ``seconds`` before a run: CPU timings on a small machine are only
    meaningful when this is near 0 (a second busy process makes OpenMP barriers wait).
    """

    def snap() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = snap()
        time.sleep(seconds)
        total1, idle1 = snap()
    except (OSError, ValueError, IndexError):
        return None
    dt = total1 - total0
    if dt <= 0:
        return None
    return (1.0 - (idle1 - idle0) / dt) * (os.cpu_count() or 1)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """The options every bench script shares: device, time budget, seed, quick and markdown modes."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="time budget per op for timed calls, at least 3 calls (default: 3 s cpu, none cuda)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table for bench/RESULTS.md")


def parse_common(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse argv; refuse --device cuda without a usable CUDA device."""
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but torch.cuda.is_available() is False")
    return args


def choice_list(parser: argparse.ArgumentParser, text: str, choices: Sequence[str], what: str) -> list[str]:
    """A comma-separated option as a list, with a parser error naming unknown entries."""
    items = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in items if c not in choices]
    if bad:
        parser.error(f"unknown {what}(s) {bad}; choose from {tuple(choices)}")
    return items


def command_line(script: str) -> str:
    """How this benchmark was invoked, for the reports (``python -m bench.x --flags``)."""
    import shlex
    import sys

    module = "bench." + os.path.splitext(os.path.basename(script))[0]
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in sys.argv[1:])
