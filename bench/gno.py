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
neighbors per query (the cost does not depend on which), built directly on the device.
Time: median of ``--repeat`` calls after one warm-up (``bench/_timing.measure``; CUDA
events on the GPU). A cell that fails (CUDA out of memory, or any error) is reported as
``OOM`` / ``error`` and the run goes on.

Memory ("peak extra"), after one warm call:

* CPU: measured in a fresh child process per cell: the inputs are built, the kernel's
  peak resident set size is reset (``echo 5 > /proc/self/clear_refs``), one warm call
  runs, and the reported number is ``VmHWM - VmRSS before the call``: every byte the call
  touched beyond its inputs (outputs, gradients, temporaries, BLAS / OpenMP scratch),
  whoever allocated it;
* CUDA: in this process, ``torch.cuda.max_memory_allocated()`` during one call (after
  ``torch.cuda.reset_peak_memory_stats()``) minus the memory allocated before it
  (``_timing.cuda_peak_extra``).

It is also given in units of one ``E x C`` float32 tensor (the issue's yardstick).

Precision on CUDA (``--precision``, default ``tf32``): sets
``torch.backends.cuda.matmul.allow_tf32`` for the whole run, so the fused kernel (tensor
cores with TF32 products and float32 accumulation when TF32 is allowed, exact-FP32 FMA
otherwise) and the plain peer (cuBLAS in ``nn.Linear``) run under the same setting. The
max abs diff column shows what TF32 costs in accuracy.

Defaults on CUDA are the issue's H100 target: N = 400k points, 32 neighbors (E = 12.8M),
C = 64, kernel MLP 6 -> 64 -> 64 -> 64; the ``target`` column checks GNOIntegral linear
against it (forward <= 3 ms and <= 1 GiB peak extra, forward+backward <= 10 ms). On CPU,
at E = 4M and C = 64, it checks forward+backward against the CPU target (at most 0.5
``E x C`` float32 tensors of peak extra memory, no slower than plain).

Examples::

    python -m bench.gno --edges 1M --markdown
    python -m bench.gno --edges 4M --skip-plain-at 8M
    python -m bench.gno --quick
    python -m bench.gno --device cuda --markdown            # issue size, TF32
    python -m bench.gno --device cuda --precision ieee --kinds linear
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

import torch

from ._timing import (  # noqa: E402
    add_common_args,
    busy_cpus,
    choice_list,
    command_line,
    cuda_peak_extra,
    format_count,
    guarded,
    machine_description,
    max_abs_diff,
    measure,
    parse_common,
    parse_count,
)

from pyengine.nn import GNOIntegral, MessagePassing  # noqa: E402
from pyengine.ops import row_index  # noqa: E402

KINDS = ("linear", "nonlinear", "linear_kernelonly", "mp", "mp_node")
# The targets for GNOIntegral linear, C = 64: on CUDA at E = 12.8M (N = 400k, 32 neighbors),
# on CPU at E = 4M.
GPU_TARGET = {"E": 12_800_000, "C": 64, "fwd_ms": 3.0, "fwd_gib": 1.0, "fwd+bwd_ms": 10.0}
CPU_TARGET = {"E": 4_000_000, "C": 64, "fwd+bwd_exc": 0.5}


# --------------------------------------------------------------------------- inputs


def gno_inputs(E: int, degree: int, C: int, transform: str, seed: int, device="cpu"):
    g = torch.Generator(device=device).manual_seed(seed)
    M = N = max(1, E // degree)
    E = M * degree
    y = torch.rand(N, 3, generator=g, device=device)
    x = torch.rand(M, 3, generator=g, device=device)
    row_ptr = torch.arange(0, E + 1, degree, dtype=torch.long, device=device)
    col = torch.randint(0, N, (E,), generator=g, device=device)
    f = None if transform == "linear_kernelonly" else torch.randn(N, C, generator=g, device=device)
    w = torch.rand(N, generator=g, device=device)  # quadrature weights, O(1) so diffs are readable
    torch.manual_seed(seed)
    layer = GNOIntegral(C, 3, hidden=(64, 64), transform=transform, reduction="mean").to(device)
    return layer, (y, x, row_ptr, col, f, w)


class PlainMessagePassing(torch.nn.Module):
    """The textbook block: cat([h_i, h_j, e_ij]) per edge -> MLP -> index_add -> node MLP."""

    def __init__(self, mp: MessagePassing):
        super().__init__()
        self.mp = mp

    def forward(self, h, row_ptr, col, e):
        M = h.shape[0]
        rows = row_index(row_ptr, col.shape[0])
        e_new = e + self.mp.edge_mlp(torch.cat([h[rows], h[col], e], dim=1))
        agg = torch.zeros(M, e.shape[1], device=e.device, dtype=e.dtype).index_add_(0, rows, e_new)
        if self.mp.reduction == "mean":
            agg = agg / (row_ptr[1:] - row_ptr[:-1]).clamp(min=1)[:, None]
        return h + self.mp.node_mlp(torch.cat([h, agg], dim=1)), e_new


def mp_inputs(E: int, degree: int, C: int, seed: int, device="cpu"):
    g = torch.Generator(device=device).manual_seed(seed)
    M = max(1, E // degree)
    E = M * degree
    h = torch.randn(M, C, generator=g, device=device)
    e = torch.randn(E, C, generator=g, device=device)
    row_ptr = torch.arange(0, E + 1, degree, dtype=torch.long, device=device)
    col = torch.randint(0, M, (E,), generator=g, device=device)
    torch.manual_seed(seed)
    return MessagePassing(C, C, hidden=C, reduction="sum").to(device), (h, row_ptr, col, e)


# --------------------------------------------------------------------------- one call


def make_call(kind: str, impl: str, passes: str, E: int, degree: int, C: int, seed: int, device="cpu"):
    """A zero-argument callable running one cell (returning its main output)."""
    if kind == "mp_node":
        g = torch.Generator(device=device).manual_seed(seed)
        M = max(1, E // degree)
        h = torch.randn(M, C, generator=g, device=device).requires_grad_(passes == "fwd+bwd")
        row_ptr = torch.arange(0, M * degree + 1, degree, dtype=torch.long, device=device)
        col = torch.randint(0, M, (M * degree,), generator=g, device=device)
        torch.manual_seed(seed)
        block = MessagePassing(C, 0, hidden=C, reduction="mean", fused=impl == "fused").to(device)

        def call():
            with torch.set_grad_enabled(passes == "fwd+bwd"):
                out, _ = block(h, row_ptr, col)
                if passes == "fwd+bwd":
                    out.sum().backward()
            return out

        return call
    if kind == "mp":
        mp, (h, row_ptr, col, e) = mp_inputs(E, degree, C, seed, device)
        block = mp if impl == "fused" else PlainMessagePassing(mp)
        h.requires_grad_(passes == "fwd+bwd")

        def call():
            out_h, out_e = block(h, row_ptr, col, e)
            if passes == "fwd+bwd":
                (out_h.sum() + out_e.sum()).backward()
            return out_h

        return call

    layer, (y, x, row_ptr, col, f, w) = gno_inputs(E, degree, C, kind, seed, device)
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
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current RSS
    before = _status("VmRSS")
    call()
    print(json.dumps({"extra": _status("VmHWM") - before}))


def peak_extra(kind, impl, passes, E, degree, C, seed, threads) -> int | None:
    """CPU: peak extra resident memory of one warm call, measured in a fresh child process."""
    cmd = [sys.executable, "-m", __spec__.name, "--child", kind, impl, passes, str(E), str(degree), str(C),
           str(seed), str(threads)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if res.returncode != 0:
        print(f"  memory child failed ({kind} {impl} {passes}): {res.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(res.stdout.strip().splitlines()[-1])["extra"]


def run_cell(args, dev, kind, impl, passes, E):
    """(median seconds, peak extra bytes or None) of one implementation of one cell."""
    call = make_call(kind, impl, passes, E, args.degree, args.channels, args.seed, dev)
    t = measure(call, repeat=args.repeat, warmup=1, device=dev, max_seconds=args.max_seconds)
    if args.no_memory:
        return t, None
    if dev.type == "cuda":
        return t, cuda_peak_extra(call, dev)  # the timing calls were its warm-up
    return t, peak_extra(kind, impl, passes, E, args.degree, args.channels, args.seed, torch.get_num_threads())


def target_note(dev, kind, passes, E, C, t_fused, t_plain, mem_fused) -> str:
    """The issue's target for this row and whether it is met ("" where the issue sets none)."""
    if kind != "linear" or t_fused is None:
        return ""
    if dev.type == "cuda" and (E, C) == (GPU_TARGET["E"], GPU_TARGET["C"]):
        ms = GPU_TARGET[f"{passes}_ms"]
        ok = t_fused * 1e3 <= ms
        text = f"<= {ms:g} ms"
        if passes == "fwd":
            gib = GPU_TARGET["fwd_gib"]
            if mem_fused is None:
                return f"{text}: {'met' if ok else 'NOT met'}; <= {gib:g} GiB: not measured"
            ok = ok and mem_fused <= gib * 2**30
            text += f", <= {gib:g} GiB ({mem_fused / 2**30:.2f} GiB)"
        return f"{text}: {'met' if ok else 'NOT met'}"
    if dev.type == "cpu" and passes == "fwd+bwd" and (E, C) == (CPU_TARGET["E"], CPU_TARGET["C"]):
        frac = CPU_TARGET["fwd+bwd_exc"]
        if mem_fused is None or t_plain is None:
            return f"<= {frac:g} ExC, no slower than plain: not measured"
        ok = mem_fused <= frac * E * C * 4 and t_fused <= t_plain
        return f"<= {frac:g} ExC, no slower than plain: {'met' if ok else 'NOT met'}"
    return ""


# --------------------------------------------------------------------------- main


def main(argv=None) -> None:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        ns = argparse.Namespace(kind=sys.argv[2], impl=sys.argv[3], passes=sys.argv[4], E=int(sys.argv[5]),
                                degree=int(sys.argv[6]), C=int(sys.argv[7]), seed=int(sys.argv[8]),
                                threads=int(sys.argv[9]))  # fmt: skip
        return child_peak_extra(ns)

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)
    p.add_argument("--edges", default=None,
                   help="E, number of edges (default 12.8M = 400k x 32 on cuda, the issue's size; 1M on cpu)")
    p.add_argument("--degree", type=int, default=32)
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--kinds", default=",".join(KINDS),
                   help="comma list of GNO transforms and/or 'mp', 'mp_node' (message passing)")
    p.add_argument("--repeat", type=int, default=None, help="timed calls per cell (default 10 cuda, 3 cpu)")
    p.add_argument("--precision", choices=("tf32", "ieee"), default="tf32",
                   help="cuda only: torch.backends.cuda.matmul.allow_tf32 for the whole run, fused and plain "
                        "alike (default tf32); ignored on cpu")  # fmt: skip
    p.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    p.add_argument("--skip-plain-at", default="16M",
                   help="do not run the plain peers at or above this many edges (memory)")
    args = parse_common(p, argv)
    kinds = choice_list(p, args.kinds, KINDS, "kind")
    dev = torch.device(args.device)
    on_cuda = dev.type == "cuda"
    if args.repeat is None:
        args.repeat = 10 if on_cuda else 3
    if args.quick:
        E = parse_count("1M" if on_cuda else "64k")
    else:
        E = parse_count(args.edges or ("12.8M" if on_cuda else "1M"))
    C, degree = args.channels, args.degree
    E = max(1, E // degree) * degree  # what the inputs hold
    skip_plain = E >= parse_count(args.skip_plain_at)

    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
        precision = (f"matmul precision {args.precision} (torch.backends.cuda.matmul.allow_tf32 = "
                     f"{torch.backends.cuda.matmul.allow_tf32}) for fused and plain alike; "
                     f"peak extra = torch.cuda.max_memory_allocated during one warm call")  # fmt: skip
        print(f"# {machine_description(dev)}")
    else:
        precision = "exact float32 (--precision ignored on cpu); peak extra = VmHWM - VmRSS of a child process"
        busy = busy_cpus()
        print(f"# {machine_description('cpu')}; busy CPUs before run: {busy if busy is None else round(busy, 2)}")
    print(f"# command: {command_line(__file__)}")
    print(f"# E = {format_count(E)} edges (M = N = {format_count(E // degree)} points), degree {degree}, C = {C}, "
          f"kernel MLP 2d(+C) -> 64 -> 64 -> C (d = 3), GELU, float32, {time.strftime('%Y-%m-%d')}")
    print(f"# {precision}")
    if on_cuda:
        print(f"# issue target (GNOIntegral linear at E = 12.8M, C = 64, H100): fwd <= 3 ms and <= 1 GiB "
              f"peak extra, fwd+bwd <= 10 ms")
    unit = E * C * 4  # one E x C float32 tensor

    lines = ["| layer | pass | pyengine ms | plain ms | speedup | pyengine peak extra MiB (x ExC f32) | "
             "plain peak extra MiB (x ExC f32) | max abs diff | target |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for kind in kinds:
        for passes in ("fwd", "fwd+bwd") if not kind.startswith("mp") else ("fwd+bwd",):
            what = f"{kind} {passes}"
            cells = {}
            for impl in ("fused",) if skip_plain else ("fused", "plain"):
                cells[impl] = guarded(lambda: run_cell(args, dev, kind, impl, passes, E), f"{what} {impl}",
                                      failed=(None, None))  # fmt: skip
            (t_f, mem_f), note_f = cells["fused"]
            (t_p, mem_p), note_p = cells.get("plain", ((None, None), ""))
            diff = None
            if t_f is not None and t_p is not None:
                diff, _ = guarded(lambda: fwd_diff(kind, E, degree, C, args.seed, dev), f"{what} diff")

            def mem(b):
                return "" if b is None else f"{b / 2**20:.0f} ({b / unit:.2f})"

            name = {"mp": "MessagePassing (edge feats)", "mp_node": "MessagePassing node-only (fused)"}.get(
                kind, f"GNOIntegral {kind}"
            )
            sp = "" if t_f is None or t_p is None else f"{t_p / t_f:.2f}x"
            target = target_note(dev, kind, passes, E, C, t_f, t_p, mem_f)
            lines.append(f"| {name} | {passes} | {_ms(t_f, note_f)} | {_ms(t_p, note_p)} | {sp} | {mem(mem_f)} | "
                         f"{mem(mem_p)} | {'' if diff is None else f'{diff:.1e}'} | {target} |")  # fmt: skip
            print(lines[-1], flush=True)
    print()
    print("\n".join(lines))


def fwd_diff(kind, E, degree, C, seed, dev) -> float:
    """max |fused - plain| of the forward outputs on the same inputs."""
    with torch.no_grad():
        return max_abs_diff(make_call(kind, "fused", "fwd", E, degree, C, seed, dev)(),
                            make_call(kind, "plain", "fwd", E, degree, C, seed, dev)())  # fmt: skip


def _ms(t: float | None, note: str = "") -> str:
    if t is None:
        return note
    v = t * 1e3
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


if __name__ == "__main__":
    main()
