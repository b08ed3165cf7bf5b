"""Command line: ``pyengine info`` and ``pyengine demo``.

``demo`` is the main job the README runs. Until the demo pipeline lands (training
a surrogate on generated meshes), it prints the build facts and demonstrates the
first kernel family on a message-passing workload, checked against plain PyTorch.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _time(fn, repeat: int = 5) -> float:
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def _random_graph(num_nodes: int, degree: int, device: torch.device, generator: torch.Generator):
    """CSR graph with Poisson-distributed degrees (some nodes isolated), sorted by row."""
    deg = torch.poisson(torch.full((num_nodes,), float(degree)), generator=generator).long()
    row_ptr = torch.zeros(num_nodes + 1, dtype=torch.long)
    torch.cumsum(deg, 0, out=row_ptr[1:])
    col = torch.randint(0, num_nodes, (int(row_ptr[-1]),), generator=generator)
    return row_ptr.to(device), col.to(device)


def run_segment_demo(device: str = "cpu", num_nodes: int = 100_000, degree: int = 16, channels: int = 64) -> dict:
    """Mean-aggregation message passing and attention weights on a random graph.

    Returns a dict of timings (seconds) and max errors against a float64 PyTorch reference.
    """
    from . import ops

    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    row_ptr, col = _random_graph(num_nodes, degree, dev, gen)
    num_edges = col.numel()
    x = torch.randn(num_nodes, channels, generator=gen).to(dev)
    scores = torch.randn(num_edges, 4, generator=gen).to(dev)
    row = torch.repeat_interleave(torch.arange(num_nodes, device=dev), row_ptr.diff())
    deg = row_ptr.diff().clamp(min=1).to(x.dtype)
    weights = 1.0 / deg[row]

    def engine_mean():
        return ops.spmm(row_ptr, col, weights, x)

    def torch_mean():
        return torch.zeros_like(x).index_add_(0, row, weights[:, None] * x[col])

    def engine_softmax():
        return ops.segment_softmax(scores, row_ptr)

    ref_mean = torch.zeros(num_nodes, channels, dtype=torch.float64, device=dev).index_add_(
        0, row, weights.double()[:, None] * x.double()[col])
    shifted = scores.double() - scores.double().max()
    expd = shifted.exp()
    denom = torch.zeros(num_nodes, 4, dtype=torch.float64, device=dev).index_add_(0, row, expd)
    ref_softmax = expd / denom[row]
    return {
        "edges": num_edges,
        "spmm_mean_s": _time(engine_mean),
        "torch_gather_scatter_s": _time(torch_mean),
        "spmm_max_err": float((engine_mean().double() - ref_mean).abs().max()),
        "softmax_s": _time(engine_softmax),
        "softmax_max_err": float((engine_softmax().double() - ref_softmax).abs().max()),
    }


def _demo(args) -> int:
    from .info import info

    info()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    nodes = 20_000 if args.quick else 200_000
    print(f"\nmessage passing on a random graph: {nodes} nodes, ~16 neighbors each, 64 channels, {device}")
    r = run_segment_demo(device, num_nodes=nodes)
    print(f"  edges                           {r['edges']}")
    print(f"  pyengine spmm (mean aggregation) {r['spmm_mean_s'] * 1e3:8.2f} ms   max |err| vs float64 {r['spmm_max_err']:.2e}")
    print(f"  torch gather + index_add_        {r['torch_gather_scatter_s'] * 1e3:8.2f} ms   "
          f"(pyengine is {r['torch_gather_scatter_s'] / r['spmm_mean_s']:.1f}x faster)")
    print(f"  pyengine segment_softmax (4 heads) {r['softmax_s'] * 1e3:6.2f} ms   max |err| vs float64 {r['softmax_max_err']:.2e}")
    ok = r["spmm_max_err"] < 1e-4 and r["softmax_max_err"] < 1e-5
    print("\ndemo " + ("passed" if ok else "FAILED: results differ from the reference"))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyengine", description="Geometry-aware neural-operator engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print version, torch, CUDA and OpenMP facts")
    demo = sub.add_parser("demo", help="run the main demonstration")
    demo.add_argument("--quick", action="store_true", help="small sizes (seconds on a laptop CPU)")
    demo.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    args = parser.parse_args(argv)
    if args.command == "info":
        from .info import info

        info()
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but no CUDA device is available")
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
