"""A fast 2D family: Darcy flow ``-div(kappa grad u) = f`` on random domains with holes.

The domain is the unit square with a few random elliptical holes (impermeable
inclusions). gmsh (OCC kernel) meshes it with triangles; scikit-fem assembles
P1 or P2 elements and scipy solves. Boundary conditions: ``u = g`` (default 0)
on the outer square; on the holes either zero flux (``kappa du/dn = 0``, the
default) or ``u = g``. The permeability ``kappa`` is log-normal (exp of a random
Fourier series) and the source ``f`` is a sum of random Gaussian bumps, both
drawn from a seed, so every sample is reproducible.

Units are arbitrary but consistent: lengths in domain units (the square has side 1),
``kappa`` in permeability units, ``u`` in pressure units, ``f`` in u * kappa / length^2.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..sample import Sample
from ._gmsh import gmsh_session, mesh_arrays, single_threaded_blas

__all__ = ["darcy2d", "mesh_domain", "random_holes", "solve_darcy"]

SOLVER_VERSION = "darcy2d/1"

Field = Callable[[np.ndarray], np.ndarray]  # x: (2, ...) coordinates -> (...) values


def random_holes(rng: np.random.Generator, n_holes: tuple[int, int] = (1, 4)) -> np.ndarray:
    """Non-overlapping ellipses inside the unit square.

    Returns:
        (k, 5) float64 rows ``(cx, cy, rx, ry, angle)``: centre, semi-axes and rotation (radians).
    """
    lo, hi = n_holes
    if not (0 <= lo <= hi):
        raise ValueError(f"random_holes: n_holes must be (min, max) with 0 <= min <= max, got {n_holes!r}")
    k = int(rng.integers(lo, hi + 1))
    holes: list[list[float]] = []
    for _ in range(200 * max(k, 1)):  # rejection sampling; a few tries suffice at these sizes
        if len(holes) == k:
            break
        rx, ry = rng.uniform(0.05, 0.14, size=2)
        r = max(rx, ry)
        c = rng.uniform(0.1 + r, 0.9 - r, size=2)
        # Bounding circles at least 0.05 apart keep the mesh between holes reasonable.
        if all(math.dist(c, h[:2]) > r + max(h[2], h[3]) + 0.05 for h in holes):
            holes.append([c[0], c[1], rx, ry, rng.uniform(0, math.pi)])
    return np.asarray(holes, dtype=np.float64).reshape(-1, 5)


def mesh_domain(holes: np.ndarray, h: float = 0.03, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangle mesh of the unit square minus ``holes`` ((k, 5) as from :func:`random_holes`).

    Returns:
        points (N, 2) float64, triangles (T, 3) int64, and on_outer (N,) bool marking nodes on the square's edges.
    """
    if not (isinstance(h, (int, float)) and math.isfinite(h) and 0 < h <= 0.5):
        raise ValueError(f"mesh_domain: h must be in (0, 0.5], got {h!r}")
    holes = np.asarray(holes, dtype=np.float64).reshape(-1, 5)
    with gmsh_session(seed) as gmsh:
        occ = gmsh.model.occ
        square = occ.addRectangle(0, 0, 0, 1, 1)
        cut = []
        for cx, cy, rx, ry, ang in holes:
            # OCC disks need rx >= ry; swap the axes and turn by 90 degrees instead.
            a, b, ang = (rx, ry, ang) if rx >= ry else (ry, rx, ang + math.pi / 2)
            d = occ.addDisk(cx, cy, 0, a, b)
            occ.rotate([(2, d)], cx, cy, 0, 0, 0, 1, ang)
            cut.append((2, d))
        if cut:
            occ.cut([(2, square)], cut)
        occ.synchronize()
        gmsh.option.setNumber("Mesh.MeshSizeMax", h)
        gmsh.option.setNumber("Mesh.MeshSizeMin", h / 4)
        gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 24)
        gmsh.model.mesh.generate(2)
        nodes, tris = mesh_arrays(gmsh, 2)
    used, inv = np.unique(tris, return_inverse=True)
    pts = nodes[used, :2]
    tol = 1e-9
    on_outer = (pts.min(axis=1) < tol) | (pts.max(axis=1) > 1 - tol)
    return pts, inv.reshape(-1, 3).astype(np.int64), on_outer


def solve_darcy(
    points: np.ndarray,
    triangles: np.ndarray,
    kappa: Field,
    source: Field,
    *,
    g: Field | None = None,
    holes: str = "neumann",
    order: int = 1,
) -> np.ndarray:
    """Solve ``-div(kappa grad u) = source`` with scikit-fem on a triangle mesh of the (holed) unit square.

    Args:
        points: (N, 2) node coordinates; triangles: (T, 3) node indices.
        kappa, source: callables of coordinates ``x`` (2, ...) returning values (...), evaluated at
            quadrature points; kappa must be positive.
        g: Dirichlet values u = g(x) on the outer square (and on the holes with ``holes="dirichlet"``);
            default 0.
        holes: "neumann" (zero flux through the holes) or "dirichlet" (u = g on them).
        order: 1 (P1) or 2 (P2) Lagrange elements.
    Returns:
        (N,) float64 solution at the mesh nodes.
    """
    import scipy.sparse.linalg as spla
    from skfem import Basis, BilinearForm, ElementTriP1, ElementTriP2, LinearForm, MeshTri, asm, condense
    from skfem.helpers import dot, grad

    if holes not in ("neumann", "dirichlet"):
        raise ValueError(f"solve_darcy: holes must be 'neumann' or 'dirichlet', got {holes!r}")
    if order not in (1, 2):
        raise ValueError(f"solve_darcy: order must be 1 or 2, got {order!r}")
    m = MeshTri(np.ascontiguousarray(np.asarray(points, np.float64).T), np.ascontiguousarray(np.asarray(triangles).T))
    basis = Basis(m, ElementTriP1() if order == 1 else ElementTriP2())
    A = asm(BilinearForm(lambda u, v, w: kappa(w.x) * dot(grad(u), grad(v))), basis)
    b = asm(LinearForm(lambda v, w: source(w.x) * v), basis)
    facets = m.boundary_facets()
    if holes == "neumann":
        mid = m.p[:, m.facets[:, facets]].mean(axis=1)
        facets = facets[(mid.min(axis=0) < 1e-9) | (mid.max(axis=0) > 1 - 1e-9)]
    D = basis.get_dofs(facets).flatten()
    x = np.zeros(basis.N)
    if g is not None:
        x[D] = g(basis.doflocs[:, D])
    Ac, bc, _, interior = condense(A, b, x=x, D=D)
    # Sparse LU: 2D problems of this size factor in milliseconds.
    with single_threaded_blas():
        x[interior] = spla.spsolve(Ac.tocsc(), bc)
    return x[: m.p.shape[1]]  # vertex dofs come first in scikit-fem's numbering


def _random_fields(rng: np.random.Generator, modes: int = 4, bumps: int = 3) -> tuple[dict, Field, Field]:
    """A log-normal permeability and a Gaussian-bump source, with the numbers that define them."""
    k = np.arange(1, modes + 1)
    amp = rng.normal(size=(modes, modes)) / (k[:, None] ** 2 + k[None, :] ** 2)  # smooth: decaying spectrum
    phase = rng.uniform(0, 2 * math.pi, size=(modes, modes))
    centres = rng.uniform(0.1, 0.9, size=(bumps, 2))
    widths = rng.uniform(0.05, 0.2, size=bumps)
    weights = rng.uniform(0.5, 2.0, size=bumps)
    params = {"amp": amp, "phase": phase, "centres": centres, "widths": widths, "weights": weights}

    def kappa(x: np.ndarray) -> np.ndarray:
        s = np.zeros(x.shape[1:])
        for i in range(modes):
            for j in range(modes):
                s = s + amp[i, j] * np.cos(math.pi * (k[i] * x[0] + k[j] * x[1]) + phase[i, j])
        return np.exp(2.0 * s)

    def source(x: np.ndarray) -> np.ndarray:
        s = np.zeros(x.shape[1:])
        for c, w, a in zip(centres, widths, weights):
            s = s + a * np.exp(-((x[0] - c[0]) ** 2 + (x[1] - c[1]) ** 2) / (2 * w * w)) / (2 * math.pi * w * w)
        return s

    return params, kappa, source


def darcy2d(seed: int, *, h: float = 0.03, n_holes: tuple[int, int] = (1, 4), order: int = 1, dtype=None) -> Sample:
    """One random Darcy sample: domain, permeability and source all drawn from ``seed``.

    Returns:
        A :class:`~pyengine.data.Sample` with ``points`` (N, 2) mesh nodes, ``features`` (N, 2) = [kappa, f]
        at the nodes, ``fields["u"]`` (N,), ``cells["triangle"]`` (T, 3) and ``metadata`` with the holes
        ((k, 5) cx, cy, rx, ry, angle) and settings.
    """
    import torch

    rng = np.random.default_rng(int(seed))
    holes = random_holes(rng, n_holes)
    _, kappa, source = _random_fields(rng)
    pts, tris, _ = mesh_domain(holes, h, seed=0)
    u = solve_darcy(pts, tris, kappa, source, order=order)
    dtype = dtype or torch.get_default_dtype()
    feats = np.stack([kappa(pts.T), source(pts.T)], axis=1)
    return Sample(
        points=torch.as_tensor(pts, dtype=dtype),
        features=torch.as_tensor(feats, dtype=dtype),
        fields={"u": torch.as_tensor(u, dtype=dtype)},
        cells={"triangle": torch.as_tensor(tris)},
        metadata={"solver": SOLVER_VERSION, "seed": int(seed), "h": float(h), "order": int(order),
                  "holes": holes.tolist(), "n_holes": list(n_holes)},
    )
