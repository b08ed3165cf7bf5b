"""Surface quantities of triangle/quad meshes, vectorised for million-cell surfaces.

* :func:`area_vectors`: per cell, the area-weighted normal ``A n`` (triangles: half the
  cross product of two edges; quads: half the cross product of the diagonals, exact for
  planar quads and the usual choice for warped ones). Their sum over a closed surface is 0.
* :func:`vertex_normals`: unit vertex normals, area-weighted means of the adjacent cells'.
* :func:`cell_to_point`: cell values averaged to the vertices (the mean over the cells that
  use a vertex, as ParaView's Cell Data to Point Data does).

All run as numpy ``bincount`` scatters: about 0.1 s per million cells.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SURFACE_CELLS", "VOLUME_CELLS", "kind_rows", "orientation", "area_vectors", "cell_to_point", "surface_rows", "vertex_normals"]

SURFACE_CELLS = ("triangle", "quad")
VOLUME_CELLS = ("tetra", "hexahedron", "wedge", "pyramid", "tetra10", "hexahedron20", "hexahedron27", "wedge15",
                "pyramid13", "polyhedron")


def kind_rows(cells: dict[str, np.ndarray], kinds) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The blocks of ``cells`` whose type is in ``kinds`` and the row indices (in the cells' flat
    order) they occupy."""
    out, rows, start = {}, [], 0
    for kind, c in cells.items():
        if kind in kinds:
            out[kind] = c
            rows.append(np.arange(start, start + len(c)))
        start += len(c)
    return out, (np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64))


def surface_rows(cells: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The triangle/quad blocks of ``cells`` and the rows they occupy (see :func:`kind_rows`)."""
    return kind_rows(cells, SURFACE_CELLS)


def orientation(points: np.ndarray, cells: dict[str, np.ndarray], areas: np.ndarray | None = None) -> float:
    """+1 when the surface's area vectors point outward, -1 when inward.

    Decided by the sign of the enclosed volume ``sum((x_i - m) . A_i) / 3`` (``x_i`` a vertex
    of cell i, exact for flat cells; ``m`` the surface's centre): exact for closed surfaces, and
    the majority vote for nearly closed ones (a car without its wheel wells, a half model on a
    symmetry plane).
    """
    a = area_vectors(points, cells) if areas is None else areas
    if not len(a):
        return 1.0
    m = points.mean(axis=0)
    total, start = 0.0, 0
    for c in cells.values():
        total += float(np.einsum("ij,ij->", points[c[:, 0]] - m, a[start:start + len(c)]))
        start += len(c)
    return -1.0 if total < 0 else 1.0


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (M, 3) arrays (several times faster than np.cross on rows)."""
    out = np.empty_like(a)
    out[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    out[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    out[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    return out


def area_vectors(points: np.ndarray, cells: dict[str, np.ndarray]) -> np.ndarray:
    """(C, 3) float64 area vectors of the triangle and quad cells, in ``cells`` order.

    Units: length². Orientation follows each cell's vertex order (right-hand rule).
    """
    parts = []
    p = np.asarray(points, dtype=np.float64)
    for kind, c in cells.items():
        if kind == "triangle":
            p0 = p[c[:, 0]]
            parts.append(0.5 * _cross(p[c[:, 1]] - p0, p[c[:, 2]] - p0))
        elif kind == "quad":
            parts.append(0.5 * _cross(p[c[:, 2]] - p[c[:, 0]], p[c[:, 3]] - p[c[:, 1]]))
        else:
            raise ValueError(f"area_vectors: cells of type {kind!r} are not surface cells (triangle, quad)")
    return np.concatenate(parts) if parts else np.zeros((0, 3))


def _scatter(cells: dict[str, np.ndarray], values: np.ndarray, n_points: int) -> np.ndarray:
    """Sum of ``values`` (C, k) over the cells touching each vertex: (N, k)."""
    out = np.zeros((n_points, values.shape[1]))
    start = 0
    for c in cells.values():
        v = values[start:start + len(c)]
        for j in range(c.shape[1]):
            for col in range(values.shape[1]):
                out[:, col] += np.bincount(c[:, j], weights=v[:, col], minlength=n_points)
        start += len(c)
    return out


def _corner_angles(p: np.ndarray, c: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(C, k) interior angle of each cell at each of its k vertices (radians).

    Triangles: ``atan2(2 |A|, -e_in . e_out)`` with the float64 area and float32 edge dot
    products (angles good to ~1e-7, at half the cost of float64 edges).
    """
    k = c.shape[1]
    if k == 3:
        p32 = p.astype(np.float32)
        a, b, cc = p32[c[:, 0]], p32[c[:, 1]], p32[c[:, 2]]
        e0, e1, e2 = b - a, cc - b, a - cc
        twice = (2 * np.sqrt(np.einsum("ij,ij->i", areas, areas))).astype(np.float32)
        dots = (np.einsum("ij,ij->i", e0, e2), np.einsum("ij,ij->i", e1, e0), np.einsum("ij,ij->i", e2, e1))
        return np.stack([np.arctan2(twice, -d) for d in dots], axis=1).astype(np.float64)
    out = np.empty(c.shape)
    for j in range(k):
        e1 = p[c[:, (j + 1) % k]] - p[c[:, j]]
        e2 = p[c[:, (j - 1) % k]] - p[c[:, j]]
        out[:, j] = np.arctan2(np.sqrt((_cross(e1, e2) ** 2).sum(axis=1)), (e1 * e2).sum(axis=1))
    return out


def vertex_normals(points: np.ndarray, cells: dict[str, np.ndarray], source: str = "surface",
                   areas: np.ndarray | None = None) -> np.ndarray:
    """(N, 3) unit vertex normals of a triangle/quad surface: the adjacent cells' unit normals
    weighted by the cell's angle at the vertex (trimesh's and the pipeline's convention).

    ``areas``: the cells' :func:`area_vectors`, when already computed.
    Raises ValueError naming ``source`` when some vertex belongs to no cell with area.
    """
    p = np.asarray(points, dtype=np.float64)
    a = area_vectors(p, cells) if areas is None else areas
    unit = a / np.maximum(np.sqrt((a * a).sum(axis=1)), 1e-300)[:, None]
    out = np.zeros((len(p), 3))
    start = 0
    for c in cells.values():
        u = unit[start:start + len(c)]
        angles = _corner_angles(p, c, a[start:start + len(c)])
        for j in range(c.shape[1]):
            for col in range(3):
                out[:, col] += np.bincount(c[:, j], weights=u[:, col] * angles[:, j], minlength=len(p))
        start += len(c)
    norm = np.sqrt((out * out).sum(axis=1))
    tiny = norm <= 1e-12
    if tiny.any():
        raise ValueError(f"{source}: {int(tiny.sum())} of {len(p)} vertices belong to no surface cell "
                         "with area, so they have no normal; clean the mesh or use cell data")
    return out / norm[:, None]


def cell_to_point(values: np.ndarray, cells: dict[str, np.ndarray], n_points: int) -> np.ndarray:
    """Cell values (C,) or (C, k) averaged to the ``n_points`` vertices: (N,) or (N, k).

    Vertices no cell uses get 0.
    """
    v = np.asarray(values, dtype=np.float64)
    flat = v.reshape(len(v), -1)
    total = _scatter(cells, flat, n_points)
    count = _scatter(cells, np.ones((len(v), 1)), n_points)[:, 0]
    out = total / np.maximum(count, 1)[:, None]
    return out[:, 0] if v.ndim == 1 else out
