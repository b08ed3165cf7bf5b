"""Mesh hygiene for real CAD exports: merge, de-duplicate, drop degenerates, orient, and keep the map back.

Real surface meshes carry defects that clean generated meshes never have: the
same sheet twice (often with opposite winding), coincident but unshared
vertices (every STL), collinear "sliver" triangles, non-manifold edges where
solids touch, open boundaries and inconsistent winding. :func:`clean_surface`
removes or counts each of them and returns a :class:`CleanSurface` that keeps
the map back to the input, so fields computed on the clean surface are written
on the user's own vertices, in their order.

Everything is vectorised numpy/scipy (sorting and sparse connected components),
so a 2M-triangle surface cleans in seconds. trimesh's own ``process``/
``merge_vertices``/``fix_normals`` would do parts of this, but they drop the
input order, merge with an absolute tolerance and walk faces in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["CleanSurface", "clean_surface", "merge_vertices", "DEGENERATE_RATIO", "MERGE_TOLERANCE"]

#: Vertices closer than this fraction of the bounding-box diagonal are merged.
MERGE_TOLERANCE = 1e-8
#: A triangle is degenerate when twice its area is below this fraction of its longest edge
#: squared, i.e. its height is below 1e-6 of its length: collinear up to float32 rounding.
DEGENERATE_RATIO = 1e-6


@dataclass
class CleanSurface:
    """A triangle surface after :func:`clean_surface`, with the maps back to the input.

    Attributes:
        points: (V, 3) float64 distinct vertices, in order of first appearance in the input.
        faces: (F, 3) int64 kept triangles into ``points``, wound consistently per component
            (outward for closed components).
        vertex_map: (N_in,) int64, input vertex -> row of ``points``.
        face_index: (F,) int64, kept triangle -> row of the input ``faces``.
        flipped: (F,) bool, the kept triangle's winding is reversed relative to the input.
        component: (F,) int64 component id of each kept triangle (edge-connected through
            edges that exactly two triangles share), numbered by first kept face.
        closed: (C,) bool per component: every edge is shared by exactly two of its triangles.
        used: (V,) bool, the vertex belongs to a kept triangle.
        counts: what was found and done (see :meth:`summary`).
    """

    points: np.ndarray
    faces: np.ndarray
    vertex_map: np.ndarray
    face_index: np.ndarray
    flipped: np.ndarray
    component: np.ndarray
    closed: np.ndarray
    used: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def num_components(self) -> int:
        return int(len(self.closed))

    @property
    def is_closed(self) -> bool:
        """Every component is closed (and there is at least one)."""
        return bool(len(self.closed)) and bool(self.closed.all())

    def summary(self) -> str:
        """One line: what was removed or merged, then the topology, e.g.
        ``cleaned: 67,326 duplicate faces, 2 degenerate faces removed; 4 components; open surface``."""
        c = self.counts
        removed: list[str] = []
        if c["duplicate_faces"]:
            opp = c["opposite_duplicates"]
            removed.append(f"{c['duplicate_faces']:,} duplicate faces"
                           + (f" ({opp:,} opposite-wound)" if opp else ""))
        if c["degenerate_faces"]:
            removed.append(f"{c['degenerate_faces']:,} degenerate faces")
        parts = []
        if removed:
            parts.append(", ".join(removed) + " removed")
        if c["merged_vertices"]:
            parts.append(f"{c['merged_vertices']:,} coincident vertices merged")
        if c["reoriented_faces"]:
            parts.append(f"{c['reoriented_faces']:,} faces re-oriented")
        head = "cleaned: " + ("; ".join(parts) if parts else "nothing to remove")
        n = self.num_components
        topo = [f"{n:,} component" + ("" if n == 1 else "s")]
        if self.is_closed:
            topo.append("closed surface")
        else:
            n_open = int((~self.closed).sum())
            topo.append(f"open surface ({n_open:,} open component{'' if n_open == 1 else 's'}, "
                        f"{c['boundary_edges']:,} boundary edges)")
        if c["nonmanifold_edges"]:
            topo.append(f"{c['nonmanifold_edges']:,} non-manifold edge{'' if c['nonmanifold_edges'] == 1 else 's'}")
        if c["nonorientable_components"]:
            topo.append(f"{c['nonorientable_components']:,} non-orientable components")
        if c["unused_vertices"]:
            topo.append(f"{c['unused_vertices']:,} vert{'ex' if c['unused_vertices'] == 1 else 'ices'} in no face")
        return head + "; " + "; ".join(topo)


def _first_appearance_unique(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse) of a 1-D key array, with unique ids numbered by first appearance."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


def _row_keys(a: np.ndarray) -> np.ndarray:
    """A 1-D array whose equal entries mean equal rows (rows of an int64 or float array)."""
    a = np.ascontiguousarray(a)
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB),
        np.uint64(0xD6E8FEB86659FD93))


def group_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal rows of a 2-D array (any fixed-size dtype), numbered by first appearance.

    Returns ``(first, inverse)``: the row index of each group's first member, in order, and
    each row's group. Rows are hashed to 64 bits and sorted once (sorting raw 12- or 24-byte
    rows is several times slower); equal hashes are then checked to hold equal rows, and
    the exact byte-wise method takes over in the (astronomically rare) case they do not.
    """
    a = np.ascontiguousarray(rows)
    n = len(a)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    width = a.dtype.itemsize * a.shape[1]
    if width % 8 == 0:
        words = a.view(np.uint64).reshape(n, width // 8)
    elif width % 4 == 0:
        words = a.view(np.uint32).reshape(n, width // 4)
    else:
        return _first_appearance_unique(_row_keys(a))
    cols = [np.ascontiguousarray(words[:, j]).astype(np.uint64, copy=False) for j in range(words.shape[1])]
    h = cols[0] * _MIX[0]
    for j in range(1, len(cols)):
        h += cols[j] * _MIX[j % 4]
    h ^= h >> np.uint64(29)
    h *= _MIX[1]
    h ^= h >> np.uint64(32)
    order = np.argsort(h)
    hs = h[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(hs[1:], hs[:-1], out=new[1:])
    del hs, h
    # equal hashes must be equal rows: compare column by column (1-D gathers are cheap, row gathers are not)
    collision = False
    for c in cols:
        cs = c[order]
        collision |= bool(((cs[1:] != cs[:-1]) & ~new[1:]).any())
    if collision:
        return _first_appearance_unique(_row_keys(a))
    starts = np.flatnonzero(new)
    first_sorted = np.minimum.reduceat(order, starts)  # each group's first appearance
    group_sorted = np.cumsum(new) - 1
    by_first = np.argsort(first_sorted)
    rank = np.empty(len(first_sorted), np.int64)
    rank[by_first] = np.arange(len(first_sorted))
    inverse = np.empty(n, np.int64)
    inverse[order] = rank[group_sorted]
    return first_sorted[by_first], inverse


def merge_vertices(points: np.ndarray, tolerance: float = MERGE_TOLERANCE) -> tuple[np.ndarray, np.ndarray]:
    """Merge vertices that coincide within ``tolerance`` x the bounding-box diagonal.

    Returns ``(first, vertex_map)``: the input rows kept (in order of first appearance)
    and, per input vertex, its row among the kept ones. ``tolerance = 0`` merges only
    exact copies. Coordinates are snapped to a grid of that spacing, so two points just
    either side of a grid line may stay apart: exact and near-exact copies (the defects
    of real exports) always merge.
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    lo, hi = pts.min(0), pts.max(0)
    diag = float(np.linalg.norm(hi - lo))
    if tolerance > 0 and diag > 0:
        grid = np.floor((pts - lo) / (tolerance * diag) + 0.5).astype(np.int64)
    else:
        grid = pts + 0.0  # -0.0 and 0.0 are the same coordinate
    return group_rows(grid)


def _triangle_geometry(points: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, 3) cross products (twice the area, along the normal) and (F,) longest squared edge."""
    a, b, c = (points[faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    l2 = np.maximum(np.maximum(((b - a) ** 2).sum(1), ((c - b) ** 2).sum(1)), ((a - c) ** 2).sum(1))
    return cross, l2


def _orientation_parity(faces: np.ndarray) -> np.ndarray:
    """Parity (0 even, 1 odd) of the permutation that sorts each triangle's indices."""
    a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
    inversions = (a > b).astype(np.int8) + (a > c) + (b > c)
    return inversions & 1


def clean_surface(points: np.ndarray, faces: np.ndarray, *, tolerance: float = MERGE_TOLERANCE,
                  orient: bool = True) -> CleanSurface:
    """Clean a triangle surface and keep the map back to the input.

    Steps, in order:

    1. merge coincident vertices (``tolerance`` x bounding-box diagonal, see :func:`merge_vertices`);
    2. drop degenerate triangles: repeated vertices after merging, or a height below
       :data:`DEGENERATE_RATIO` of the longest edge (collinear up to float32 rounding);
    3. drop duplicate triangles, both exact copies and opposite-wound ones (the first copy stays);
    4. find edges shared by one triangle (open boundary), two (manifold) or more (non-manifold);
    5. components: triangles connected through manifold edges;
    6. with ``orient``: make the winding consistent inside each component (breadth-first over
       manifold edges, as a parity problem solved with sparse connected components), then
       outward for closed components (positive signed volume) and, for open ones, the way the
       majority of the input triangles already point.

    Args:
        points: (N, 3) vertex coordinates; faces: (F, 3) int triangle indices into them.
    Returns:
        A :class:`CleanSurface`.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pts_in = np.asarray(points, dtype=np.float64)
    faces_in = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    if pts_in.ndim != 2 or pts_in.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts_in.shape}")
    if not np.isfinite(pts_in).all():
        raise ValueError("points contain NaN or Inf")
    if faces_in.size and (faces_in.min() < 0 or faces_in.max() >= len(pts_in)):
        raise ValueError(f"faces index outside the {len(pts_in)} points")
    first, vmap = merge_vertices(pts_in, tolerance)
    pts = pts_in[first]
    nv = len(pts)
    f = vmap[faces_in]

    # 2. degenerate: repeated vertex or (near-)zero area
    repeated = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2])
    cross, l2 = _triangle_geometry(pts, f)
    twice_area = np.sqrt((cross ** 2).sum(1))
    degenerate = repeated | (twice_area <= DEGENERATE_RATIO * l2)
    keep = np.flatnonzero(~degenerate)

    # 3. duplicates among the rest: same vertex set; opposite-wound when the parities differ
    fk = f[keep]
    first_f, group = group_rows(np.sort(fk, axis=1))
    parity = _orientation_parity(fk)
    is_dup = np.ones(len(fk), dtype=bool)
    is_dup[first_f] = False
    opposite = is_dup & (parity != parity[first_f][group])
    keep = keep[first_f]
    fk = fk[first_f]
    cross = cross[keep]

    # 4. edges: 3 directed edges per face, grouped by undirected key
    nf = len(fk)
    src = fk.reshape(-1)
    dst = fk[:, [1, 2, 0]].reshape(-1)
    ekey = np.minimum(src, dst) * np.int64(max(nv, 1)) + np.maximum(src, dst)
    order = np.argsort(ekey)
    sk = ekey[order]
    new_edge = np.empty(len(sk), dtype=bool)
    if len(sk):
        new_edge[0] = True
        np.not_equal(sk[1:], sk[:-1], out=new_edge[1:])
    starts = np.flatnonzero(new_edge)
    mult = np.diff(np.r_[starts, len(sk)])
    boundary_edges = int((mult == 1).sum())
    nonmanifold_edges = int((mult > 2).sum())
    pair_start = starts[mult == 2]
    e1, e2 = order[pair_start], order[pair_start + 1]
    f1, f2 = e1 // 3, e2 // 3
    # two faces sharing an edge are consistently wound when they traverse it in opposite directions
    consistent = src[e1] != src[e2]

    # 5. + 6. one sparse connected-components pass on the orientation double cover: node f is
    # face f as given, node nf + f the same face flipped; a manifold edge joins (f, g) and their
    # mirrors when the two are consistent, (f, flipped g) and its mirror when not. The two
    # nodes of a face are in one component exactly when its component cannot be oriented.
    if nf:
        c = consistent
        rows = np.concatenate([f1[c], f1[c] + nf, f1[~c], f1[~c] + nf])
        cols = np.concatenate([f2[c], f2[c] + nf, f2[~c] + nf, f2[~c]])
        g = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(2 * nf, 2 * nf)).tocsr()
        _, lab = connected_components(g, directed=False)
        lab_keep, lab_flip = lab[:nf], lab[nf:]
        comp_raw = np.minimum(lab_keep, lab_flip)  # the same for every face of an edge-connected component
        # number components by their first face, so ids follow the file
        uniq, first_face, comp = np.unique(comp_raw, return_index=True, return_inverse=True)
        n_comp = len(uniq)
        relabel = np.empty(n_comp, np.int64)
        relabel[np.argsort(first_face, kind="stable")] = np.arange(n_comp)
        comp = relabel[comp.ravel()]
        first_face = np.sort(first_face)  # first face of component k, by new id
    else:
        n_comp, comp, first_face = 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
        lab_keep = lab_flip = np.zeros(0, np.int64)

    # closed: every edge of the component is used by exactly two of its faces. A manifold edge's
    # two faces share a component; a boundary edge opens its component; at a non-manifold edge
    # (touching solids) each component must own exactly two of the faces.
    open_count = np.zeros(n_comp)
    if nf:
        open_count += np.bincount(comp[order[starts[mult == 1]] // 3], minlength=n_comp)
        nm = np.flatnonzero(np.repeat(mult > 2, mult))
        if len(nm):
            nm_edge, nm_comp = sk[nm], comp[order[nm] // 3]
            o2 = np.lexsort((nm_comp, nm_edge))
            k2, c2 = nm_edge[o2], nm_comp[o2]
            run = np.r_[True, (k2[1:] != k2[:-1]) | (c2[1:] != c2[:-1])]
            run_len = np.diff(np.r_[np.flatnonzero(run), len(k2)])
            open_count += np.bincount(c2[run], weights=run_len != 2, minlength=n_comp)
    closed = open_count == 0

    flip = np.zeros(nf, dtype=bool)
    nonorientable = 0
    if orient and nf:
        orientable_face = lab_keep != lab_flip
        root_label = lab_keep[first_face]
        flip = orientable_face & (lab_flip == root_label[comp])
        comp_orientable = np.bincount(comp, weights=~orientable_face, minlength=n_comp) == 0
        nonorientable = int((~comp_orientable).sum())
        flip &= comp_orientable[comp]
        # direction per component
        centre = pts[fk[:, 0]].mean(0)
        a = pts[fk[:, 0]] - centre
        six_vol = (a * cross).sum(1)
        six_vol[flip] *= -1
        vol = np.bincount(comp, weights=six_vol, minlength=n_comp)  # 6 x signed volume
        n_flipped = np.bincount(comp, weights=flip, minlength=n_comp)
        n_faces = np.bincount(comp, minlength=n_comp)
        invert = np.where(closed, vol < 0, n_flipped * 2 > n_faces) & comp_orientable
        flip ^= invert[comp]
    faces_out = np.where(flip[:, None], fk[:, [0, 2, 1]], fk)

    used = np.zeros(nv, dtype=bool)
    used[faces_out.reshape(-1)] = True
    counts = {
        "input_vertices": int(len(pts_in)), "input_faces": int(len(faces_in)),
        "merged_vertices": int(len(pts_in) - nv),
        "degenerate_faces": int(degenerate.sum()),
        "duplicate_faces": int(is_dup.sum()), "opposite_duplicates": int(opposite.sum()),
        "boundary_edges": boundary_edges, "nonmanifold_edges": nonmanifold_edges,
        "components": int(n_comp), "closed_components": int(closed.sum()),
        "nonorientable_components": nonorientable,
        "reoriented_faces": int(flip.sum()), "unused_vertices": int((~used).sum()),
    }
    return CleanSurface(points=pts, faces=faces_out, vertex_map=vmap, face_index=keep, flipped=flip,
                        component=comp, closed=closed, used=used, counts=counts)
