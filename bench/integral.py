"""Benchmark the fused GNO kernel integral and the message-passing block against plain PyTorch.

Rows (same inputs, same run):

* ``GNOIntegral`` (transform linear / nonlinear / linear_kernelonly, mean reduction,
  kernel MLP ``2d -> 64 -> 64 -> C``, GELU) fused vs the plain gather -> MLP ->
  multiply -> scatter of the same layer (``GNOIntegral(fused=False)``): forward, and
  forward+backward (gradients for ``f_y``, the quadrature weights and every MLP
  parameter; coordinates as constants, as in training);
* ``MessagePassing`` (node = edge = hidden = C) vs a plain block that concatenates
  ``[h_i, h_j, e_ij]`` per edge: forward+backward (kind ``mp``; not fused: the edge
  state is an E x C output anyway);
* node-only ``MessagePassing`` (``edge_dim=0``, node = hidden = C), whose edge MLP and
  aggregation run fused in the GNO kernel, vs the same block with ``fused=False``:
  forward+backward (kind ``mp_node``).

Graph: ``M = N = E / degree`` points in the unit cube, exactly ``degree`` random
neighbors per query (the cost does not depend on which). Time: median of a few calls
(``bench/_timing.measure``). Memory ("peak extra"): measured in a fresh child process
per cell: the inputs are built, the kernel's peak resident set size is reset
(``echo 5 > /proc/self/clear_refs``), one warm call runs, and the reported number is
``VmHWM - VmRSS before the call``: every byte the call touched beyond its inputs
(outputs, gradients, temporaries, BLAS / OpenMP scratch), whoever allocated it. It
is also given in units of one ``E x C`` float32 tensor (the issue's yardstick).

Examples::

    python bench/integral.py --edges 1M --markdown
    python bench/integral.py --edges 4M --skip-plain-at 8M
    python bench/integral.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import (  # noqa: E402
    add_common_args,
    busy_cpus,
    format_count,
    machine_description,
    max_abs_diff,
    measure,
    parse_common,
    parse_count,
)

from pyengine.nn import GNOIntegral, MessagePassing  # noqa: E402


# --------------------------------------------------------------------------- inputs


def gno_inputs(E: int, degree: int, C: int, transform: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    M = N = max(1, E // degree)
    E = M * degree
    y = torch.rand(N, 3, generator=g)
    x = torch.rand(M, 3, generator=g)
    row_ptr = torch.arange(0, E + 1, degree, dtype=torch.long)
    col = torch.randint(0, N, (E,), generator=g)
    f = None if transform == "linear_kernelonly" else torch.randn(N, C, generator=g)
    w = torch.rand(N, generator=g)  # quadrature weights, O(1) so diffs are readable
    torch.manual_seed(seed)
    layer = GNOIntegral(C, 3, hidden=(64, 64), transform=transform, reduction="mean")
    return layer, (y, x, row_ptr, col, f, w)


class PlainMessagePassing(torch.nn.Module):
    """The textbook block: cat([h_i, h_j, e_ij]) per edge -> MLP -> index_add -> node MLP."""

    def __init__(self, mp: MessagePassing):
        super().__init__()
        self.mp = mp

    def forward(self, h, row_ptr, col, e):
        M = h.shape[0]
        rows = torch.repeat_interleave(torch.arange(M), row_ptr[1:] - row_ptr[:-1], output_size=col.shape[0])
        e_new = e + self.mp.edge_mlp(torch.cat([h[rows], h[col], e], dim=1))
        agg = torch.zeros(M, e.shape[1]).index_add_(0, rows, e_new)
        if self.mp.reduction == "mean":
            agg = agg / (row_ptr[1:] - row_ptr[:-1]).clamp(min=1)[:, None]
        return h + self.mp.node_mlp(torch.cat([h, agg], dim=1)), e_new


def mp_inputs(E: int, degree: int, C: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    M = max(1, E // degree)
    E = M * degree
    h = torch.randn(M, C, generator=g)
    e = torch.randn(E, C, generator=g)
    row_ptr = torch.arange(0, E + 1, degree, dtype=torch.long)
    col = torch.randint(0, M, (E,), generator=g)
    torch.manual_seed(seed)
    return MessagePassing(C, C, hidden=C, reduction="sum"), (h, row_ptr, col, e)


# --------------------------------------------------------------------------- one call


def make_call(kind: str, impl: str, passes: str, E: int, degree: int, C: int, seed: int):
    """A zero-argument callable running one cell (returning its main output)."""
    if kind == "mp_node":
        g = torch.Generator().manual_seed(seed)
        M = max(1, E // degree)
        h = torch.randn(M, C, generator=g).requires_grad_(passes == "fwd+bwd")
        row_ptr = torch.arange(0, M * degree + 1, degree, dtype=torch.long)
        col = torch.randint(0, M, (M * degree,), generator=g)
        torch.manual_seed(seed)
        block = MessagePassing(C, 0, hidden=C, reduction="mean", fused=impl == "fused")

        def call():
            with torch.set_grad_enabled(passes == "fwd+bwd"):
                out, _ = block(h, row_ptr, col)
                if passes == "fwd+bwd":
                    out.sum().backward()
            return out

        return call
    if kind == "mp":
        mp, (h, row_ptr, col, e) = mp_inputs(E, degree, C, seed)
        block = mp if impl == "fused" else PlainMessagePassing(mp)
        h.requires_grad_(passes == "fwd+bwd")

        def call():
            out_h, out_e = block(h, row_ptr, col, e)
            if passes == "fwd+bwd":
                (out_h.sum() + out_e.sum()).backward()
            return out_h

        return call

    layer, (y, x, row_ptr, col, f, w) = gno_inputs(E, degree, C, kind, seed)
    layer.fused = impl == "fused"
    if passes == "fwd+bwd":
        w.requires_grad_(True)
        if f is not None:
            f.requires_grad_(True)

    def call():
        with torch.set_grad_enabled(passes == "fwd+bwd"):
            out = layer(y, x, row_ptr, col, f, w)
            if passes == "fwd+bwd":
                out.sum().backward()
        return out

    return call


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child_peak_extra(args) -> None:
    """Runs in a fresh process: peak extra resident memory of one warm call, as JSON."""
    torch.set_num_threads(args.threads)
    call = make_call(args.kind, args.impl, args.passes, args.E, args.degree, args.C, args.seed)
    call()  # warm: thread pool, BLAS buffers, lazy init
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    call()
    print(json.dumps({"extra": _status("VmHWM") - before}))


def peak_extra(kind, impl, passes, E, degree, C, seed, threads) -> int | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, impl, passes, str(E), str(degree), str(C),
           str(seed), str(threads)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        print(f"  memory child failed ({kind} {impl} {passes}): {res.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])["extra"]


# --------------------------------------------------------------------------- main


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        ns = argparse.Namespace(kind=sys.argv[2], impl=sys.argv[3], passes=sys.argv[4], E=int(sys.argv[5]),
                                degree=int(sys.argv[6]), C=int(sys.argv[7]), seed=int(sys.argv[8]),
                                threads=int(sys.argv[9]))  # fmt: skip
        return child_peak_extra(ns)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--edges", default="1M", help="E, number of edges (default 1M)")
    p.add_argument("--degree", type=int, default=32)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--kinds", default="linear,nonlinear,linear_kernelonly,mp,mp_node",
                   help="comma list of GNO transforms and/or 'mp' (message passing)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the per-cell memory children")
    p.add_argument("--skip-plain-at", default="16M",
                   help="do not run the plain peers at or above this many edges (memory)")
    args = parse_common(p, argv)
    if args.device != "cpu":
        p.error("the fused GNO kernel's CUDA path is compile-checked only so far; this bench runs --device cpu")
    E = parse_count("64k" if args.quick else args.edges)
    C, degree = args.channels, args.degree
    threads = torch.get_num_threads()
    skip_plain = E >= parse_count(args.skip_plain_at)
    busy = busy_cpus()
    print(f"# {machine_description('cpu')}; busy CPUs before run: {busy if busy is None else round(busy, 2)}")
    print(f"# command: python bench/integral.py {shlex.join(sys.argv[1:])}")
    print(f"# E = {format_count(E)} edges, degree {degree}, C = {C}, kernel MLP 2d(+C) -> 64 -> 64 -> C, GELU, "
          f"float32, {time.strftime('%Y-%m-%d')}")
    unit = E * C * 4  # one E x C float32 tensor

    lines = ["| layer | pass | pyengine ms | plain ms | speedup | pyengine peak extra MiB (x ExC f32) | "
             "plain peak extra MiB (x ExC f32) | max abs diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for kind in args.kinds.split(","):
        for passes in ("fwd", "fwd+bwd") if not kind.startswith("mp") else ("fwd+bwd",):
            fused_call = make_call(kind, "fused", passes, E, degree, C, args.seed)
            t_fused = measure(fused_call, repeat=args.repeat, warmup=1, max_seconds=args.max_seconds)
            t_plain = diff = None
            if not skip_plain:
                plain_call = make_call(kind, "plain", passes, E, degree, C, args.seed)
                t_plain = measure(plain_call, repeat=args.repeat, warmup=1, max_seconds=args.max_seconds)
                with torch.no_grad():
                    diff = max_abs_diff(make_call(kind, "fused", "fwd", E, degree, C, args.seed)(),
                                        make_call(kind, "plain", "fwd", E, degree, C, args.seed)())  # fmt: skip
            mem_f = mem_p = None
            if not args.no_memory:
                mem_f = peak_extra(kind, "fused", passes, E, degree, C, args.seed, threads)
                if not skip_plain:
                    mem_p = peak_extra(kind, "plain", passes, E, degree, C, args.seed, threads)

            def mem(b):
                return "" if b is None else f"{b / 2**20:.0f} ({b / unit:.2f})"

            name = {"mp": "MessagePassing (edge feats)", "mp_node": "MessagePassing node-only (fused)"}.get(
                kind, f"GNOIntegral {kind}"
            )
            sp = "" if t_plain is None else f"{t_plain / t_fused:.2f}x"
            lines.append(f"| {name} | {passes} | {t_fused * 1e3:.0f} | "
                         f"{'' if t_plain is None else f'{t_plain * 1e3:.0f}'} | {sp} | {mem(mem_f)} | {mem(mem_p)} | "
                         f"{'' if diff is None else f'{diff:.1e}'} |")  # fmt: skip
            print(lines[-1], flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
