"""Property-based fuzzing of the neighbor family (knn, radius_search, radius_search_multi, KDTree) with hypothesis.

Each property runs in a child process (tests/fuzz_harness.py). Inputs: point clouds of awkward
sizes in 2-D and 3-D, float32/float64, strided, at magnitudes 1e-30..1e38 (and NaN/inf),
many duplicates, leaf sizes 1..32. Properties: kNN distances equal the float64 brute force
(to rounding; indices up to ties), radius sets equal it outside a rounding band around the
radius, capped radius keeps the nearest; non-finite input gives a clean ValueError.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

hyp = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fuzz_harness as fh  # noqa: E402

from pyengine import ops  # noqa: E402

DTYPES = [torch.float32, torch.float64]
REL = {torch.float32: 1e-5, torch.float64: 1e-12}


@st.composite
def clouds(draw, allow_nonfinite=False):
    d = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(1, 70))
    m = draw(st.integers(0, 20))
    dtype = draw(st.sampled_from(DTYPES))
    mag = draw(fh.magnitudes())
    seed = draw(st.integers(0, 2**16))
    dup = draw(st.sampled_from([0.0, 0.5, 1.0]))  # fraction of points replaced by copies of point 0
    pts = fh.random_tensor(seed, (n, d), torch.float64, 1.0)
    pts[: int(dup * n)] = pts[0]
    qs = fh.random_tensor(seed + 1, (m, d), torch.float64, 1.0)
    if m and draw(st.booleans()):
        qs[: m // 2] = pts[0]
    # Scale in float64, then round: the reference sees exactly the kernel's coordinates.
    pts, qs = (pts * mag).to(dtype), (qs * mag).to(dtype)
    bad = None
    if not torch.isfinite(pts).all():  # beyond float32's range: inf after rounding
        bad = "points"
    elif not torch.isfinite(qs).all():
        bad = "queries"
    pts = fh.maybe_noncontiguous(pts, draw(st.integers(0, 2)))
    qs = fh.maybe_noncontiguous(qs, draw(st.integers(0, 2)))
    if allow_nonfinite and bad is None and draw(st.booleans()):
        bad = draw(st.sampled_from(["points", "queries"]))
        val = draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
        t = pts if bad == "points" or m == 0 else qs
        bad = "points" if t is pts else "queries"
        t[draw(st.integers(0, t.shape[0] - 1)), draw(st.integers(0, d - 1))] = val
    return pts, qs, bad


def _dist64(pts, qs):
    # |x| <= 3.4e38 here, so the float64 squares (<= 1e78) stay finite
    p, q = pts.double().numpy(), qs.double().numpy()
    return np.sqrt(((q[:, None, :] - p[None, :, :]) ** 2).sum(-1))


@given(case=clouds(allow_nonfinite=True), k=st.integers(1, 8), leaf=st.sampled_from([1, 2, 5, 16, 32]))
def _fuzz_knn(case, k, leaf):
    pts, qs, bad = case
    n = pts.shape[0]
    fh.log_case(op="knn", points=pts, queries=qs, k=k, leaf=leaf, bad=bad)
    if bad:
        r = fh.expect_clean_error(lambda: ops.KDTree(pts, leaf_size=leaf).knn(qs, min(k, n)))
        assert isinstance(r, ValueError), f"non-finite {bad} accepted"
        return
    if k > n:
        r = fh.expect_clean_error(lambda: ops.knn(pts, qs, k))
        assert isinstance(r, ValueError) or qs.shape[0] == 0, "k > N accepted"
        return
    dist, idx = ops.KDTree(pts, leaf_size=leaf).knn(qs, k)
    ref = _dist64(pts, qs)
    ref_sorted = np.sort(ref, axis=1)[:, :k]
    got = dist.double().numpy()
    rel = REL[pts.dtype]
    assert np.all(np.isfinite(got) | ~np.isfinite(ref_sorted)), (got, ref_sorted)
    np.testing.assert_allclose(got, ref_sorted.astype(np.float64), rtol=rel, atol=0)
    # the returned indices are at the returned distances, and distinct
    at = np.take_along_axis(ref, idx.numpy(), 1)
    np.testing.assert_allclose(at, ref_sorted, rtol=rel, atol=0)
    assert all(len(set(r)) == k for r in idx.tolist())


@given(case=clouds(allow_nonfinite=True), rfrac=st.floats(0, 3), cap=st.sampled_from([None, 1, 3, 10]),
       leaf=st.sampled_from([1, 4, 16]))
def _fuzz_radius(case, rfrac, cap, leaf):
    pts, qs, bad = case
    scale = float(pts.double().abs().max()) if pts.numel() else 1.0
    r = rfrac * (scale if np.isfinite(scale) and scale > 0 else 1.0)
    fh.log_case(op="radius", points=pts, queries=qs, r=r, cap=cap, leaf=leaf, bad=bad)
    call = lambda: ops.KDTree(pts, leaf_size=leaf).radius(qs, r, max_neighbors=cap)  # noqa: E731
    rr = float(torch.tensor(r, dtype=pts.dtype))  # the radius as the kernel sees it
    if bad or not np.isfinite(rr):
        res = fh.expect_clean_error(call)
        assert isinstance(res, ValueError), "non-finite input or radius accepted"
        return
    rp, col = call()
    ref = _dist64(pts, qs)
    rel = REL[pts.dtype]
    for i in range(qs.shape[0]):
        got = set(col[rp[i]:rp[i + 1]].tolist())
        inside = ref[i] <= rr
        sure_in = set(np.nonzero(ref[i] < rr * (1 - rel))[0].tolist())
        maybe = set(np.nonzero(inside | (ref[i] <= rr * (1 + rel)))[0].tolist())
        assert got <= maybe, (i, sorted(got - maybe))
        if cap is None:
            assert sure_in <= got, (i, sorted(sure_in - got))
        else:
            assert len(got) == min(cap, len(got | sure_in)) or len(got) == cap
            if len(got) < cap:
                assert sure_in <= got
            if got:  # nearest kept: nothing clearly nearer was dropped
                worst = max(ref[i][list(got)])
                dropped = [j for j in sure_in - got if ref[i][j] < worst * (1 - rel)]
                assert not dropped, (i, dropped)
    if cap is None and qs.shape[0]:
        multi = ops.KDTree(pts, leaf_size=leaf).radius_multi(qs, [r, r / 2])
        assert torch.equal(multi[0][0], rp) and torch.equal(multi[0][1], col)


def test_knn_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_knn", fuzz_profile)


def test_radius_fuzz(fuzz_profile):
    fh.run_in_subprocess(__file__, "_fuzz_radius", fuzz_profile)
