"""One small CUDA case per kernel family, for compute-sanitizer (scripts/gpu_sanitize.sh).

    python scripts/gpu_sanitize_cases.py FAMILY     # segment, neighbors, nufft, gno, attention, local

Each case runs forward and backward on a tiny input with awkward sizes (empty rows, a long
row, odd feature widths) so every kernel of the family is launched at least once, then
synchronizes; compute-sanitizer reports any invalid access (memcheck) or shared-memory
race (racecheck) and its --error-exitcode fails the run.
"""

from __future__ import annotations

import sys

import torch

from pyengine import ops

dev = torch.device("cuda")
g = torch.Generator().manual_seed(0)


def csr(lens):
    lens = torch.tensor(lens)
    rp = torch.zeros(len(lens) + 1, dtype=torch.long)
    rp[1:] = torch.cumsum(lens, 0)
    return rp.to(dev)


LENS = [0, 3, 1, 0, 37, 5, 2, 0, 130, 4]
RP = csr(LENS)
E, M, N = int(RP[-1]), len(LENS), 23
COL = torch.randint(0, N, (E,), generator=g).to(dev)


def segment():
    src = torch.randn(E, 7, device=dev, requires_grad=True)
    for red in ("sum", "mean", "max", "min"):
        ops.segment_reduce(src, RP, red).sum().backward()
    ops.segment_softmax(torch.randn(E, 3, device=dev, requires_grad=True), RP).sum().backward()
    x = torch.randn(N, 5, device=dev, requires_grad=True)
    v = torch.randn(E, device=dev, requires_grad=True)
    ops.spmm(RP, COL, v, x).sum().backward()


def neighbors():
    p = torch.rand(301, 3, generator=g).to(dev)
    p[:50] = p[0]  # duplicates
    q = torch.rand(77, 3, generator=g).to(dev)
    ops.radius_search(p, q, 0.2)
    ops.radius_search(p, q, 0.2, max_neighbors=8)
    ops.radius_search_multi(p, q, [0.1, 0.2])
    ops.knn(p, q, 9)
    ops.knn(p[:, :2].contiguous(), q[:, :2].contiguous(), 3)


def nufft():
    for d, modes in ((1, (17,)), (2, (12, 9)), (3, (6, 5, 8))):
        x = (torch.rand(200, d, generator=g, dtype=torch.float64) * 6 - 3).to(dev)
        c = torch.randn(200, dtype=torch.complex128, generator=g).to(dev)
        f = ops.nufft1(x, c, modes)
        ops.nufft2(x, f)
        ops.nufft1(x.float(), c.to(torch.complex64), modes)


def gno():
    y, x = torch.rand(N, 3, device=dev), torch.rand(M, 3, device=dev)
    f = torch.randn(N, 5, device=dev, requires_grad=True)
    Ws = [torch.randn(16, 6, device=dev, requires_grad=True), torch.randn(5, 16, device=dev, requires_grad=True)]
    bs = [torch.randn(16, device=dev), torch.randn(5, device=dev)]
    for transform in ("linear", "nonlinear"):
        W0 = torch.randn(16, 6 + (5 if transform == "nonlinear" else 0), device=dev, requires_grad=True)
        out = ops.gno_integral(y, x, RP, COL, f, None, [W0, Ws[1]], bs, "gelu", transform, "mean")
        out.sum().backward()


def attention():
    q = torch.randn(M, 2, 16, device=dev, requires_grad=True)
    k = torch.randn(N, 2, 16, device=dev, requires_grad=True)
    v = torch.randn(N, 2, 8, device=dev, requires_grad=True)
    bias = torch.randn(E, 2, device=dev)
    ops.csr_attention(q, k, v, RP, COL, bias).sum().backward()
    ops.csr_attention(q.half(), k.half(), v.half(), RP, COL)


def local():
    psi = torch.randn(E, 4, device=dev, requires_grad=True)
    f = torch.randn(N, 6, device=dev, requires_grad=True)
    w = torch.rand(N, device=dev, requires_grad=True)
    ops.local_basis_aggregate(psi, f, RP, COL, w).sum().backward()


if __name__ == "__main__":
    fam = sys.argv[1]
    globals()[fam]()
    torch.cuda.synchronize()
    print(f"{fam}: ok")
