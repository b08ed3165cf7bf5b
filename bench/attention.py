"""Benchmark the fused attention aggregation and local integral against the plain
gather -> compute -> scatter PyTorch versions of the same computation.

Inputs: ``N`` random points in the unit cube (3-D), used as both sources and queries,
with a radius graph from ``pyengine.ops.radius_search`` sized for about ``--degree``
neighbors per point. In the same run, on the same inputs, it times (median, see
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
inputs and parameters). "Peak extra" is the process's peak resident memory during
one call minus the resident memory before it (Linux ``/proc/self/status`` VmHWM after
resetting it through ``/proc/self/clear_refs``); large allocations are forced to
``mmap`` (``MALLOC_MMAP_THRESHOLD_``) so freed memory is returned and not reused
invisibly. It includes the outputs and the autograd graph the call creates.

Examples::

    python bench/attention.py --markdown
    python bench/attention.py --quick
    python bench/attention.py --points 50k --degree 32 --heads 4 --head-dim 16
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import re
import shlex
import sys
import time

if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and sys.platform.startswith("linux"):
    # Re-run with large allocations served by mmap, so the memory numbers are honest.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import add_common_args, busy_cpus, format_count, machine_description, max_abs_diff, measure  # noqa: E402
from _timing import parse_common, parse_count  # noqa: E402

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


def edge_rows(row_ptr, E):
    M = row_ptr.numel() - 1
    return torch.repeat_interleave(torch.arange(M), row_ptr.diff(), output_size=E)


def plain_softmax_aggregate(s, v_e, row, M):
    """sum_e softmax_row(s)[e] v_e with scatter ops; s (E, H), v_e (E, H, D)."""
    E, H = s.shape
    idx = row[:, None].expand(E, H)
    m = torch.full((M, H), -math.inf, dtype=s.dtype).scatter_reduce(0, idx, s.detach(), "amax", include_self=True)
    p = torch.exp(s - m[row])
    z = torch.zeros(M, H, dtype=s.dtype).index_add_(0, row, p)
    a = p / z[row]
    return torch.zeros(M, H, v_e.shape[2], dtype=s.dtype).index_add_(0, row, a.unsqueeze(-1) * v_e)


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
    return torch.zeros(M, psi.shape[1], f.shape[1], dtype=f.dtype).index_add_(0, row, msg)


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
    p.add_argument("--points", default="20k", help="number of points N (sources = queries)")
    p.add_argument("--degree", type=int, default=32, help="target average neighbors per point")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--channels", type=int, default=32, help="feature channels of the local integral")
    args = parse_common(p, argv)
    if args.device != "cpu":
        p.error("this benchmark's memory measurement is CPU-only; run it with --device cpu")
    N = 4000 if args.quick else parse_count(args.points)
    max_s = args.max_seconds if args.max_seconds is not None else (1.0 if args.quick else 3.0)
    torch.manual_seed(args.seed)
    busy = busy_cpus()

    pts = torch.rand(N, 3)
    radius = (3 * args.degree / (4 * math.pi * N)) ** (1 / 3)
    row_ptr, col = ops.radius_search(pts, pts, radius)
    E = col.numel()
    row = edge_rows(row_ptr, E)
    H, D, C = args.heads, args.head_dim, args.channels
    log(f"N = {N}, radius {radius:.4f}, E = {E} ({E / N:.1f} per point), H = {H}, D = {D}, C = {C}")

    results = []

    def compare(case, fused, plain, inputs=(), params=()):
        with torch.no_grad():
            diff = max_abs_diff(fused(), plain())
        for mode in ("forward", "forward+backward"):
            if mode == "forward":
                fns = [_no_grad(fused), _no_grad(plain)]
            else:
                fns = [fwd_bwd(fused, inputs, params), fwd_bwd(plain, inputs, params)]
            times = [measure(fn, repeat=10, warmup=1, max_seconds=max_s) for fn in fns]
            mems = [peak_extra_bytes(fn) for fn in fns]
            results.append((case, mode, times, mems, diff))
            log(f"{case:16s} {mode:17s} fused {times[0] * 1e3:9.2f} ms  plain {times[1] * 1e3:9.2f} ms  "
                f"mem {_mib(mems[0])} / {_mib(mems[1])} MiB")

    # attention op
    q = torch.randn(N, H, D, requires_grad=True)
    k = torch.randn(N, H, D, requires_grad=True)
    v = torch.randn(N, H, D, requires_grad=True)
    compare("attention op", lambda: ops.csr_attention(q, k, v, row_ptr, col),
            lambda: plain_attention_op(q, k, v, row, col), inputs=(q, k, v))

    # attention layer
    layer = AttentionAggregation(C, H * D, 3, heads=H, head_dim=D)
    f = torch.randn(N, C, requires_grad=True)
    y = pts.clone().requires_grad_(True)
    compare("attention layer", lambda: layer(y, y, row_ptr, col, f),
            lambda: plain_attention_layer(layer, y, y, row, col, f), inputs=(y, f), params=layer.parameters())

    # local op and layer
    local = LocalIntegral(C, C, 3, radius=radius, angular_order=1)
    w = torch.full((N,), 1.0 / N)
    with torch.no_grad():
        local.bias.normal_()
    psi = local.basis_values(pts, pts, row_ptr, col).requires_grad_(True)
    compare("local op", lambda: ops.local_basis_aggregate(psi, f, row_ptr, col, w),
            lambda: plain_local_op(psi, f, w, row, col, N), inputs=(psi, f))
    compare("local layer", lambda: local(y, y, row_ptr, col, f, w),
            lambda: plain_local_layer(local, y, y, row_ptr, col, row, f, w), inputs=(y, f),
            params=local.parameters())

    busy_end = busy_cpus()
    cmd = "python bench/attention.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"# {cmd}")
    print(f"# {machine_description('cpu')}; {time.strftime('%Y-%m-%d', time.gmtime())}")
    print(f"# N = {format_count(N)} points, E = {format_count(E)} edges ({E / N:.1f}/point), heads {H} x dim {D}, "
          f"local C = {C}, B = {local.basis.num_bases}; other CPUs busy: "
          f"{'?' if busy is None else f'{busy:.2f}'} at start, {'?' if busy_end is None else f'{busy_end:.2f}'} at end")
    head = ["case", "pass", "fused ms", "plain ms", "speedup (plain/fused)", "fused peak extra MiB",
            "plain peak extra MiB", "memory ratio (plain/fused)", "max abs diff"]
    lines = []
    for case, mode, t, m, diff in results:
        ratio = "" if None in m or not m[0] else f"{m[1] / m[0]:.1f}x"
        lines.append([case, mode, f"{t[0] * 1e3:.2f}", f"{t[1] * 1e3:.2f}", f"{t[1] / t[0]:.2f}x", _mib(m[0]),
                      _mib(m[1]), ratio, f"{diff:.1e}"])
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


def _no_grad(fn):
    def run():
        with torch.no_grad():
            return fn()

    return run


def _mib(b):
    return "?" if b is None else f"{b / 2**20:.1f}"


if __name__ == "__main__":
    sys.exit(main())
