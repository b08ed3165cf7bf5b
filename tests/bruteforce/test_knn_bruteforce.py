"""knn_bruteforce (csrc/bruteforce) against a float64 brute-force reference; opcheck,
gradients of the recomputed distances, and torch.compile(fullgraph=True)."""

from __future__ import annotations

import pytest
import torch

from pyengine.ops import knn_bruteforce

P = torch.ops.pyengine


def ptr_of(sizes):
    return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(torch.tensor(sizes), 0)])


def reference(points, queries, pptr, qptr, k, cosine=False):
    """(dist, idx) float64 padded with (inf, -1), sorted by (distance, index)."""
    P64, Q64 = points.double(), queries.double()
    M = queries.shape[0]
    dist = torch.full((M, k), float("inf"), dtype=torch.float64)
    idx = torch.full((M, k), -1, dtype=torch.long)
    for b in range(len(pptr) - 1):
        p0, p1, q0, q1 = int(pptr[b]), int(pptr[b + 1]), int(qptr[b]), int(qptr[b + 1])
        for q in range(q0, q1):
            if cosine:
                num = P64[p0:p1] @ Q64[q]
                den = P64[p0:p1].norm(dim=1) * Q64[q].norm()
                d = torch.where(den > 0, 1 - num / torch.where(den > 0, den, torch.ones_like(den)),
                                torch.ones_like(den))
            else:
                d = (P64[p0:p1] - Q64[q]).norm(dim=1)
            pairs = sorted(zip(d.tolist(), range(p0, p1)))[:k]
            for t, (dd, j) in enumerate(pairs):
                dist[q, t], idx[q, t] = dd, j
    return dist, idx


def check(dist, idx, ref_dist, ref_idx, exact):
    assert dist.shape == ref_dist.shape and idx.dtype == torch.long
    assert torch.equal(idx < 0, ref_idx < 0)
    valid = ref_idx >= 0
    torch.testing.assert_close(dist.double()[valid], ref_dist[valid], rtol=1e-5 if not exact else 1e-12, atol=1e-6)
    assert bool(torch.isinf(dist[~valid]).all())
    if exact:
        assert torch.equal(idx, ref_idx)


SIZES_P = [37, 0, 5, 260, 1, 90]
SIZES_Q = [11, 4, 3, 70, 2, 0]


@pytest.mark.parametrize("d", [1, 3, 16, 64, 100])
@pytest.mark.parametrize("k", [1, 6, 40])
@pytest.mark.parametrize("cosine", [False, True])
def test_matches_reference_float64(d, k, cosine):
    g = torch.Generator().manual_seed(d * 100 + k)
    pts = torch.randn(sum(SIZES_P), d, generator=g, dtype=torch.float64)
    qs = torch.randn(sum(SIZES_Q), d, generator=g, dtype=torch.float64)
    pptr, qptr = ptr_of(SIZES_P), ptr_of(SIZES_Q)
    dist, idx = knn_bruteforce(pts, qs, k, point_ptr=pptr, query_ptr=qptr, cosine=cosine)
    # d = 1 with cosine: every distance is 0 or 2, ties broken by rounding; compare distances only
    check(dist, idx, *reference(pts, qs, pptr, qptr, k, cosine), exact=not (cosine and d == 1))


@pytest.mark.parametrize("d", [8, 33])
def test_float32_large_blocks(d):
    # more queries / points than one CPU block (512 x 2048)
    g = torch.Generator().manual_seed(7)
    pts = torch.randn(2500, d, generator=g)
    qs = torch.randn(600, d, generator=g)
    dist, idx = knn_bruteforce(pts, qs, 8)
    ref_d, ref_i = reference(pts, qs, ptr_of([2500]), ptr_of([600]), 8)
    # exact on the float32 values: the float32 GEMM ranking is widened by its error bound
    check(dist, idx, ref_d, ref_i, exact=True)


@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize("case", ["offset", "lattice", "scaled"])
def test_float32_exact_where_gemm_form_misranks(case, cosine):
    # Inputs where |q|^2 + |p|^2 - 2<q, p> in float32 cannot separate the neighbours:
    # a small cluster far from the origin, a lattice with many exact ties at
    # distances 1 and sqrt(2), and huge / tiny magnitudes. Indices must still equal those of a
    # float64 search over the same float32 values.
    g = torch.Generator().manual_seed(11)
    if case == "offset":
        pts = (1000 + 1e-2 * torch.randn(1500, 12, generator=g, dtype=torch.float64)).float()
    elif case == "lattice":
        pts = torch.randint(0, 4, (1300, 6), generator=g).float()
    else:
        pts = (torch.randn(1400, 20, generator=g) * torch.tensor([1e30, 1e-30]).repeat(10)).float()
    qs = pts[torch.randperm(pts.shape[0], generator=g)[:300]] + 0  # queries on top of points
    pptr, qptr = ptr_of([700, pts.shape[0] - 700]), ptr_of([120, 180])
    dist, idx = knn_bruteforce(pts, qs, 9, point_ptr=pptr, query_ptr=qptr, cosine=cosine)
    ref_d, ref_i = reference(pts, qs, pptr, qptr, 9, cosine)
    torch.testing.assert_close(dist.double(), ref_d, rtol=1e-6, atol=1e-12)
    if case == "lattice" and cosine:
        # exact cosine ties whose float64 roundings differ between the two formulas: the
        # chosen points must have the reference distances
        q64, p64 = qs.double().unsqueeze(1), pts.double()[idx]
        got = 1 - (q64 * p64).sum(-1) / (q64.norm(dim=-1) * p64.norm(dim=-1))
        torch.testing.assert_close(got, ref_d, rtol=1e-6, atol=1e-12)
    else:
        assert torch.equal(idx, ref_i)


def test_non_finite_rows():
    g = torch.Generator().manual_seed(12)
    pts = torch.randn(40, 8, generator=g)
    pts[3, 2] = float("nan")
    pts[7, 0] = float("inf")
    qs = torch.randn(5, 8, generator=g)
    qs[1, 4] = float("nan")
    # k larger than the finite points: the inf point comes last at distance inf, NaN never
    dist, idx = knn_bruteforce(pts, qs, 40)
    for q in range(5):
        d = (pts.double() - qs[q].double()).norm(dim=1).tolist()
        want = sorted((dd, j) for j, dd in enumerate(d) if dd == dd)
        n = len(want)
        assert idx[q, :n].tolist() == [j for _, j in want]
        assert bool((idx[q, n:] == -1).all())
    assert 3 not in idx.tolist() and bool((idx[1] == -1).all())
    assert idx[0, 38].item() == 7 and dist[0, 38].item() == float("inf")


def test_duplicates_ties_lower_index_and_nan():
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [float("nan"), 0.0], [1.0, 0.0]], dtype=torch.float64)
    qs = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    dist, idx = knn_bruteforce(pts, qs, 4)
    assert idx.tolist() == [[0, 2, 1, 4], [1, 4, 0, 2]]
    assert dist[0].tolist() == [0.0, 0.0, 1.0, 1.0]


def test_gradients_of_distances():
    g = torch.Generator().manual_seed(1)
    pts = torch.randn(30, 5, generator=g, dtype=torch.float64, requires_grad=True)
    qs = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    for cosine in (False, True):
        assert torch.autograd.gradcheck(lambda p, q: knn_bruteforce(p, q, 4, cosine=cosine)[0], (pts, qs))


def test_opcheck():
    g = torch.Generator().manual_seed(2)
    pts = torch.randn(50, 9, generator=g)
    qs = torch.randn(20, 9, generator=g)
    pptr, qptr = ptr_of([20, 30]), ptr_of([15, 5])
    for cosine in (False, True):
        torch.library.opcheck(P.knn_bruteforce, (pts, qs, pptr, qptr, 25, cosine))


def test_fullgraph_compile_matches_eager():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(64, 16, generator=g)
    qs = torch.randn(24, 16, generator=g)
    pptr, qptr = ptr_of([40, 24]), ptr_of([10, 14])

    def f(p, q):
        d, i = knn_bruteforce(p, q, 5, point_ptr=pptr, query_ptr=qptr)
        return d.sum(1), i

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, b in zip(compiled(pts, qs), f(pts, qs)):
        torch.testing.assert_close(a, b)


def test_errors():
    pts = torch.randn(10, 4)
    with pytest.raises(ValueError, match="k must"):
        knn_bruteforce(pts, pts, 0)
    with pytest.raises(TypeError, match="float32 or float64"):
        P.knn_bruteforce(pts.half(), pts.half(), ptr_of([10]), ptr_of([10]), 2, False)
    with pytest.raises(ValueError, match="coordinates"):
        knn_bruteforce(pts, torch.randn(3, 5), 2)
    with pytest.raises(ValueError, match="same number of clouds"):
        P.knn_bruteforce(pts, pts, ptr_of([10]), ptr_of([5, 5]), 2, False)
    with pytest.raises(ValueError, match="point_ptr"):
        P.knn_bruteforce(pts, pts, torch.tensor([0, 4]), ptr_of([10]), 2, False)
    with pytest.raises(ValueError, match="together"):
        knn_bruteforce(pts, pts, 2, point_ptr=ptr_of([10]))


@pytest.mark.parametrize("k", [17, 33])
def test_float32_tile_edges_and_small_clouds(k):
    # The first strip of a query bounds its k-th smallest GEMM-form distance (the k-th smallest
    # of 4k strided group minima, s_row_with_kth_bound) before collecting candidates: clouds just
    # under / at / over 1024 points and over one strip, clouds of fewer than k points (fewer
    # than 4k groups), and d = 32 as in DGCNN-style feature kNN.
    g = torch.Generator().manual_seed(21)
    sizes_p = [1023, 1024, 1025, 2049, k, k - 1, 3, 500, 4097]  # 4097: two strips of up to 4096 points
    sizes_q = [9, 9, 9, 8, 4, 4, 2, 12, 3]
    pts = torch.rand(sum(sizes_p), 32, generator=g)
    qs = torch.rand(sum(sizes_q), 32, generator=g)
    pptr, qptr = ptr_of(sizes_p), ptr_of(sizes_q)
    dist, idx = knn_bruteforce(pts, qs, k, point_ptr=pptr, query_ptr=qptr)
    check(dist, idx, *reference(pts, qs, pptr, qptr, k), exact=True)


@pytest.mark.parametrize("case", ["lattice", "identical", "tiny_spread", "non_finite"])
def test_float32_kth_bound_degenerate_rows(case):
    # Rows where the k-th bound is degenerate: many exact ties (a lattice), every value equal
    # (one cloud of identical points), a spread of a few ulps, and +inf entries from non-finite
    # rows among more than k finite ones (group minima that are +inf).
    g = torch.Generator().manual_seed(22)
    n, k = 700, 20
    if case == "lattice":
        pts = torch.randint(0, 3, (n, 5), generator=g).float()
    elif case == "identical":
        pts = torch.full((n, 6), 0.3)
    elif case == "tiny_spread":
        pts = 1 + torch.randint(0, 2, (n, 4), generator=g).float() * 2.0 ** -23
    else:
        pts = torch.randn(n, 7, generator=g)
        pts[torch.randperm(n, generator=g)[:60], 2] = float("inf")
        pts[torch.randperm(n, generator=g)[:40], 5] = float("nan")
    on_points = pts[torch.isfinite(pts).all(1)][:25]  # queries on top of (finite) points, and off them
    qs = torch.cat([on_points, torch.rand(15, pts.shape[1], generator=g) * 2])
    pptr, qptr = ptr_of([n]), ptr_of([qs.shape[0]])
    dist, idx = knn_bruteforce(pts, qs, k, point_ptr=pptr, query_ptr=qptr)
    ref_d = torch.empty(qs.shape[0], k, dtype=torch.float64)
    ref_i = torch.empty(qs.shape[0], k, dtype=torch.long)
    for q in range(qs.shape[0]):  # float64, NaN distances dropped (reference() cannot sort NaN)
        d = (pts.double() - qs[q].double()).norm(dim=1).tolist()
        want = sorted((dd, j) for j, dd in enumerate(d) if dd == dd)[:k]
        ref_d[q] = torch.tensor([dd for dd, _ in want], dtype=torch.float64)
        ref_i[q] = torch.tensor([j for _, j in want])
    fin = torch.isfinite(ref_d)
    torch.testing.assert_close(dist.double()[fin], ref_d[fin], rtol=1e-6, atol=1e-12)  # float32 output
    assert torch.equal(idx, ref_i)
