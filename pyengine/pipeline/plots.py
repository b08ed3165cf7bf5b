"""Figures: true vs predicted vs error on a few geometries, and predicted vs true force
coefficients over a test set (matplotlib, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_force_scatter", "plot_predictions"]


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
