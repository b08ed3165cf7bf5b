"""Latent regular grids and RIGNO-style regional meshes, against brute-force float64 references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pyengine.geometry import latent_grid, regional_mesh


def _csr_to_sets(row_ptr: torch.Tensor, col: torch.Tensor) -> list[set[int]]:
    return [set(col[row_ptr[i]:row_ptr[i + 1]].tolist()) for i in range(len(row_ptr) - 1)]


def test_latent_grid_covers_padded_box_in_ij_order():
    pts = torch.tensor([[0.0, -1.0, 2.0], [4.0, 1.0, 2.5], [1.0, 0.0, 2.2]], dtype=torch.float64)
    grid = latent_grid(pts, (3, 4, 2), padding=0.1)
    margin = 0.1 * 4.0  # 10% of the largest extent
    lo = torch.tensor([0.0, -1.0, 2.0], dtype=torch.float64) - margin
    hi = torch.tensor([4.0, 1.0, 2.5], dtype=torch.float64) + margin
    torch.testing.assert_close(grid.lower, lo)
    torch.testing.assert_close(grid.upper, hi)
    assert grid.shape == (3, 4, 2) and grid.points.shape == (24, 3)
    axes = [np.linspace(lo[i].item(), hi[i].item(), n) for i, n in enumerate((3, 4, 2))]
    ref = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    np.testing.assert_allclose(grid.points.numpy(), ref, atol=1e-12)
    torch.testing.assert_close(grid.spacing, (hi - lo) / torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64))
    g2 = latent_grid(torch.rand(10, 2), 5, padding=0.0, bounds=([0, 0], [1, 2]))
    assert g2.points.shape == (25, 2) and float(g2.points[:, 1].max()) == 2.0
    with pytest.raises(ValueError, match="resolution"):
        latent_grid(pts, (3, 4))
    with pytest.raises(ValueError, match="padding"):
        latent_grid(pts, 4, padding=-1)


def _cloud(n=800, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # non-uniform density: a dense cluster plus a sparse background
    dense = 0.5 + 0.05 * torch.randn(n // 2, 3, generator=g, dtype=torch.float64)
    sparse = torch.rand(n - n // 2, 3, generator=g, dtype=torch.float64)
    return torch.cat([dense, sparse])


def test_regional_mesh_is_deterministic_by_seed():
    pts = _cloud()
    a, b = regional_mesh(pts, 0.1, seed=5), regional_mesh(pts, 0.1, seed=5)
    c = regional_mesh(pts, 0.1, seed=6)
    assert a.num_nodes == 80
    for x, y in [(a.index, b.index), (a.radius, b.radius), *zip(a.edges, b.edges), *zip(a.decoder, b.decoder)]:
        assert torch.equal(x, y)
    assert not torch.equal(a.index, c.index)


def test_regional_mesh_matches_brute_force():
    pts = _cloud()
    k, factor = 4, 1.3
    rm = regional_mesh(pts, 0.1, seed=1, k=k, factor=factor)
    nodes = pts[rm.index].numpy()
    assert (np.diff(rm.index.numpy()) > 0).all()
    d_nn = np.linalg.norm(nodes[:, None] - nodes[None], axis=-1)
    radius = factor * np.sort(d_nn, axis=1)[:, k]  # column 0 is the node itself
    np.testing.assert_allclose(rm.radius.numpy(), radius, rtol=1e-12)
    # density scaling: nodes in the dense cluster get smaller balls than background nodes
    in_cluster = np.linalg.norm(nodes - 0.5, axis=1) < 0.1
    assert np.median(radius[in_cluster]) < 0.5 * np.median(radius[~in_cluster])
    ref_edges = [set(np.flatnonzero(d_nn[i] <= radius[i])) for i in range(len(nodes))]
    assert _csr_to_sets(*rm.edges) == ref_edges
    d_pn = np.linalg.norm(nodes[:, None] - pts.numpy()[None], axis=-1)  # (R, N)
    ref_enc = [set(np.flatnonzero(d_pn[i] <= radius[i])) for i in range(len(nodes))]
    assert _csr_to_sets(*rm.encoder) == ref_enc
    nearest = d_pn.argmin(0)
    ref_dec = [set(np.flatnonzero(d_pn[:, p] <= radius)) | {nearest[p]} for p in range(len(pts))]
    assert _csr_to_sets(*rm.decoder) == ref_dec
    # every decoder row is sorted and non-empty
    dp, dc = rm.decoder
    assert ((dp[1:] - dp[:-1]) >= 1).all()


def test_regional_mesh_disk_cache(tmp_path):
    from pyengine.data import DiskCache

    pts = _cloud(300)
    cache = DiskCache(tmp_path)
    a = regional_mesh(pts, 0.2, seed=3, cache=cache)
    b = regional_mesh(pts, 0.2, seed=3, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    ref = regional_mesh(pts, 0.2, seed=3)
    for x, y, z in zip((a.index, a.radius, *a.edges, *a.decoder), (b.index, b.radius, *b.edges, *b.decoder),
                       (ref.index, ref.radius, *ref.edges, *ref.decoder)):
        assert torch.equal(x, y) and torch.equal(x, z)
    regional_mesh(pts, 0.2, seed=4, cache=cache)  # another seed is another entry
    assert (cache.misses, cache.hits) == (2, 1)


def test_regional_mesh_errors():
    pts = _cloud(50)
    with pytest.raises(ValueError, match="ratio"):
        regional_mesh(pts, 0.0, seed=0)
    with pytest.raises(ValueError, match="k = 60"):
        regional_mesh(pts, 0.5, seed=0, k=60)
    with pytest.raises(TypeError):
        regional_mesh(pts.numpy(), 0.5, seed=0)
