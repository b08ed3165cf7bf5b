"""Benchmark pyengine's CSR segment ops against the PyTorch / PyG ways of doing the same.

For three CSR shapes over the same per-edge inputs:

* ``uniform``: M = E / degree rows, Poisson(degree) lengths, ~5% empty rows;
* ``skewed``:  M = E / degree rows, Pareto (power-law, alpha 1.1) lengths, ~5% empty rows,
  so a few rows hold a large share of the edges;
* ``single``:  one row holding all E edges (M = 1);

it times, in the same run on the same inputs:

* ``segment_reduce`` sum  vs ``zeros(M, C).index_add_(0, index, src)`` and
  ``torch.segment_reduce(src, "sum", offsets=row_ptr)``;
* ``segment_reduce`` mean / max vs ``zeros(M, C).scatter_reduce(0, index.expand, src,
  "mean" / "amax", include_self=False)``; "max" is the inference path (no gradient, values
  only), "max+arg" the training path that also records the winning edges for backward;
* ``segment_softmax`` (H = 4 heads) vs ``torch_geometric.utils.softmax`` given ``ptr``
  and given ``index`` (skipped if torch_geometric does not import);
* ``spmm`` (with edge values, x of N = E / degree rows) vs the gather-scatter
  ``zeros(M, C).index_add_(0, index, values[:, None] * x[col])``;

and checks every pyengine result against its peer (max |diff| and allclose).

Index / CSR construction and input generation are outside the timed regions; output
allocation is inside for every implementation (each returns a fresh tensor).

Examples::

    python -m bench.segment --device cpu --markdown
    python -m bench.segment --quick
    python -m bench.segment --device cuda --dtype bfloat16 --edges 64M
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

from ._timing import (  # noqa: E402
    Row,
    add_common_args,
    busy_cpus,
    choice_list,
    command_line,
    format_count,
    machine_description,
    max_abs_diff,
    measure,
    parse_common,
    parse_count,
    print_table,
)

from pyengine.ops.segment import row_index, segment_reduce, segment_softmax, spmm  # noqa: E402

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
# Relative tolerance for "match": |ours - peer| <= RTOL * max(1, max|peer|).
# Half types: pyengine accumulates in float32, the peers mostly in the storage type.
RTOL = {torch.float64: 1e-9, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}
CASES = ("uniform", "skewed", "single")
HEADS = 4


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- inputs


def _lengths_to_row_ptr(weights: np.ndarray, num_edges: int) -> torch.Tensor:
    """Scale the cumulative sum of non-negative row weights so it ends exactly at E.

    Scaling the cumulative (not the lengths) keeps row_ptr non-decreasing, keeps
    zero-weight rows empty, and hits E exactly whatever the rounding.
    """
    cum = np.cumsum(weights, dtype=np.float64)
    row_ptr = np.zeros(len(weights) + 1, dtype=np.int64)
    row_ptr[1:] = np.rint(cum * (num_edges / cum[-1])).astype(np.int64)
    row_ptr[-1] = num_edges
    return torch.from_numpy(row_ptr)


def build_row_ptr(kind: str, num_edges: int, degree: int, rng: np.random.Generator) -> torch.Tensor:
    if kind == "single":
        return torch.tensor([0, num_edges], dtype=torch.long)
    num_rows = max(1, num_edges // degree)
    if kind == "uniform":
        weights = rng.poisson(degree, num_rows).astype(np.float64)
    elif kind == "skewed":
        weights = rng.pareto(1.1, num_rows) + 1.0  # classical Pareto, x_m = 1
    else:
        raise ValueError(kind)
    weights[rng.random(num_rows) < 0.05] = 0.0
    if weights.sum() == 0:
        weights[0] = 1.0
    return _lengths_to_row_ptr(weights, num_edges)


def describe_csr(row_ptr: torch.Tensor) -> str:
    lengths = row_ptr.diff()
    num_rows, num_edges = lengths.numel(), int(row_ptr[-1])
    sorted_len = lengths.sort(descending=True).values
    top = max(1, num_rows // 100)
    top_share = float(sorted_len[:top].sum()) / max(1, num_edges)
    return (
        f"M={format_count(num_rows)} rows, E={format_count(num_edges)}, "
        f"mean len {num_edges / num_rows:.1f}, max len {int(sorted_len[0])}, "
        f"empty rows {int((lengths == 0).sum())}, top-1% rows hold {100 * top_share:.1f}% of edges"
    )


# --------------------------------------------------------------------------- benchmark


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device(args.device)
        self.dtype = DTYPES[args.dtype]
        self.rtol = RTOL[self.dtype]
        self.rows: list[Row] = []
        self.failures = 0  # mismatches where pyengine is not closer to float64 than the peer

    def time(self, fn) -> float:
        a = self.args
        return measure(fn, repeat=a.repeat, warmup=a.warmup, device=self.device, max_seconds=a.max_seconds)

    def compare(self, case: str, op: str, ours_s: float, ours_out: torch.Tensor, peer: str, peer_fn,
                gbps: float | None = None, note: str = "", ref64=None) -> None:
        """Run the peer once for the check, time it, and append a row (skip on error).

        ``ref64`` (optional) computes the result in float64; it is only called when ours and
        the peer disagree, to say which of the two is off (e.g. a peer accumulating in half).
        """
        try:
            ref = peer_fn()
        except (RuntimeError, NotImplementedError, TypeError, ValueError, ImportError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log(f"  [{case}] {op}: peer {peer} unsupported here, skipped ({type(exc).__name__}: {msg[:120]})")
            self.rows.append(Row(case, op, ours_s, peer, None, note=f"peer skipped: {type(exc).__name__}",
                                 gbps=gbps, peak_frac=self._peak(gbps)))
            return
        diff = max_abs_diff(ours_out, ref)
        scale = max(1.0, float(ref.double().abs().max())) if ref.numel() else 1.0
        match = (not math.isnan(diff)) and diff <= self.rtol * scale
        if not match:
            ours_worse = True
            if ref64 is not None:
                exact = ref64()
                ours_err, peer_err = max_abs_diff(ours_out, exact), max_abs_diff(ref, exact)
                ours_worse = not ours_err <= peer_err
                note = (note + "; " if note else "") + f"vs float64: pyengine {ours_err:.1e}, peer {peer_err:.1e}"
                del exact
            if ours_worse:
                self.failures += 1
        del ref
        peer_s = self.time(peer_fn)
        self.rows.append(Row(case, op, ours_s, peer, peer_s, max_diff=diff, match=match, gbps=gbps,
                             peak_frac=self._peak(gbps), note=note))
        log(f"  [{case}] {op:11s} pyengine {ours_s * 1e3:9.2f} ms | {peer:28s} {peer_s * 1e3:9.2f} ms"
            f" | diff {diff:.2e}{'' if match else '  MISMATCH'}")

    def _peak(self, gbps: float | None) -> float | None:
        if gbps is None or self.device.type != "cuda" or not self.args.peak_gbps:
            return None
        return gbps / self.args.peak_gbps

    def run_case(self, case: str, row_ptr_cpu: torch.Tensor, src, scores, col, values, x, pyg_softmax) -> None:
        dev, E, C = self.device, src.shape[0], src.shape[1]
        row_ptr = row_ptr_cpu.to(dev)
        M = row_ptr.numel() - 1
        # Untimed: per-edge row index for the scatter-style peers.
        index = row_index(row_ptr, E)
        index_c = index.view(-1, 1).expand(E, C)
        es = src.element_size()

        # ---- sum
        ours = segment_reduce(src, row_ptr, "sum")
        t = self.time(lambda: segment_reduce(src, row_ptr, "sum"))
        gbps = (E * C * es + (M + 1) * 8 + M * C * es) / t / 1e9
        def sum64():
            return torch.zeros(M, C, device=dev, dtype=torch.float64).index_add_(0, index, src.double())

        self.compare(case, "sum", t, ours, "index_add_",
                     lambda: torch.zeros(M, C, device=dev, dtype=src.dtype).index_add_(0, index, src), gbps=gbps,
                     ref64=sum64)
        self.compare(case, "sum", t, ours, "torch.segment_reduce",
                     lambda: torch.segment_reduce(src, "sum", offsets=row_ptr), gbps=gbps, ref64=sum64)
        del ours

        # ---- mean, max
        for reduce, peer_reduce in (("mean", "mean"), ("max", "amax")):
            ours = segment_reduce(src, row_ptr, reduce)
            t = self.time(lambda: segment_reduce(src, row_ptr, reduce))
            self.compare(case, reduce, t, ours, f"scatter_reduce({peer_reduce})",
                         lambda: torch.zeros(M, C, device=dev, dtype=src.dtype).scatter_reduce(
                             0, index_c, src, peer_reduce, include_self=False),
                         ref64=lambda: segment_reduce(src.double(), row_ptr, reduce))
            del ours

        # ---- max as in training: also records the winning edge per (row, channel) for backward
        raw = torch.ops.pyengine.segment_reduce
        ours = raw(src, row_ptr, "max", True)[0]
        t = self.time(lambda: raw(src, row_ptr, "max", True))
        self.compare(case, "max+arg", t, ours, "scatter_reduce(amax)",
                     lambda: torch.zeros(M, C, device=dev, dtype=src.dtype).scatter_reduce(
                         0, index_c, src, "amax", include_self=False),
                     ref64=lambda: segment_reduce(src.double(), row_ptr, "max"))
        del ours

        # ---- softmax
        ours = segment_softmax(scores, row_ptr)
        t = self.time(lambda: segment_softmax(scores, row_ptr))
        if pyg_softmax is None:
            self.rows.append(Row(case, f"softmax H={HEADS}", t, "torch_geometric", None,
                                 note="peer skipped: torch_geometric not importable"))
        else:
            soft64 = lambda: segment_softmax(scores.double(), row_ptr)  # noqa: E731
            self.compare(case, f"softmax H={HEADS}", t, ours, "pyg softmax(ptr)",
                         lambda: pyg_softmax(scores, ptr=row_ptr), ref64=soft64)
            self.compare(case, f"softmax H={HEADS}", t, ours, "pyg softmax(index)",
                         lambda: pyg_softmax(scores, index, num_nodes=M), ref64=soft64)
        del ours

        # ---- spmm
        ours = spmm(row_ptr, col, values, x)
        t = self.time(lambda: spmm(row_ptr, col, values, x))
        self.compare(case, "spmm", t, ours, "index_add_(v*x[col])",
                     lambda: torch.zeros(M, C, device=dev, dtype=x.dtype).index_add_(
                         0, index, values[:, None] * x[col]),
                         ref64=lambda: spmm(row_ptr, col, values.double(), x.double()))
        del ours, index, index_c


def _import_pyg_softmax():
    try:
        import torch_geometric  # noqa: F401
        import torch_geometric.typing as pyg_typing
        from torch_geometric.utils import softmax
    except Exception as exc:  # noqa: BLE001  (any import failure means: skip the peer)
        log(f"torch_geometric not importable ({type(exc).__name__}: {exc}); softmax peers skipped")
        return None, "not importable"
    if getattr(pyg_typing, "WITH_SOFTMAX", False):
        backend = "pyg_lib.ops.softmax_csr on CPU"
    elif getattr(pyg_typing, "WITH_TORCH_SCATTER", False):
        backend = "torch_scatter"
    else:
        backend = "torch.segment_reduce / scatter_reduce (no pyg_lib, no torch_scatter)"
    return softmax, f"torch_geometric {torch_geometric.__version__}, ptr path via {backend}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edges", type=parse_count, default=None,
                   help="number of edges E, e.g. 4M (default: 32M on cuda, 4M on cpu)")
    p.add_argument("--channels", type=int, default=64, help="feature channels C (default 64)")
    p.add_argument("--degree", type=int, default=32, help="average segment length (default 32)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed calls per op (default: 20 cuda, 10 cpu; 3 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls first (default: 3; 1 with --quick)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma list from {CASES}")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--peak-gbps", type=float, default=3350.0,
                   help="peak memory bandwidth for the %% peak column on cuda (default 3350, H100 SXM)")
    add_common_args(p)
    args = parse_common(p, argv)
    on_cuda = args.device == "cuda"
    if args.edges is None:
        args.edges = (2 * 10**6 if on_cuda else 2 * 10**5) if args.quick else (32 * 10**6 if on_cuda else 4 * 10**6)
    if args.repeat is None:
        args.repeat = 3 if args.quick else (20 if on_cuda else 10)
    if args.warmup is None:
        args.warmup = 1 if args.quick else 3
    if args.max_seconds is None and not on_cuda:
        args.max_seconds = 3.0
    args.cases = choice_list(p, args.cases, CASES, "case")
    if args.edges < 1 or args.degree < 1 or args.channels < 1:
        p.error("--edges, --degree and --channels must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    E, C, D = args.edges, args.channels, args.degree
    N = max(1, E // D)
    command = command_line(__file__)

    pyg_softmax, pyg_desc = _import_pyg_softmax()

    t_setup = time.perf_counter()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    # Shared per-edge inputs (generated on CPU in float32 for reproducibility across devices).
    src = torch.randn(E, C).to(dev, dtype)
    scores = torch.randn(E, HEADS).to(dev, dtype)
    col = torch.randint(0, N, (E,)).to(dev)
    values = torch.randn(E).to(dev, dtype)
    x = torch.randn(N, C).to(dev, dtype)
    row_ptrs = {case: build_row_ptr(case, E, D, rng) for case in args.cases}
    log(f"setup {time.perf_counter() - t_setup:.1f} s")

    header = [
        f"machine: {machine_description(dev)}",
        f"command: {command}",
        f"E={format_count(E)} edges, C={C} channels, avg degree {D}, dtype {args.dtype}, "
        f"softmax heads {HEADS}, spmm N={format_count(N)}; repeat {args.repeat} (median), warmup {args.warmup}"
        + (f", <= {args.max_seconds:g} s timed per op" if args.max_seconds else ""),
        f"peers: torch {torch.__version__}; {pyg_desc}",
    ]
    for case in args.cases:
        header.append(f"case {case}: {describe_csr(row_ptrs[case])}")
    if dev.type == "cpu":
        busy = busy_cpus()
        if busy is not None:
            header.append(f"other load at start: {busy:.2f} of {os.cpu_count()} CPUs busy"
                          + ("  (WARNING: machine not idle, CPU timings unreliable)" if busy > 0.25 else ""))
    for line in header:
        log(line)

    bench = Bench(args)
    t_run = time.perf_counter()
    for case in args.cases:
        log(f"case {case} ...")
        bench.run_case(case, row_ptrs[case], src, scores, col, values, x, pyg_softmax)
    elapsed = time.perf_counter() - t_run
    log(f"benchmark {elapsed:.1f} s")
    if dev.type == "cpu":
        busy = busy_cpus()
        if busy is not None:
            header.append(f"other load at end: {busy:.2f} of {os.cpu_count()} CPUs busy"
                          + ("  (WARNING: machine not idle, CPU timings unreliable)" if busy > 0.25 else ""))

    on_cuda = dev.type == "cuda"
    sys.stderr.flush()
    if args.markdown:
        for line in header:
            print(f"- {line}" if not line.startswith("command") else f"- command: `{command}`")
        print()
    else:
        print("\n".join(header))
        print()
    print_table(bench.rows, markdown=args.markdown, show_bandwidth=True, show_peak=on_cuda)
    print()
    foot = ("speedup = peer ms / pyengine ms (> 1: pyengine faster). GB/s (sum rows) = (src read + row_ptr "
            "read + out written) / pyengine time" + (f"; % peak of {args.peak_gbps:g} GB/s." if on_cuda else "."))
    print(foot)
    sys.stdout.flush()
    mismatches = [r for r in bench.rows if r.match is False]
    if mismatches:
        bold = "**" if args.markdown else ""
        print(f"{bold}WARNING: {len(mismatches)} result(s) differ from the peer beyond rtol {RTOL[dtype]:g} "
              f"(relative to max |peer|); {bench.failures} of them with pyengine not closer to float64 than the "
              f"peer (see note column){bold}")
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
