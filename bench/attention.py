"""Benchmark the fused attention aggregation and local integral against the plain
gather -> compute -> scatter PyTorch versions of the same computation.

Inputs: ``N`` random points in the unit cube (3-D), used as both sources and queries,
with a radius graph from ``pyengine.ops.radius_search`` sized for about ``--degree``
neighbors per point (points, features and graph are made on the CPU, so every device
gets the same inputs, then moved to ``--device``; the GPU neighbor search has its own
benchmark, ``bench/neighbors.py``). In the same run, on the same inputs, it times (median, see
``_timing.measure``) and measures the peak extra memory of:

* ``attention op``: ``ops.csr_attention`` (H heads of dim D, per-source keys/values)
  vs gather ``q[row]``, ``k[col]``, ``v[col]`` -> scores -> per-row softmax
  (``scatter_reduce`` amax, ``index_add_``) -> weighted ``index_add_``;
* ``attention layer``: ``nn.AttentionAggregation`` vs the literal layer definition
  (per-edge projection of ``[y_j - x_i, f_j]``, softmax, scatter) with the same weights;
* ``local op``: ``ops.local_basis_aggregate`` vs the ``(E, B, C)`` messages
  ``psi[:, :, None] * (w f)[col][:, None, :]`` scattered with ``index_add_``;
* ``local layer``: ``nn.LocalIntegral`` vs the same layer with the plain aggregation;

each as forward and forward+backward (loss ``(out * w).sum()``, gradients of all
inputs and parameters). "Peak extra" is, on CPU, the process's peak resident memory
during one call minus the resident memory before it (Linux ``/proc/self/status`` VmHWM
after resetting it through ``/proc/self/clear_refs``; large allocations are forced to
``mmap`` (``MALLOC_MMAP_THRESHOLD_``) so freed memory is returned and not reused
invisibly); on CUDA, ``torch.cuda.max_memory_allocated()`` during one call minus the
memory allocated before it (``_timing.cuda_peak_extra``). It includes the outputs and
the autograd graph the call creates. A cell that fails (CUDA out of memory, or any
error) is reported as ``OOM`` / ``error`` and the run goes on.

Sizes: N = 20k on CPU, 200k on CUDA (4k / 20k with ``--quick``). On CUDA a ``target``
column checks the issue's target for the attention rows: the fused attention
aggregation at least 5x faster than plain. The matmuls (``nn.Linear`` projections,
the same for fused and plain) run at PyTorch's default precision (no TF32).

Examples::

    python -m bench.attention --markdown
    python -m bench.attention --quick
    python -m bench.attention --device cuda --markdown        # N = 200k
    python -m bench.attention --points 50k --degree 32 --heads 4 --head-dim 16
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import re
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
    # Re-run with large allocations served by mmap, so the memory numbers are honest.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    os.execve(sys.executable, [sys.executable, "-m", __spec__.name] + sys.argv[1:], env)

import torch  # noqa: E402

from ._timing import (  # noqa: E402
    add_common_args,
    busy_cpus,
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

from pyengine import ops  # noqa: E402
from pyengine.nn import AttentionAggregation, LocalIntegral  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_extra_bytes(fn) -> float | None:
    """Peak resident memory during one fn() call beyond the resident memory before it."""
    try:
        _trim()
        base = _status_kib("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        out = fn()
        peak = _status_kib("VmHWM")
        del out
        _trim()
        return max(0, peak - base) * 1024.0
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- plain peers


def plain_softmax_aggregate(s, v_e, row, M):
    """sum_e softmax_row(s)[e] v_e with scatter ops; s (E, H), v_e (E, H, D)."""
    E, H = s.shape
    idx = row[:, None].expand(E, H)
    m = torch.full((M, H), -math.inf, dtype=s.dtype, device=s.device).scatter_reduce(
        0, idx, s.detach(), "amax", include_self=True)
    p = torch.exp(s - m[row])
    z = torch.zeros(M, H, dtype=s.dtype, device=s.device).index_add_(0, row, p)
    a = p / z[row]
    return torch.zeros(M, H, v_e.shape[2], dtype=s.dtype, device=s.device).index_add_(0, row, a.unsqueeze(-1) * v_e)


def plain_attention_op(q, k, v, row, col):
    s = (q[row] * k[col]).sum(-1) / math.sqrt(q.shape[2])
    return plain_softmax_aggregate(s, v[col], row, q.shape[0])


def plain_attention_layer(layer, y, x, row, col, f_y):
    M, E, H, D = x.shape[0], col.shape[0], layer.heads, layer.head_dim
    q = layer.query(x)[row].view(E, H, D)
    edge_in = torch.cat([y[col] - x[row], f_y[col]], 1)
    k = layer.key(edge_in).view(E, H, D)
    v = layer.value(edge_in).view(E, H, D)
    agg = plain_softmax_aggregate((q * k).sum(-1) * layer.scale, v, row, M)
    return layer.out(agg.reshape(M, H * D))


def plain_local_op(psi, f, w, row, col, M):
    msg = psi.unsqueeze(2) * (f[col] * w[col].unsqueeze(1)).unsqueeze(1)  # (E, B, C)
    return torch.zeros(M, psi.shape[1], f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, row, msg)


def plain_local_layer(layer, y, x, row_ptr, col, row, f, w):
    psi = layer.basis(y[col] - x[row])
    a = plain_local_op(psi, f, w, row, col, x.shape[0])
    M, B, C = a.shape
    return a.reshape(M, B * C) @ layer.theta.reshape(B * C, -1) + layer.bias


# --------------------------------------------------------------------------- runner


def fwd_bwd(fn, inputs, params):
    def run():
        out = fn()
        out.backward(torch.ones_like(out) / out.numel() ** 0.5)
        for t in list(inputs) + list(params):
            t.grad = None
        return None

    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--points", default=None, help="number of points N, sources = queries (default 200k cuda, 20k cpu)")
    p.add_argument("--degree", type=int, default=32, help="target average neighbors per point")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--channels", type=int, default=32, help="feature channels of the local integral")
    args = parse_common(p, argv)
    dev = torch.device(args.device)
    on_cuda = dev.type == "cuda"
    if args.quick:
        N = 20_000 if on_cuda else 4000
    else:
        N = parse_count(args.points or ("200k" if on_cuda else "20k"))
    max_s = args.max_seconds if args.max_seconds is not None else (1.0 if args.quick else 3.0)
    torch.manual_seed(args.seed)
    busy = None if on_cuda else busy_cpus()

    # Inputs are made on the CPU (the same on every device), then moved.
    pts = torch.rand(N, 3)
    radius = (3 * args.degree / (4 * math.pi * N)) ** (1 / 3)
    row_ptr, col = ops.radius_search(pts, pts, radius)
    E = col.numel()
    pts, row_ptr, col = pts.to(dev), row_ptr.to(dev), col.to(dev)
    row = ops.row_index(row_ptr, E)
    H, D, C = args.heads, args.head_dim, args.channels
    log(f"N = {N}, radius {radius:.4f}, E = {E} ({E / N:.1f} per point), H = {H}, D = {D}, C = {C}, on {dev}")

    def leaf(*shape):
        return torch.randn(*shape).to(dev).requires_grad_(True)

    def time_and_memory(fn):
        t = measure(fn, repeat=10, warmup=1, device=dev, max_seconds=max_s)
        return t, cuda_peak_extra(fn, dev) if on_cuda else peak_extra_bytes(fn)

    results = []

    def compare(case, fused, plain, inputs=(), params=()):
        diff, _ = guarded(lambda: _fwd_diff(fused, plain), f"{case} max abs diff")
        for mode in ("forward", "forward+backward"):
            if mode == "forward":
                fns = [_no_grad(fused), _no_grad(plain)]
            else:
                fns = [fwd_bwd(fused, inputs, params), fwd_bwd(plain, inputs, params)]
            cells = [guarded(lambda: time_and_memory(fn), f"{case} {mode} {impl}", failed=(None, None))
                     for fn, impl in zip(fns, ("fused", "plain"))]  # fmt: skip
            times = [c[0][0] for c in cells]
            mems = [c[0][1] for c in cells]
            notes = [c[1] for c in cells]
            results.append((case, mode, times, mems, notes, diff))
            log(f"{case:16s} {mode:17s} fused {_ms(times[0], notes[0]):>9s} ms  plain {_ms(times[1], notes[1]):>9s} ms"
                f"  mem {_mib(mems[0])} / {_mib(mems[1])} MiB")

    # attention op
    q, k, v = leaf(N, H, D), leaf(N, H, D), leaf(N, H, D)
    compare("attention op", lambda: ops.csr_attention(q, k, v, row_ptr, col),
            lambda: plain_attention_op(q, k, v, row, col), inputs=(q, k, v))

    # attention layer
    layer = AttentionAggregation(C, H * D, 3, heads=H, head_dim=D).to(dev)
    f = leaf(N, C)
    y = pts.clone().requires_grad_(True)
    compare("attention layer", lambda: layer(y, y, row_ptr, col, f),
            lambda: plain_attention_layer(layer, y, y, row, col, f), inputs=(y, f), params=layer.parameters())

    # local op and layer
    local = LocalIntegral(C, C, 3, radius=radius, angular_order=1)
    with torch.no_grad():
        local.bias.normal_()
    local = local.to(dev)
    w = torch.full((N,), 1.0 / N, device=dev)
    psi = local.basis_values(pts, pts, row_ptr, col).requires_grad_(True)
    compare("local op", lambda: ops.local_basis_aggregate(psi, f, row_ptr, col, w),
            lambda: plain_local_op(psi, f, w, row, col, N), inputs=(psi, f))
    compare("local layer", lambda: local(y, y, row_ptr, col, f, w),
            lambda: plain_local_layer(local, y, y, row_ptr, col, row, f, w), inputs=(y, f),
            params=local.parameters())

    print(f"# {command_line(__file__)}")
    print(f"# {machine_description(dev)}; {time.strftime('%Y-%m-%d', time.gmtime())}")
    setup = (f"# N = {format_count(N)} points, E = {format_count(E)} edges ({E / N:.1f}/point), heads {H} x dim {D}, "
             f"local C = {C}, B = {local.basis.num_bases}; ")  # fmt: skip
    if on_cuda:
        print(setup + f"torch.backends.cuda.matmul.allow_tf32 = {torch.backends.cuda.matmul.allow_tf32} (not set "
              "here) for fused and plain; peak extra = torch.cuda.max_memory_allocated during one warm call")
        print("# issue target (GPU): attention aggregation >= 5x faster than plain")
    else:
        busy_end = busy_cpus()
        print(setup + f"other CPUs busy: {'?' if busy is None else f'{busy:.2f}'} at start, "
              f"{'?' if busy_end is None else f'{busy_end:.2f}'} at end")
    head, lines = table(results, target=on_cuda)
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|---|---|" + "---:|" * (len(head) - 2))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(head)]
        for line in [head] + lines:
            print("  ".join(c.ljust(wd) for c, wd in zip(line, widths)))
    return 0


def table(results, target: bool) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the report; ``target`` adds the issue's GPU target column (attention >= 5x)."""
    head = ["case", "pass", "fused ms", "plain ms", "speedup (plain/fused)", "fused peak extra MiB",
            "plain peak extra MiB", "memory ratio (plain/fused)", "max abs diff"] + (["target"] if target else [])
    lines = []
    for case, mode, t, m, notes, diff in results:
        speedup = None if None in t else t[1] / t[0]
        line = [case, mode, _ms(t[0], notes[0]), _ms(t[1], notes[1]), "" if speedup is None else f"{speedup:.2f}x",
                _mib(m[0]), _mib(m[1]), "" if None in m or not m[0] else f"{m[1] / m[0]:.1f}x",
                "" if diff is None else f"{diff:.1e}"]  # fmt: skip
        if target:
            judged = speedup is not None and case.startswith("attention")
            line.append(f">= 5x: {'met' if speedup >= 5 else 'NOT met'}" if judged else "")
        lines.append(line)
    return head, lines


def _fwd_diff(fused, plain) -> float:
    with torch.no_grad():
        return max_abs_diff(fused(), plain())


def _no_grad(fn):
    def run():
        with torch.no_grad():
            return fn()

    return run


def _mib(b):
    return "?" if b is None else f"{b / 2**20:.1f}"


def _ms(t, note=""):
    return note if t is None else f"{t * 1e3:.2f}"


if __name__ == "__main__":
    sys.exit(main())
