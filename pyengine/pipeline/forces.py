"""Judging a surrogate like a solver: integrated force coefficients and their test-set errors.

For a surface with outward area vectors ``A_i`` (one per cell, or the lumped share of
each vertex), pressure ``p`` and optional wall shear stress ``tau``::

    F = sum_i ( -(p_i - p_ref) A_i + s * tau_i |A_i| )         (s = ForceConfig.shear_sign)
    C = F / (q_ref * A_ref)

and the coefficients are the components of ``C`` along the drag (flow) direction, the
lift direction (made orthogonal to the flow) and, in 3-D, the side direction
``lift x flow``. A closed surface under uniform pressure gives exactly zero force,
whatever its mesh (the area vectors of a closed surface sum to zero).

Across a test set: mean and max absolute error of each coefficient, the coefficient of
determination R² of predicted vs true drag, and Spearman's rank correlation (does the
surrogate rank designs as the solver does), as AirfRANS and AB-UPT report them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["coefficient_axes", "force_coefficients", "force_metrics", "format_force_table"]


def coefficient_axes(cfg) -> dict[str, np.ndarray]:
    """Unit drag, lift (and side, in 3-D) axes of a :class:`~pyengine.data.files.ForceConfig`."""
    d = np.zeros(3)
    d[:len(cfg.flow_direction)] = cfg.flow_direction
    l_ = np.zeros(3)
    l_[:len(cfg.lift_direction)] = cfg.lift_direction
    d /= np.linalg.norm(d)
    l_ = l_ - (l_ @ d) * d
    if np.linalg.norm(l_) < 1e-9:
        raise ValueError("forces.lift_direction is parallel to forces.flow_direction")
    l_ /= np.linalg.norm(l_)
    axes = {"drag": d, "lift": l_}
    if len(cfg.flow_direction) == 3:
        axes["side"] = np.cross(l_, d)
    return axes


def force_coefficients(area, fields: Mapping[str, object], cfg) -> dict[str, float]:
    """Drag, lift (and side) coefficients of one surface.

    Args:
        area: (M, 3) outward area vectors at the field's locations (length²).
        fields: name -> values at the same M locations; needs ``cfg.pressure`` (M,) and, when
            ``cfg.shear`` is set, that (M, 3) field. Tensors or arrays, physical units.
        cfg: :class:`~pyengine.data.files.ForceConfig`.
    """
    a = np.asarray(area, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"area must be (M, 3), got {a.shape}")
    if cfg.pressure not in fields:
        raise ValueError(f"forces.pressure {cfg.pressure!r} is not a predicted field (fields: {sorted(fields)})")
    p = np.asarray(fields[cfg.pressure], dtype=np.float64).reshape(-1)
    if len(p) != len(a):
        raise ValueError(f"pressure has {len(p)} values for {len(a)} area vectors")
    force = -((p - cfg.reference_pressure)[:, None] * a).sum(axis=0)
    if cfg.shear is not None:
        if cfg.shear not in fields:
            raise ValueError(f"forces.shear {cfg.shear!r} is not a predicted field (fields: {sorted(fields)})")
        tau = np.asarray(fields[cfg.shear], dtype=np.float64)
        if tau.shape != (len(a), 3):
            raise ValueError(f"shear field {cfg.shear!r} must be (M, 3), got {tau.shape}")
        force = force + cfg.shear_sign * (tau * np.linalg.norm(a, axis=1)[:, None]).sum(axis=0)
    c = force / (cfg.dynamic_pressure * cfg.reference_area)
    return {name: float(c @ axis) for name, axis in coefficient_axes(cfg).items()}


def _r2(true: np.ndarray, pred: np.ndarray) -> float | None:
    ss_tot = float(((true - true.mean()) ** 2).sum())
    if len(true) < 2 or ss_tot == 0:
        return None
    return 1.0 - float(((pred - true) ** 2).sum()) / ss_tot


def _spearman(true: np.ndarray, pred: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(true) < 2 or np.ptp(true) == 0 or np.ptp(pred) == 0:
        return None
    rho = float(spearmanr(true, pred).statistic)
    return rho if math.isfinite(rho) else None


def force_metrics(true: Sequence[Mapping[str, float]], pred: Sequence[Mapping[str, float]]) -> dict:
    """Test-set errors of force coefficients (one dict per sample, as :func:`force_coefficients` gives).

    Returns, per coefficient, ``mean_abs_err`` and ``max_abs_err``, and for drag also ``r2``
    and ``spearman`` (None where undefined: fewer than 2 samples or a constant true drag).
    """
    if len(true) != len(pred) or not true:
        raise ValueError(f"need as many predictions as truths (>= 1), got {len(pred)} and {len(true)}")
    out = {}
    for name in true[0]:
        t = np.array([s[name] for s in true])
        p = np.array([s[name] for s in pred])
        err = np.abs(p - t)
        m = {"mean_abs_err": float(err.mean()), "max_abs_err": float(err.max())}
        if name == "drag":
            m["r2"] = _r2(t, p)
            m["spearman"] = _spearman(t, p)
        out[name] = m
    return out


def format_force_table(names: Sequence[str], true: Sequence[Mapping[str, float]],
                       pred: Sequence[Mapping[str, float]], metrics: Mapping | None = None) -> str:
    """A plain-text table: one row per sample (true / predicted coefficients), then the errors."""
    coeffs = list(true[0]) if true else []
    short = {"drag": "Cd", "lift": "Cl", "side": "Cs"}
    width = max([6] + [len(n) for n in names])
    head = f"{'sample':<{width}}" + "".join(f"  {short.get(c, c) + ' true':>10}  {short.get(c, c) + ' pred':>10}"
                                            for c in coeffs)
    lines = [head, "-" * len(head)]
    for n, t, p in zip(names, true, pred):
        lines.append(f"{n:<{width}}" + "".join(f"  {t[c]:>10.4f}  {p[c]:>10.4f}" for c in coeffs))
    if metrics:
        lines.append("-" * len(head))
        for c in coeffs:
            m = metrics[c]
            extra = ""
            if c == "drag":
                fmt = (lambda v: "n/a" if v is None else f"{v:.3f}")
                extra = f", R2 {fmt(m.get('r2'))}, Spearman {fmt(m.get('spearman'))}"
            lines.append(f"{short.get(c, c)}: mean |err| {m['mean_abs_err']:.4f}, max |err| {m['max_abs_err']:.4f}"
                         + extra)
    return "\n".join(lines)
