"""Figures: true vs predicted vs error on a few geometries, the headless preview of a prediction, and
predicted vs true force coefficients over a test set (matplotlib, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_force_scatter", "plot_predictions", "render_preview"]


def plot_predictions(path: str | Path, items: Sequence[dict], field: str, *, max_rows: int = 4,
                     view: tuple[float, float] = (20.0, -60.0)) -> Path:
    """Save a PNG grid: one row per geometry, columns true / predicted / |error|.

    Args:
        path: output ``.png``.
        items: dicts with ``points (N, 2|3)``, ``true (N,)``, ``pred (N,)`` arrays and an optional ``title``.
        field: the field's name (colorbar label).
        max_rows: at most this many geometries.
        view: (elevation, azimuth) in degrees for 3D points.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: works on headless machines
    import matplotlib.pyplot as plt

    items = list(items)[:max_rows]
    if not items:
        raise ValueError("plot_predictions needs at least one item")
    three_d = np.asarray(items[0]["points"]).shape[1] == 3
    fig = plt.figure(figsize=(12, 3.4 * len(items)))
    for r, it in enumerate(items):
        pts = np.asarray(it["points"], dtype=float)
        true, pred = np.asarray(it["true"], dtype=float).ravel(), np.asarray(it["pred"], dtype=float).ravel()
        err = np.abs(pred - true)
        lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
        rel = np.linalg.norm(pred - true) / max(np.linalg.norm(true), 1e-12)
        for c, (values, name, cmap, vmin, vmax) in enumerate([
            (true, f"true {field}", "viridis", lo, hi),
            (pred, f"predicted {field}", "viridis", lo, hi),
            (err, f"|error| (rel L2 {rel:.3f})", "magma", 0.0, float(err.max()) or 1.0),
        ]):
            ax = fig.add_subplot(len(items), 3, 3 * r + c + 1, projection="3d" if three_d else None)
            if three_d:
                sc = ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=values, s=2, cmap=cmap, vmin=vmin, vmax=vmax)
                ax.view_init(*view)
                ax.set_axis_off()
                ax.set_box_aspect(np.ptp(pts, axis=0) + 1e-9)
            else:
                sc = ax.scatter(pts[:, 0], pts[:, 1], c=values, s=3, cmap=cmap, vmin=vmin, vmax=vmax)
                ax.set_aspect("equal")
            title = name if c else f"{it.get('title', f'sample {r}')}: {name}"
            ax.set_title(title, fontsize=9)
            fig.colorbar(sc, ax=ax, shrink=0.7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# Views of the preview: (name, azimuth, elevation) in degrees, z up, as matplotlib's view_init.
PREVIEW_VIEWS = (("3/4 view", -60.0, 25.0), ("side (looking along +y)", -90.0, 0.0), ("top (looking down z)", -90.0, 90.0))


def _camera(azimuth: float, elevation: float) -> np.ndarray:
    """Rows: screen right, screen up, toward the viewer (orthonormal), for an orbit camera with z up."""
    az, el = np.radians(azimuth), np.radians(elevation)
    toward = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    up0 = np.array([0.0, 0.0, 1.0]) if abs(np.sin(el)) < 0.999 else np.array([-np.cos(az), -np.sin(az), 0.0])
    right = np.cross(up0, toward)
    right /= np.linalg.norm(right)
    up = np.cross(toward, right)
    return np.stack([right, up, toward])


def _render_view(points, faces, values, normals, cam, size, max_samples, cull=None):
    """(H, W) value image (NaN where empty) and (H, W) shade: a z-buffer of surface samples.

    Each triangle is sampled on a fan grid from the corner opposite its shortest edge: steps
    of at most 0.7 pixel along the fan (from the corner to the opposite edge) and across it,
    so every pixel whose centre lies in the triangle receives a sample, at a cost proportional
    to the triangle's area in pixels (slivers stay cheap). Triangles smaller than a pixel are
    represented by their vertices.
    """
    w, h = size
    xy = points @ cam[:2].T
    depth = points @ cam[2]
    lo, hi = xy.min(0), xy.max(0)
    span = np.maximum(hi - lo, 1e-12)
    scale = 0.92 * min(w / span[0], h / span[1])
    pix = (xy - (lo + hi) / 2) * scale + np.array([w / 2, h / 2])
    fn = np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])
    if cull is not None:  # closed, outward-wound parts: faces turned away are hidden anyway
        faces, fn = faces[~cull | (fn @ cam[2] > 0)], fn[~cull | (fn @ cam[2] > 0)]
    tri = pix[faces]
    edge = np.stack([np.sqrt(((tri[:, (i + 1) % 3] - tri[:, (i + 2) % 3]) ** 2).sum(1)) for i in range(3)], 1)
    apex = np.argmin(edge, axis=1)  # corner opposite the shortest edge
    step = 0.7
    ku = np.ceil(edge.max(1) / step).astype(np.int64)
    kw = np.ceil(edge.min(1) / step).astype(np.int64)
    big = edge.max(1) > 1.2  # smaller triangles: their vertices are dense enough (holes are filled below)
    count = (ku + 1) * (kw + 1) * big
    if count.sum() > max_samples:  # too many: a coarser grid (coverage may get small holes)
        f = np.sqrt(count.sum() / max_samples)
        ku = np.maximum(np.ceil(ku / f), 1).astype(np.int64)
        kw = np.maximum(np.ceil(kw / f), 1).astype(np.int64)
        count = (ku + 1) * (kw + 1) * big
    t = np.repeat(np.arange(len(faces)), count)
    local = np.arange(len(t)) - np.repeat(np.cumsum(count) - count, count)
    u = (local // (kw[t] + 1)) / ku[t]
    wv = (local % (kw[t] + 1)) / np.maximum(kw[t], 1)
    corner = faces[t, apex[t]]
    other1, other2 = faces[t, (apex[t] + 1) % 3], faces[t, (apex[t] + 2) % 3]
    b1, b2 = u * (1 - wv), u * wv
    b0 = 1 - b1 - b2

    def interp(a):
        return b0.reshape(-1, *[1] * (a.ndim - 1)) * a[corner] + b1.reshape(-1, *[1] * (a.ndim - 1)) * a[other1] \
            + b2.reshape(-1, *[1] * (a.ndim - 1)) * a[other2]

    vis = np.zeros(len(points), dtype=bool)  # vertex samples: only those of faces not culled
    vis[faces.reshape(-1)] = True
    if len(faces) == 0:  # a point cloud: every point, splatted over its neighbour spacing below
        vis[:] = True
    sp = np.concatenate([pix[vis], interp(pix)])
    sd = np.concatenate([depth[vis], interp(depth)])
    sv = np.concatenate([values[vis], interp(values)])
    # flat shading inside triangles (sharp CAD edges stay sharp), vertex normals for the vertex samples
    sn = np.concatenate([normals[vis], fn[t]])
    if len(faces) == 0 and len(sp) > 1:
        from scipy.spatial import cKDTree

        gap = float(np.median(cKDTree(points).query(points, k=2)[0][:, 1])) * scale
        r = int(min(max(np.ceil(0.6 * gap), 0), 8))
        offs = np.array([(dx, dy) for dx in range(-r, r + 1) for dy in range(-r, r + 1)], dtype=float)
        sp = (sp[:, None, :] + offs[None]).reshape(-1, 2)
        sd, sv = np.repeat(sd, len(offs)), np.repeat(sv, len(offs))
        sn = np.repeat(sn, len(offs), axis=0)
    ix = np.clip(np.floor(sp[:, 0]).astype(np.int64), 0, w - 1)
    iy = np.clip(h - 1 - np.floor(sp[:, 1]).astype(np.int64), 0, h - 1)
    pid = iy * w + ix
    # z-buffer: per pixel the largest depth (nearest the viewer) wins; ties are the same surface
    zbuf = np.full(w * h, -np.inf)
    np.maximum.at(zbuf, pid, sd)
    win = np.flatnonzero(sd >= zbuf[pid])
    img = np.full(w * h, np.nan)
    shade = np.ones(w * h)
    img[pid[win]] = sv[win]
    nrm = sn[win] / np.maximum(np.linalg.norm(sn[win], axis=1, keepdims=True), 1e-12)
    shade[pid[win]] = 0.35 + 0.65 * np.abs(nrm @ cam[2])
    img, shade, zbuf = img.reshape(h, w), shade.reshape(h, w), zbuf.reshape(h, w)
    return _fill_holes(img, shade, zbuf)


def _fill_holes(img, shade, zbuf):
    """Empty pixels with at least 5 of 8 covered neighbours take the nearest neighbour's sample."""
    empty = np.isnan(img)
    pad = lambda a, v: np.pad(a, 1, constant_values=v)  # noqa: E731
    pi, ps, pz = pad(img, np.nan), pad(shade, 1.0), pad(zbuf, -np.inf)
    h, w = img.shape
    best_z = np.full((h, w), -np.inf)
    best_v, best_s = np.full((h, w), np.nan), np.ones((h, w))
    covered = np.zeros((h, w), dtype=np.int64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            z = pz[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
            has = np.isfinite(z)
            covered += has
            better = has & (z > best_z)
            best_z = np.where(better, z, best_z)
            best_v = np.where(better, pi[1 + dy:1 + dy + h, 1 + dx:1 + dx + w], best_v)
            best_s = np.where(better, ps[1 + dy:1 + dy + h, 1 + dx:1 + dx + w], best_s)
    fill = empty & (covered >= 5)
    img, shade = img.copy(), shade.copy()
    img[fill], shade[fill] = best_v[fill], best_s[fill]
    return img, shade


def render_preview(path: str | Path, points: np.ndarray, faces: np.ndarray, values: np.ndarray, *,
                   field: str, normals: np.ndarray | None = None, title: str | None = None,
                   size: tuple[int, int] = (560, 420), max_samples: int = 6_000_000,
                   cmap: str = "viridis", cull: np.ndarray | None = None) -> Path:
    """A headless PNG of a per-vertex field on a triangle surface, from three views, with a colour bar.

    Rendering is a z-buffered point splat in numpy (no OpenGL, no display): each triangle is
    sampled on a barycentric lattice finer than a pixel, values and normals are interpolated
    linearly, the sample nearest the viewer wins each pixel, and a headlight shades by the
    normal so the shape reads. Cost is linear in the triangles plus the pixels.

    Args:
        points: (V, 3); faces: (F, 3) triangles (F = 0: a point cloud, each point splatted over
            its neighbour spacing); values: (V,) the field at the vertices.
        normals: (V, 3) unit vertex normals for shading (default: flat shading from the faces).
        size: (width, height) in pixels of each view.
        cull: (F,) bool, faces that may be skipped when they face away from the viewer (faces of
            closed, outward-wound components); speeds up rendering, changes nothing visible.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    pts = np.asarray(points, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64).ravel()
    if pts.ndim != 2 or pts.shape[1] != 3 or vals.shape != (len(pts),):
        raise ValueError(f"points must be (V, 3) and values (V,), got {pts.shape} and {vals.shape}")
    if faces.size == 0:
        faces = faces.reshape(0, 3)
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
    if len(faces) == 0 and normals is None:
        raise ValueError("a point cloud (no faces) needs normals for shading")
    if normals is None:
        a, b, c = (pts[faces[:, i]] for i in range(3))
        fn = np.cross(b - a, c - a)
        normals = np.zeros_like(pts)
        for i in range(3):
            np.add.at(normals, faces[:, i], fn)
    normals = np.asarray(normals, dtype=np.float64)
    finite = vals[np.isfinite(vals)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    norm = colors.Normalize(lo, hi)
    mapper = cm.ScalarMappable(norm=norm, cmap=cmap)
    w, h = size
    total_w = 3 * w + 170
    fig = plt.figure(figsize=(total_w / 100, h / 100 + 0.7), dpi=100)
    axes = [fig.add_axes([i * w / total_w, 0.02, w / total_w, 0.86]) for i in range(3)]
    cax = fig.add_axes([(3 * w + 20) / total_w, 0.1, 18 / total_w, 0.7])
    for ax, (name, az, el) in zip(axes, PREVIEW_VIEWS):
        img, shade = _render_view(pts, faces, vals, normals, _camera(az, el), size, max_samples // 3, cull)
        rgb = mapper.to_rgba(np.nan_to_num(img, nan=lo))[..., :3] * shade[..., None]
        rgb[np.isnan(img)] = 1.0
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.colorbar(mapper, cax=cax).set_label(field)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_force_scatter(path: str | Path, rows: Sequence[dict]) -> Path:
    """Save a PNG of predicted vs true force coefficients, one panel per coefficient (drag first).

    Args:
        rows: per test sample ``{"true": {"drag": .., "lift": ..}, "pred": {...}}``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    if not rows:
        raise ValueError("plot_force_scatter needs at least one sample")
    names = list(rows[0]["true"])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        t = np.array([r["true"][name] for r in rows])
        p = np.array([r["pred"][name] for r in rows])
        lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1)
        ax.scatter(t, p, s=18)
        ax.set_xlabel(f"true C_{name[0]}")
        ax.set_ylabel(f"predicted C_{name[0]}")
        ax.set_title(f"{name} coefficient ({len(rows)} test samples)", fontsize=9)
        ax.set_aspect("equal")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
