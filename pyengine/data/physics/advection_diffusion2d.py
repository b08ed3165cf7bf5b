"""A time-dependent 2D family: advection-diffusion ``du/dt + b . grad u = kappa lap u`` around holes.

The domain is the holed unit square of :mod:`.darcy2d` (gmsh triangles). The velocity
``b`` is a potential flow around the holes: ``b = -grad p`` with ``lap p = 0``, zero flux
through the holes and ``p = -(U . x)`` on the outer square, so far from the holes it is
the uniform stream ``U`` (random direction and speed) and it goes around them. The
initial condition is a sum of random Gaussian bumps; ``kappa`` is random too. All
boundaries carry the natural condition ``kappa du/dn = 0`` (no diffusive flux; the
flow carries ``u`` out through the outflow part of the square, and ``b . n = 0`` on the
holes up to discretisation).

scikit-fem assembles P1 mass, stiffness and advection matrices (the nodal velocity,
interpolated linearly, is the one stored in the features) and Crank-Nicolson steps
``substeps`` times per frame with one sparse LU factorisation.

Units are arbitrary but consistent: lengths in domain units (side 1), time in
domain lengths per unit speed, ``kappa`` in length^2 / time.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..sample import Sample
from ._gmsh import single_threaded_blas
from .darcy2d import mesh_domain, random_holes, solve_darcy

__all__ = ["advection_diffusion2d", "build_advection_diffusion_dataset", "trajectory", "trajectory_windows",
           "KAPPA_RANGE", "SPEED_RANGE"]

SOLVER_VERSION = "advection_diffusion2d/1"
KAPPA_RANGE = (0.005, 0.02)
SPEED_RANGE = (0.2, 0.5)


def _nodal_gradient(points: np.ndarray, tris: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Area-weighted average over the adjacent triangles of the P1 gradient of ``p``: (N, 2)."""
    a, b, c = points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]]
    e1, e2 = b - a, c - a
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    inv = np.stack([np.stack([e2[:, 1], -e2[:, 0]], 1), np.stack([-e1[:, 1], e1[:, 0]], 1)], 1) / det[:, None, None]
    dp = np.stack([p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]]], 1)  # (T, 2)
    grad = np.einsum("tij,ti->tj", inv, dp)  # J^-T applied: grad = inv^T dp
    area = np.abs(det) / 2
    acc = np.zeros((points.shape[0], 2))
    w = np.zeros(points.shape[0])
    for k in range(3):
        np.add.at(acc, tris[:, k], grad * area[:, None])
        np.add.at(w, tris[:, k], area)
    return acc / np.maximum(w, 1e-300)[:, None]


def advection_diffusion2d(seed: int, *, h: float = 0.05, n_frames: int = 64, dt: float = 0.02, substeps: int = 4,
                          n_holes: tuple[int, int] = (1, 3), dtype=None) -> Sample:
    """One random trajectory: domain, flow, diffusivity and initial bumps drawn from ``seed``.

    Args:
        seed: the sample's seed.
        h: mesh size (domain units).
        n_frames: stored frames, the initial condition first (frame k at time ``k * dt``).
        dt: time between frames; substeps: Crank-Nicolson steps per frame.
        n_holes: (min, max) number of elliptical holes.
    Returns:
        A :class:`~pyengine.data.Sample` with ``points`` (N, 2), ``features`` (N, 3) =
        ``[b_x, b_y, kappa_scaled]`` (the nodal velocity and ``kappa`` mapped linearly from
        ``KAPPA_RANGE`` to [-1, 1]), ``fields["u"]`` (N, n_frames), ``cells["triangle"]`` and
        ``metadata`` (kappa, stream velocity, holes, the initial bumps ``u0 = sum a exp(-|x - c|^2 / (2 w^2))``,
        dt, settings).
    """
    import scipy.sparse.linalg as spla
    import torch
    from skfem import Basis, BilinearForm, ElementTriP1, MeshTri, asm
    from skfem.helpers import dot, grad

    if int(n_frames) != n_frames or n_frames < 2:
        raise ValueError(f"advection_diffusion2d: n_frames must be an integer >= 2, got {n_frames!r}")
    if int(substeps) != substeps or substeps < 1:
        raise ValueError(f"advection_diffusion2d: substeps must be an integer >= 1, got {substeps!r}")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"advection_diffusion2d: dt must be a finite number > 0, got {dt!r}")
    rng = np.random.default_rng(int(seed))
    holes = random_holes(rng, n_holes)
    kappa = float(rng.uniform(*KAPPA_RANGE))
    speed, angle = float(rng.uniform(*SPEED_RANGE)), float(rng.uniform(0, 2 * math.pi))
    stream = np.array([speed * math.cos(angle), speed * math.sin(angle)])
    k_bumps = int(rng.integers(2, 4))
    centres = rng.uniform(0.2, 0.8, size=(k_bumps, 2))
    widths = rng.uniform(0.06, 0.12, size=k_bumps)
    amps = rng.uniform(0.5, 1.5, size=k_bumps) * rng.choice([-1.0, 1.0], size=k_bumps)

    pts, tris, _ = mesh_domain(holes, h, seed=0)
    # potential flow: lap p = 0, p = -(U . x) on the square, zero flux through the holes
    p = solve_darcy(pts, tris, lambda x: np.ones(x.shape[1:]), lambda x: np.zeros(x.shape[1:]),
                    g=lambda x: -(stream[0] * x[0] + stream[1] * x[1]))
    b = -_nodal_gradient(pts, tris, p)  # (N, 2)

    m = MeshTri(np.ascontiguousarray(pts.T), np.ascontiguousarray(tris.T))
    basis = Basis(m, ElementTriP1())
    bx, by = basis.interpolate(b[:, 0]), basis.interpolate(b[:, 1])
    mass = asm(BilinearForm(lambda u, v, w: u * v), basis)
    stiff = asm(BilinearForm(lambda u, v, w: dot(grad(u), grad(v))), basis)
    adv = asm(BilinearForm(lambda u, v, w: (w["bx"] * grad(u)[0] + w["by"] * grad(u)[1]) * v), basis, bx=bx, by=by)
    op = kappa * stiff + adv
    tau = dt / substeps
    lhs = (mass + 0.5 * tau * op).tocsc()
    rhs = (mass - 0.5 * tau * op).tocsr()
    u = np.zeros(pts.shape[0])
    for c, w, a in zip(centres, widths, amps):
        u += a * np.exp(-((pts[:, 0] - c[0]) ** 2 + (pts[:, 1] - c[1]) ** 2) / (2 * w * w))
    frames = [u.copy()]
    with single_threaded_blas():
        lu = spla.splu(lhs)
        for _ in range(int(n_frames) - 1):
            for _ in range(int(substeps)):
                u = lu.solve(rhs @ u)
            frames.append(u.copy())
    if not np.isfinite(frames[-1]).all():
        raise FloatingPointError(f"advection_diffusion2d: seed {seed} diverged")
    dtype = dtype or torch.get_default_dtype()
    lo, hi = KAPPA_RANGE
    feats = np.concatenate([b, np.full((pts.shape[0], 1), 2 * (kappa - lo) / (hi - lo) - 1)], axis=1)
    return Sample(
        points=torch.as_tensor(pts, dtype=dtype),
        features=torch.as_tensor(feats, dtype=dtype),
        fields={"u": torch.as_tensor(np.stack(frames, axis=1), dtype=dtype)},
        cells={"triangle": torch.as_tensor(tris)},
        metadata={"solver": SOLVER_VERSION, "seed": int(seed), "h": float(h), "dt": float(dt),
                  "substeps": int(substeps), "n_frames": int(n_frames), "kappa": kappa, "stream": stream.tolist(),
                  "holes": holes.tolist(), "n_holes": list(n_holes),
                  "bumps": {"centres": centres.tolist(), "widths": widths.tolist(), "amplitudes": amps.tolist()}},
    )


def build_advection_diffusion_dataset(
    n: int = 32,
    seed: int = 0,
    *,
    h: float = 0.05,
    n_frames: int = 64,
    dt: float = 0.02,
    substeps: int = 4,
    n_holes: tuple[int, int] = (1, 3),
    workers: int | None = None,
    cache: Any = True,
    progress: bool = True,
) -> list[Sample]:
    """``n`` random trajectories (see :func:`advection_diffusion2d`); trajectory i uses seed ``(seed, i)``.

    Cached per trajectory (``DiskCache`` namespace ``advection_diffusion2d``) under the hash of the
    solver version, its seed and every setting, like the other physics datasets.
    """
    from ..cache import content_hash
    from .datasets import _as_cache, _run_jobs

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"build_advection_diffusion_dataset: n must be a positive int, got {n!r}")
    seeds = [int(np.random.default_rng([int(seed), i]).integers(2**62)) for i in range(n)]
    jobs = [(s, float(h), int(n_frames), float(dt), int(substeps), tuple(n_holes)) for s in seeds]
    keys = [content_hash(SOLVER_VERSION, *job[:5], list(n_holes)) for job in jobs]
    return _run_jobs(_job, jobs, keys, "advection_diffusion2d", _as_cache(cache), workers, progress,
                     "advection-diffusion 2d")


def _job(seed: int, h: float, n_frames: int, dt: float, substeps: int, n_holes: tuple) -> Sample:
    return advection_diffusion2d(seed, h=h, n_frames=n_frames, dt=dt, substeps=substeps, n_holes=n_holes)


def trajectory(sample: Sample):
    """``(points (N, 2), frames (T, N, 1), params (N, 3))`` of a generated sample, for MP-PDE training."""
    if "u" not in sample.fields or sample.fields["u"].dim() != 2:
        raise ValueError("trajectory: the sample has no (N, T) field 'u' (not from advection_diffusion2d?)")
    return sample.points, sample.fields["u"].T.unsqueeze(-1).contiguous(), sample.features


def trajectory_windows(sample: Sample, time_window: int, stride: int | None = None) -> list[Sample]:
    """One-step training samples for :class:`~pyengine.pipeline.train.Trainer`.

    Window at time t: ``features (N, K + 3) = [u_{t-K+1..t}, params]`` and
    ``fields["u_next"] (N, K) = u_{t+1..t+K}``, with ``K = time_window``; ``stride`` (default K)
    is the step between windows.
    """
    import torch

    if int(time_window) != time_window or time_window < 1:
        raise ValueError(f"trajectory_windows: time_window must be an integer >= 1, got {time_window!r}")
    points, frames, params = trajectory(sample)
    k = int(time_window)
    stride = k if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"trajectory_windows: stride must be >= 1, got {stride}")
    u = frames[..., 0]  # (T, N)
    out = []
    for t in range(0, u.shape[0] - 2 * k + 1, stride):
        feats = torch.cat([u[t:t + k].T, params], dim=1)
        out.append(Sample(points=points, features=feats, fields={"u_next": u[t + k:t + 2 * k].T.contiguous()},
                          metadata={"t": t + k - 1}))
    if not out:
        raise ValueError(f"trajectory_windows: {u.shape[0]} frames hold no window of 2 x {k}")
    return out

