"""kd_partition: leaves cover every point once, boxes are tight, halos match brute force."""

import numpy as np
import pytest
import torch

from pyengine.ops import kd_partition


def _cloud(n, d, seed, clustered=False):
    g = torch.Generator().manual_seed(seed)
    if not clustered:
        return torch.rand(n, d, generator=g, dtype=torch.float64)
    centers = torch.rand(4, d, generator=g, dtype=torch.float64) * 10
    scales = torch.tensor([1e-3, 1e-2, 0.3, 2.0], dtype=torch.float64)
    which = torch.randint(0, 4, (n,), generator=g)
    return centers[which] + scales[which, None] * torch.randn(n, d, generator=g, dtype=torch.float64)


def _brute_halo(points, part, radius):
    p = points.double().numpy()
    perm, ptr = part.perm.numpy(), part.leaf_ptr.numpy()
    boxes = part.boxes.double().numpy()
    halos = []
    for i in range(part.num_leaves):
        own = set(perm[ptr[i]:ptr[i + 1]].tolist())
        gap = np.linalg.norm(p - np.clip(p, boxes[i, 0], boxes[i, 1]), axis=1)
        halos.append(sorted(j for j in np.nonzero(gap <= radius)[0].tolist() if j not in own))
    return halos


@pytest.mark.parametrize("n,d,clustered", [(1, 3, False), (7, 2, False), (1000, 3, False), (3001, 3, True),
                                           (2500, 2, True)])
@pytest.mark.parametrize("max_leaf", [1, 5, 64, 10_000])
def test_leaves_cover_points_once_with_tight_boxes(n, d, clustered, max_leaf):
    points = _cloud(n, d, seed=n + d, clustered=clustered).float()
    part = kd_partition(points, max_leaf_points=max_leaf)
    assert sorted(part.perm.tolist()) == list(range(n))
    sizes = part.leaf_ptr.diff()
    assert int(part.leaf_ptr[0]) == 0 and int(part.leaf_ptr[-1]) == n
    assert bool((sizes >= 1).all()) and int(sizes.max()) <= max_leaf
    for i in range(part.num_leaves):
        pts = points[part.leaf(i)]
        torch.testing.assert_close(part.boxes[i, 0], pts.min(0).values, rtol=0, atol=0)
        torch.testing.assert_close(part.boxes[i, 1], pts.max(0).values, rtol=0, atol=0)


@pytest.mark.parametrize("n_parts", [1, 2, 3, 8, 13])
def test_n_parts_balances_leaves(n_parts):
    points = _cloud(4000, 3, seed=5, clustered=True)
    part = kd_partition(points, n_parts=n_parts)
    sizes = part.leaf_ptr.diff()
    assert part.num_leaves >= n_parts
    assert int(sizes.max()) <= -(-4000 // n_parts)
    assert int(sizes.max()) - int(sizes.min()) <= int(sizes.max()) // 2 + 1  # median splits: no tiny leaves


@pytest.mark.parametrize("clustered", [False, True])
@pytest.mark.parametrize("radius", [0.0, 0.05, 0.3])
def test_halos_match_brute_force(clustered, radius):
    points = _cloud(1500, 3, seed=11, clustered=clustered)
    part = kd_partition(points, max_leaf_points=100, halo_radius=radius)
    expected = _brute_halo(points, part, radius)
    for i in range(part.num_leaves):
        assert part.halo(i).tolist() == expected[i], f"leaf {i}"


def test_errors():
    points = torch.rand(10, 3)
    with pytest.raises(ValueError, match="exactly one"):
        kd_partition(points)
    with pytest.raises(ValueError, match="exactly one"):
        kd_partition(points, max_leaf_points=2, n_parts=2)
    with pytest.raises(ValueError, match="n_parts"):
        kd_partition(points, n_parts=0)
    with pytest.raises(ValueError, match="halo_radius"):
        kd_partition(points, n_parts=2, halo_radius=-1.0)
    with pytest.raises(ValueError, match="without halo_radius"):
        kd_partition(points, n_parts=2).halo(0)
