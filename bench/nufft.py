"""Benchmark pyengine's NUFFT (types 1, 2 and 3) and SpectralConvPoints against their peers.

Transforms (random points uniform in [0, 2 pi)^d, random complex strengths / modes):

* CPU: ``finufft`` (Plan interface, same thread count as torch), execute only: both
  sides sort the points beforehand (our ``NUFFTPlan``, finufft's ``setpts``);
* CUDA: the dense Fourier-matrix product (what the peer neural-operator codebases do,
  O(M K)), chunked over points so the matrix fits in memory, and ``torchkbnufft``
  where it imports.

Each row reports our time, the peer's, the speedup (peer / ours), the relative L2
difference between our result and the peer's (in the "max abs diff" column), our
throughput in non-uniform points per second (points x channels / time), and, on
CPU, both results' relative errors against the exact sum on a sample (16 modes /
2000 points, float64); ``match`` means our error vs the exact sum is within 10 eps.
(finufft's single precision computes coordinates in float32 and loses accuracy on
large grids, so the ours-vs-finufft difference can exceed eps while ours does not.)

Upsampling factor 1.25: types 1 and 2 once more with ``upsampfac=1.25`` on both sides
(finufft's ``upsampfac`` option), at max(eps, 1e-5) (the float32 floor at 1.25).

Type 3 (non-uniform frequencies): M sources in [-pi, pi)^d and M/2 targets in
[-K/2, K/2)^d (K = --modes, the same space-bandwidth product as the type-1 rows), vs
finufft's type-3 plan on CPU and the dense exp matrix on CUDA; both planned beforehand.

Layer: ``SpectralConvPoints`` forward (plan reused, as in training on a fixed
geometry) vs the dense Fourier-matrix layer computing the same thing (the matrix is
built inside forward, as the peers do, in chunks of points).

Examples::

    python -m bench.nufft --device cpu --markdown                 # 3-D, 1M points, 64^3, eps 1e-6, complex64
    python -m bench.nufft --device cpu --points 250k --quick
    python -m bench.nufft --device cuda --points 10M --eps 1e-3 --no-input-checks
    python -m bench.nufft --device cuda --points 1M --batch 32 --eps 1e-3 --no-input-checks
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import warnings

import numpy as np
import torch

from ._timing import (  # noqa: E402
    Row,
    add_common_args,
    busy_cpus,
    format_count,
    machine_description,
    measure,
    parse_common,
    parse_count,
    print_table,
)

from pyengine.nn import SpectralConvPoints  # noqa: E402
from pyengine.ops import NUFFT3Plan, NUFFTAccuracyWarning, NUFFTPlan, set_input_checks  # noqa: E402

DTYPES = {"complex64": torch.complex64, "complex128": torch.complex128}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rel_diff(a, b) -> float:
    a = torch.as_tensor(a).to(torch.complex128).cpu()
    b = torch.as_tensor(b).to(torch.complex128).cpu()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def mode_grid(n_modes, device):
    axes = [torch.arange(n, device=device, dtype=torch.float32) - n // 2 for n in n_modes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(n_modes))


def exact_errors_type1(x, c, n_modes, isign, results, count=16, seed=0):
    """Relative L2 error of each result against the exact sum, on `count` random modes (float64)."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randint(0, n, (count,), generator=gen) for n in n_modes], 1)
    k = (idx - torch.tensor([n // 2 for n in n_modes])).double()
    exact = c.cpu().to(torch.complex128) @ torch.exp(isign * 1j * (x.cpu().double() @ k.T))  # (B, count)
    sel = (slice(None),) + tuple(idx[:, i] for i in range(len(n_modes)))
    return [rel_diff(torch.as_tensor(r).reshape(exact.shape[0], *n_modes)[sel], exact) for r in results]


def exact_errors_type2(x, f, isign, results, count=2000, seed=0):
    """Relative L2 error of each result against the exact sum, at `count` random points (float64)."""
    gen = torch.Generator().manual_seed(seed)
    j = torch.randint(0, x.shape[0], (count,), generator=gen)
    n_modes = f.shape[1:]
    k = mode_grid(n_modes, "cpu").double()
    exact = f.cpu().to(torch.complex128).reshape(f.shape[0], -1) @ torch.exp(isign * 1j * (x[j].cpu().double() @ k.T)).T
    return [rel_diff(torch.as_tensor(r).reshape(exact.shape[0], -1)[:, j], exact) for r in results]


# --------------------------------------------------------------------------- peers


def finufft_peer(kind, x, n_modes, eps, dtype, nthreads, batch, **opts):
    import finufft

    d = x.shape[1]
    plan = finufft.Plan(kind, tuple(n_modes), n_trans=batch, eps=eps, dtype=str(dtype).split(".")[1],
                        nthreads=nthreads, **opts)
    plan.setpts(*[np.ascontiguousarray(x[:, i].cpu().numpy().astype(np.float64 if dtype == torch.complex128
                                                                        else np.float32)) for i in range(d)])
    return plan


def dense_type1(x, c, n_modes, isign, chunk):
    k = mode_grid(n_modes, x.device).to(x.dtype)
    out = torch.zeros(c.shape[0], k.shape[0], dtype=c.dtype, device=c.device)
    for s in range(0, x.shape[0], chunk):
        e = torch.exp(isign * 1j * (x[s:s + chunk] @ k.T)).to(c.dtype)  # (chunk, K)
        out += c[:, s:s + chunk] @ e
    return out.reshape(c.shape[0], *n_modes)


def dense_type2(x, f, isign, chunk):
    n_modes = f.shape[1:]
    k = mode_grid(n_modes, x.device).to(x.dtype)
    flat = f.reshape(f.shape[0], -1)
    out = []
    for s in range(0, x.shape[0], chunk):
        e = torch.exp(isign * 1j * (x[s:s + chunk] @ k.T)).to(f.dtype)
        out.append(flat @ e.T)
    return torch.cat(out, 1)


def dense_layer(layer, points, x, chunk):
    """The dense Fourier-matrix layer: E[j, k] = exp(-i k . theta_j), built in forward."""
    theta = points * (2 * math.pi / layer.period)
    k = mode_grid(layer.n_modes, points.device)
    cin, cout = layer.in_channels, layer.out_channels
    W = layer.weight.reshape(cin, cout, -1)
    coeffs = torch.zeros(cin, k.shape[0], dtype=torch.complex64, device=points.device)
    xw = (x / x.shape[0]).to(torch.complex64)
    for s in range(0, theta.shape[0], chunk):
        e = torch.exp(-1j * (theta[s:s + chunk] @ k.T))
        coeffs += xw[s:s + chunk].T @ e
    mixed = torch.einsum("ik,iok->ok", coeffs, W)
    out = []
    for s in range(0, theta.shape[0], chunk):
        e = torch.exp(1j * (theta[s:s + chunk] @ k.T))
        out.append((e @ mixed.T).real)
    return torch.cat(out, 0)


# --------------------------------------------------------------------------- benchmark


def bench_transforms(args, dev, rows, upsampfac=None):
    dtype = DTYPES[args.dtype]
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    d, M, B = args.dim, args.points, args.batch
    n_modes = (args.modes,) * d
    gen = torch.Generator().manual_seed(args.seed)
    x = (torch.rand(M, d, generator=gen, dtype=torch.float64) * 2 * math.pi).to(real)
    c = torch.randn(B, M, generator=gen, dtype=dtype)
    f = torch.randn(B, *n_modes, generator=gen, dtype=dtype)
    xd, cd, fd = x.to(dev), c.to(dev), f.to(dev)
    eps = args.eps if upsampfac is None else max(args.eps, 1e-5)
    budget = args.max_seconds
    opts = {} if upsampfac is None else {"upsampfac": upsampfac}
    with warnings.catch_warnings():
        # A tolerance below the dtype's floor at this sigma runs at the floor (with a warning).
        # Both sides then run and are judged at that effective tolerance, so the row compares
        # like with like.
        warnings.simplefilter("ignore", NUFFTAccuracyWarning)
        eps = NUFFTPlan(xd, n_modes, eps, dtype, **opts).eps
    case = f"{d}D M={format_count(M)} B={B} {args.modes}^{d} eps={eps:g} {args.dtype}"
    if upsampfac is not None:
        case += f" sigma={upsampfac:g}"

    plan = NUFFTPlan(xd, n_modes, eps, dtype, **opts)
    t_plan = measure(lambda: NUFFTPlan(xd, n_modes, eps, dtype, **opts), repeat=3, warmup=1, device=dev,
                     max_seconds=budget)
    ours1 = plan.type1(cd)
    ours2 = plan.type2(fd)
    t1 = measure(lambda: plan.type1(cd), repeat=10, warmup=1, device=dev, max_seconds=budget)
    t2 = measure(lambda: plan.type2(fd), repeat=10, warmup=1, device=dev, max_seconds=budget)
    rate = lambda t: f"{M * B / t:.3g} pts/s"  # noqa: E731
    log(f"{case}: plan (sort) {t_plan * 1e3:.1f} ms, type 1 {t1 * 1e3:.1f} ms, type 2 {t2 * 1e3:.1f} ms")

    if dev.type == "cpu":
        try:
            nt = torch.get_num_threads()
            p1 = finufft_peer(1, x, n_modes, eps, dtype, nt, B, **opts)
            p2 = finufft_peer(2, x, n_modes, eps, dtype, nt, B, **opts)
            cn = c.numpy() if B > 1 else c[0].numpy()
            fn = f.numpy() if B > 1 else f[0].numpy()
            ref1, ref2 = p1.execute(cn), p2.execute(fn)
            pt1 = measure(lambda: p1.execute(cn), repeat=10, warmup=1, max_seconds=budget)
            pt2 = measure(lambda: p2.execute(fn), repeat=10, warmup=1, max_seconds=budget)
            e1 = rel_diff(ours1, torch.from_numpy(ref1).reshape(ours1.shape))
            e2 = rel_diff(ours2, torch.from_numpy(ref2).reshape(ours2.shape))
            # Both against the exact sum on a sample: which of the two is off when they differ.
            x1 = exact_errors_type1(x, c, n_modes, 1, [ours1, ref1])
            x2 = exact_errors_type2(x, f, -1, [ours2, ref2])
            peer = f"finufft {getattr(sys.modules['finufft'], '__version__', '')} ({nt} thr)"
            note = "{}; err vs exact: ours {:.1e}, finufft {:.1e}"
            rows.append(Row(case, "type 1", t1, peer, pt1, e1, x1[0] <= 10 * eps,
                            note=note.format(rate(t1), *x1)))
            rows.append(Row(case, "type 2", t2, peer, pt2, e2, x2[0] <= 10 * eps,
                            note=note.format(rate(t2), *x2)))
        except ImportError:
            log("finufft not installed: no CPU peer")
            rows.append(Row(case, "type 1", t1, note=rate(t1)))
            rows.append(Row(case, "type 2", t2, note=rate(t2)))
    else:
        chunk = max(1, 2**28 // (math.prod(n_modes) * 8))
        d1 = dense_type1(xd, cd, n_modes, 1, chunk)
        d2 = dense_type2(xd, fd, -1, chunk)
        pt1 = measure(lambda: dense_type1(xd, cd, n_modes, 1, chunk), repeat=3, warmup=1, device=dev, max_seconds=budget)
        pt2 = measure(lambda: dense_type2(xd, fd, -1, chunk), repeat=3, warmup=1, device=dev, max_seconds=budget)
        e1, e2 = rel_diff(ours1, d1), rel_diff(ours2, d2)
        rows.append(Row(case, "type 1", t1, "dense Fourier matrix", pt1, e1, e1 <= 10 * max(eps, 1e-5),
                        note=rate(t1)))
        rows.append(Row(case, "type 2", t2, "dense Fourier matrix", pt2, e2, e2 <= 10 * max(eps, 1e-5),
                        note=rate(t2)))
        try:
            import torchkbnufft as tkbn  # noqa: F401

            log("torchkbnufft is installed but not wired into this benchmark yet")
        except ImportError:
            log("torchkbnufft not installed: skipped")
    rows.append(Row(case, "plan (sort)", t_plan, note="once per geometry"))


def bench_type3(args, dev, rows):
    """Type 3 at the type-1 rows' space-bandwidth product: M sources, M/2 targets."""
    dtype = DTYPES[args.dtype]
    real = torch.float32 if dtype == torch.complex64 else torch.float64
    d, M, B, K = args.dim, args.points, args.batch, args.modes
    N = max(1, M // 2)
    gen = torch.Generator().manual_seed(args.seed + 3)
    x = ((torch.rand(M, d, generator=gen, dtype=torch.float64) * 2 - 1) * math.pi).to(real)
    s = ((torch.rand(N, d, generator=gen, dtype=torch.float64) - 0.5) * K).to(real)
    c = torch.randn(B, M, generator=gen, dtype=dtype)
    xd, sd, cd = x.to(dev), s.to(dev), c.to(dev)
    case = f"type 3 {d}D M={format_count(M)} N={format_count(N)} B={B} |s|<={K // 2} eps={args.eps:g} {args.dtype}"
    budget = args.max_seconds
    plan = NUFFT3Plan(xd, sd, args.eps, dtype)
    ours = plan.execute(cd)
    t = measure(lambda: plan.execute(cd), repeat=5, warmup=1, device=dev, max_seconds=budget)
    rate = f"{M * B / t:.3g} pts/s, sigma={plan.upsampfac:g}"
    # exact sum on a sample of targets (float64), for both sides
    idx = torch.randperm(N, generator=gen)[:200]
    phase = (s[idx].double() @ x.double().T)  # (200, M)
    exact = (c.to(torch.complex128) @ torch.exp(1j * phase).T)  # (B, 200)

    def err_vs_exact(out):
        o = torch.as_tensor(out).reshape(B, N)[:, idx].to(torch.complex128)
        return float((o - exact).norm() / exact.norm())

    if dev.type == "cpu":
        try:
            import finufft

            nt = torch.get_num_threads()
            fp = finufft.Plan(3, d, n_trans=B, eps=args.eps, dtype=args.dtype, nthreads=nt)
            np_real = np.float64 if dtype == torch.complex128 else np.float32
            xs = [np.ascontiguousarray(x[:, i].numpy().astype(np_real)) for i in range(d)]
            ss = [np.ascontiguousarray(s[:, i].numpy().astype(np_real)) for i in range(d)]
            fp.setpts(*xs, *ss)
            cn = c.numpy() if B > 1 else c[0].numpy()
            ref = fp.execute(cn)
            pt = measure(lambda: fp.execute(cn), repeat=5, warmup=1, max_seconds=budget)
            e = rel_diff(ours, torch.from_numpy(ref).reshape(ours.shape))
            eo, ef = err_vs_exact(ours), err_vs_exact(torch.from_numpy(ref))
            peer = f"finufft {getattr(finufft, '__version__', '')} ({nt} thr)"
            rows.append(Row(case, "type 3", t, peer, pt, e, eo <= 10 * args.eps,
                            note=f"{rate}; err vs exact: ours {eo:.1e}, finufft {ef:.1e}"))
        except ImportError:
            log("finufft not installed: no CPU peer for type 3")
            rows.append(Row(case, "type 3", t, note=rate))
    else:
        chunk = max(1, 2**27 // (M * 8))

        def dense():
            out = []
            for i in range(0, N, chunk):
                out.append(cd @ torch.exp(1j * (sd[i:i + chunk] @ xd.T)).T.to(dtype))
            return torch.cat(out, dim=1)

        ref = dense()
        pt = measure(dense, repeat=3, warmup=1, device=dev, max_seconds=budget)
        e = rel_diff(ours, ref)
        rows.append(Row(case, "type 3", t, "dense exp matrix", pt, e, e <= 10 * max(args.eps, 1e-5), note=rate))


def bench_layer(args, dev, rows):
    N, m, C = args.layer_points, args.layer_modes, args.layer_channels
    torch.manual_seed(args.seed)
    layer = SpectralConvPoints(C, C, (m, m, m), 3, eps=args.eps).to(dev)
    points = torch.rand(N, 3, device=dev) * 6
    x = torch.randn(N, C, device=dev)
    plan = layer.make_plan(points)
    chunk = max(1, 2**27 // (m**3 * 8))
    with torch.no_grad():
        ours = layer(points, x, plan=plan)
        ref = dense_layer(layer, points, x, chunk)
        t = measure(lambda: layer(points, x, plan=plan), repeat=5, warmup=1, device=dev, max_seconds=args.max_seconds)
        tp = measure(lambda: dense_layer(layer, points, x, chunk), repeat=3, warmup=1, device=dev,
                     max_seconds=args.max_seconds)
    e = rel_diff(ours, ref)
    rows.append(Row(f"SpectralConvPoints N={format_count(N)} C={C} {m}^3", "forward", t, "dense Fourier layer", tp,
                    e, e <= 1e-3, note=f"eps={args.eps:g}, complex64"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--dim", type=int, choices=(1, 2, 3), default=3)
    parser.add_argument("--points", type=parse_count, default=None, help="M (default 1M; --quick 100k)")
    parser.add_argument("--modes", type=int, default=64, help="modes per dimension")
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--batch", type=int, default=1, help="transforms sharing the points (channels)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="complex64")
    parser.add_argument("--layer-points", type=parse_count, default=None,
                        help="N for the layer benchmark (default 100k on cuda, 20k on cpu)")
    parser.add_argument("--layer-modes", type=int, default=None, help="modes per dimension (default 32 cuda, 16 cpu)")
    parser.add_argument("--layer-channels", type=int, default=16)
    parser.add_argument("--no-layer", action="store_true")
    parser.add_argument("--no-sigma125", action="store_true", help="skip the upsampfac=1.25 rows")
    parser.add_argument("--no-type3", action="store_true", help="skip the type-3 row")
    parser.add_argument("--no-input-checks", action="store_true",
                        help="skip the per-call data checks of perm / bin_ptr (one device sync each on CUDA)")
    args = parse_common(parser, argv)
    dev = torch.device(args.device)
    cpu = dev.type == "cpu"
    if args.max_seconds is None and cpu:
        args.max_seconds = 3.0
    if args.points is None:
        args.points = 100_000 if args.quick else 1_000_000
    if args.quick:
        args.modes = min(args.modes, 32)
    if args.layer_points is None:
        args.layer_points = 5_000 if args.quick else (20_000 if cpu else 100_000)
    if args.layer_modes is None:
        args.layer_modes = 8 if args.quick else (16 if cpu else 32)

    if args.no_input_checks:
        set_input_checks(False)
    log(f"machine: {machine_description(dev)}")
    if cpu:
        busy = busy_cpus()
        log(f"other busy CPUs at start: {busy:.2f}" if busy is not None else "busy CPUs: unknown")
    rows: list[Row] = []
    bench_transforms(args, dev, rows)
    if not args.no_sigma125:
        bench_transforms(args, dev, rows, upsampfac=1.25)
    if not args.no_type3:
        bench_type3(args, dev, rows)
    if not args.no_layer:
        bench_layer(args, dev, rows)
    if cpu:
        busy = busy_cpus()
        log(f"other busy CPUs at end: {busy:.2f}" if busy is not None else "")
    log("command: python -m bench.nufft " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    print_table(rows, markdown=args.markdown, show_bandwidth=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
