"""Prediction on new geometries: from a user's mesh file to fields on its own vertices, honestly.

:func:`predict_file` is ``pyengine predict``. In order:

1. every argument is checked before anything is loaded (paths, formats, sizes);
2. the checkpoint is checked (field list against output channels, finite weights);
3. the mesh is read; a truncated or damaged file is refused unless ``allow_partial``;
4. the surface is cleaned (:mod:`pyengine.geometry.clean`) and given normals that never
   fail (:mod:`pyengine.geometry.normals`); a 2-D model refuses a 3-D mesh;
5. the geometry is compared with the training envelope (:mod:`.envelope`) in the frame
   the model sees; the model predicts in chunks (:func:`predict_chunked`);
6. non-finite predictions are refused; every vertex gets an ``extrapolation`` flag;
7. the fields are written on the input's own vertices, in their order, with its cells;
   a preview PNG and a summary follow.

A model's latent state depends on the input points only; decoding is
independent per query. Large query sets are therefore decoded in spatially
coherent chunks (the leaves of a k-d partition, :func:`pyengine.ops.kd_partition`),
so the per-chunk neighbor graphs and activations stay small, and the result is
the same as one unchunked pass.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..ops import kd_partition

__all__ = ["OUTPUT_FORMATS", "PredictResult", "PredictWarning", "UNITS", "check_predict_args", "predict_chunked",
           "predict_file"]

#: Length units understood by ``--units``, in metres.
UNITS = {"mm": 1e-3, "cm": 1e-2, "m": 1.0, "in": 0.0254}
#: Formats ``predict`` writes (fields on the input's connectivity).
OUTPUT_FORMATS = (".vtu", ".vtp", ".vtk", ".ply")


class PredictWarning(UserWarning):
    """Something about a prediction the user should know; one line."""


@torch.no_grad()
def predict_chunked(model, points: Tensor, features: Tensor | None, queries: Tensor | None = None, *,
                    chunk_size: int = 200_000, progress: bool = False, stats: dict | None = None,
                    query_features: Tensor | None = None, **kwargs) -> Tensor:
    """``model(points, features, queries)`` computed chunk by chunk over the queries.

    Args:
        model: a :mod:`pyengine.models` model (eval mode recommended).
        points, features: (N, d), (N, C_in) inputs of one geometry.
        queries: (M, d) output locations (default: ``points``).
        query_features: (M, C_in) the inputs evaluated at the queries, or None (see
            :meth:`pyengine.models.base.OperatorModel.predict_at`).
        chunk_size: most queries decoded at once (memory bound of the decoder).
        progress: show a progress bar over the chunks.
        stats: if given, receives ``{"chunks": number of chunks decoded}``.
        **kwargs: conditioning passed to the encoder (``time``, ``lead_time``).

    Returns: (M, C_out), rows in the order of ``queries``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    queries = points if queries is None else queries
    state = model.latent(points, features, **kwargs)
    m = queries.shape[0]
    if m <= chunk_size:
        if stats is not None:
            stats["chunks"] = 1
        return model.predict_at(state, queries, query_features=query_features)
    part = kd_partition(queries, max_leaf_points=chunk_size)
    out = None
    done = 0
    for i in tqdm(range(part.num_leaves), desc="predict", disable=not progress):
        idx = part.leaf(i)
        if idx.numel() == 0:
            continue
        qf = None if query_features is None else query_features[idx]
        pred = model.predict_at(state, queries[idx], query_features=qf)
        if out is None:
            out = pred.new_empty(m, pred.shape[1])
        out[idx] = pred
        done += 1
    if stats is not None:
        stats["chunks"] = done
    return out


# --------------------------------------------------------------------------- argument checks


def _check_writable(flag: str, path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a directory, not a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {path}: {parent} is a file, not a directory")
            break


def check_predict_args(checkpoint: str | Path, mesh_path: str | Path, out_path: str | Path, *,
                       png: str | Path | None = None, chunk_size: int = 200_000, units: str | None = None,
                       cad_size: float | None = None, device: str = "cpu") -> None:
    """Every check that needs no loading, so a bad argument fails in milliseconds, not after the mesh.

    Raises ValueError/FileNotFoundError with one line naming the argument.
    """
    from ..geometry.io import MeshIOError, readable_format

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"--chunk-size must be a positive integer, got {chunk_size!r}")
    if units is not None and units not in UNITS:
        raise ValueError(f"--units must be one of {', '.join(UNITS)}, got {units!r}")
    if cad_size is not None and not (isinstance(cad_size, (int, float)) and math.isfinite(cad_size) and cad_size > 0):
        raise ValueError(f"--cad-size must be a positive length, got {cad_size!r}")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda, got {device!r}")
    checkpoint, mesh_path, out_path = Path(checkpoint), Path(mesh_path), Path(out_path)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist" if not checkpoint.exists()
                                else f"checkpoint {checkpoint} is not a file")
    try:
        readable_format(mesh_path)
    except MeshIOError as exc:
        raise ValueError(str(exc)) from None
    if out_path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"--out {out_path}: unsupported output format {out_path.suffix or '(none)'!r}; "
                         f"use {', '.join(OUTPUT_FORMATS)}")
    _check_writable("--out", out_path)
    if out_path.resolve() == mesh_path.resolve():
        raise ValueError(f"--out {out_path}: is the input mesh; write the prediction to another file")
    if png is not None:
        png = Path(png)
        if png.suffix.lower() != ".png":
            raise ValueError(f"--png {png}: must end with .png")
        _check_writable("--png", png)


# --------------------------------------------------------------------------- checkpoint checks


def _check_checkpoint(payload: dict[str, Any], path: Path) -> tuple[dict[str, int], str]:
    """The field widths (name -> channels) and feature recipe of a checkpoint, or a one-line error."""
    from .prepare import FEATURE_RECIPES, feature_channels

    # load_checkpoint has checked the entries' types, finite weights and fields vs output channels
    fields = payload["fields"]
    if not fields:
        raise ValueError(f"checkpoint {path} names no predicted fields")
    widths = {str(k): int(v) for k, v in fields.items()}
    extra = payload.get("extra") if isinstance(payload.get("extra"), dict) else {}
    recipe = extra.get("features", "none")
    if recipe not in FEATURE_RECIPES:
        raise ValueError(f"checkpoint {path}: unknown feature recipe {recipe!r} (known: {FEATURE_RECIPES})")
    dim = payload["coord_dim"]
    if dim not in (2, 3):
        raise ValueError(f"checkpoint {path}: coord_dim must be 2 or 3, got {dim!r}")
    if payload["in_channels"] != feature_channels(recipe, dim):
        raise ValueError(f"checkpoint {path}: the model takes {payload['in_channels']} input channels but the "
                         f"{recipe!r} recipe gives {feature_channels(recipe, dim)}")
    norm = payload.get("normalizer")
    if not isinstance(norm, dict) or not all(f in (norm.get("mean") or {}) for f in widths):
        raise ValueError(f"checkpoint {path}: the normaliser has no statistics for the fields {list(widths)}")
    return widths, recipe


# --------------------------------------------------------------------------- the run


@dataclass
class PredictResult:
    """What :func:`predict_file` did: paths written, per-input-vertex fields and flag, wall and CPU
    seconds per stage, the summary lines and the warnings."""

    out: Path
    png: Path | None
    fields: dict[str, np.ndarray]
    extrapolation: np.ndarray
    timings: dict[str, float]
    cpu_timings: dict[str, float] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __fspath__(self) -> str:  # usable wherever the output path is (predict_file used to return it)
        return str(self.out)


class _Clock:
    """Wall and CPU seconds per stage (CPU: all threads of this process)."""

    def __init__(self):
        self.t, self.c = time.perf_counter(), time.process_time()
        self.stages: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.stages[name] = self.stages.get(name, 0.0) + now - self.t
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu - self.c
        self.t, self.c = now, cpu


def _release_memory() -> None:
    """Give freed heap memory back to the OS between the big numpy stages and the model.

    glibc keeps freed blocks below its (self-raising) mmap threshold in the heap, so after
    cleaning a 2M-triangle surface the process holds ~0.5 GB it no longer uses; the model's
    encoder then adds its own peak on top. ``malloc_trim`` returns it (no-op elsewhere).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _warn(msgs: list[str], text: str) -> None:
    msgs.append(text)
    warnings.warn(text, PredictWarning, stacklevel=3)


def predict_file(checkpoint: str | Path, mesh_path: str | Path, out_path: str | Path, *, device: str = "cpu",
                 chunk_size: int = 200_000, units: str | None = None, allow_partial: bool = False,
                 png: str | Path | None = None, cad_size: float | None = None, progress: bool = False,
                 verbose: bool = False, conditions: dict[str, float] | None = None) -> PredictResult:
    """Predict the checkpoint's fields on a mesh file and write them on its own vertices and cells.

    Args:
        checkpoint: ``model.pt`` written by ``pyengine demo`` or ``train``.
        mesh_path: any format :func:`pyengine.geometry.load_mesh` reads (STL, OBJ, PLY, OFF, GLB,
            STEP/IGES/BREP, VTU/VTP/VTK, MSH, ..., optionally .gz).
        out_path: .vtu, .vtp, .vtk or .ply; point fields ``<name>_pred`` and ``extrapolation``
            (uint8 bits: 1 prediction outside the training range, 2 local geometry outside it,
            4 vertex in no face, so not seen by the model), plus the input's own data.
        units: length unit of the mesh (mm, cm, m, in) when the file does not declare one
            (STEP/IGES do); default: the checkpoint's.
        allow_partial: predict on the readable part of a truncated/damaged file (with a warning).
        png: preview image path (None: none).
        cad_size: tessellation size for STEP/IGES/BREP (see :func:`pyengine.geometry.cad.read_cad`).
        verbose: print the summary.
        conditions: per-sample scalars (e.g. ``{"u_inf": 40.0}``) of a model trained on a file
            dataset with conditioning inputs (``dataset.kind: files``).

    Warnings (:class:`PredictWarning`, :class:`~pyengine.geometry.MeshWarning`) are one line each.
    Raises ValueError / FileNotFoundError (one line, naming the file) for every refusal.
    """
    from ..data import Normalizer
    from ..geometry.clean import clean_surface, merge_vertices
    from ..geometry.io import load_mesh
    from ..geometry.normals import point_cloud_normals, surface_normals
    from .checkpoint import load_checkpoint, load_model
    from .envelope import TrainingEnvelope, assess
    from .frame import Frame
    from .prepare import NORMAL_RECIPES, SMOOTH_NORMALS_RADIUS, smooth_normals, smooth_normals_at_queries
    from .train import normalize_features

    check_predict_args(checkpoint, mesh_path, out_path, png=png, chunk_size=chunk_size, units=units,
                       cad_size=cad_size, device=device)
    checkpoint, mesh_path, out_path = Path(checkpoint), Path(mesh_path), Path(out_path)
    clock = _Clock()
    notes: list[str] = []
    warn_list: list[str] = []

    payload = load_checkpoint(checkpoint)  # refuses pickled code, NaN weights, fields that miss the channels
    if isinstance(payload.get("extra"), dict) and "files" in payload["extra"]:
        # trained on a file dataset: the new geometry is read and assembled the way the training files were
        from .files_run import predict_files

        out = predict_files(payload, mesh_path, out_path, device=device, chunk_size=chunk_size, conditions=conditions)
        return PredictResult(out=Path(out), png=None, fields={}, extrapolation=np.zeros(0, np.uint8),
                             timings={})
    if conditions:
        raise ValueError("--condition applies only to models trained on a file dataset with conditioning inputs")
    widths, recipe = _check_checkpoint(payload, checkpoint)
    model, _ = load_model(payload, device)
    normalizer = Normalizer.from_state_dict(payload["normalizer"])
    extra = payload.get("extra") if isinstance(payload.get("extra"), dict) else {}
    env = TrainingEnvelope.from_checkpoint(extra)
    clock.lap("checkpoint")

    mesh = load_mesh(mesh_path, allow_partial=allow_partial, cad_size=cad_size)
    clock.lap("load")
    dim = int(payload["coord_dim"])
    pts_all = mesh.points
    if dim == 2:
        z = pts_all[:, 2]
        extent = float(np.ptp(pts_all[:, :2], axis=0).max()) if len(pts_all) > 1 else 0.0
        if np.ptp(z) > 1e-9 * max(extent, 1e-300):
            raise ValueError(f"checkpoint {checkpoint} holds a 2-D model, but {mesh_path} is 3-D (z spans "
                             f"{z.min():.6g} to {z.max():.6g}); predicting would silently drop z")

    # --- model inputs: the cleaned surface (normals) or the distinct points (no features)
    surface = normals_res = None
    query_is_input = input_of_query = None
    if recipe == "smooth_normals" and not mesh.is_surface:
        raise ValueError(f"{mesh_path}: the checkpoint's 'smooth_normals' inputs need a triangle surface, and this "
                         f"file has no faces")
    if recipe in NORMAL_RECIPES and mesh.is_surface:
        surface = clean_surface(pts_all, mesh.faces)
        if len(surface.faces) == 0:
            raise ValueError(f"{mesh_path}: every face is degenerate (zero area); there is no surface to predict on")
        notes.append(surface.summary())
        clock.lap("clean")
        normals_res = surface_normals(surface)
        clock.lap("normals")
        vertex_map = surface.vertex_map
        query_pts = surface.points
        query_is_input = surface.used
        input_idx = np.flatnonzero(surface.used)
        input_of_query = np.cumsum(surface.used) - 1
        in_pts = surface.points[input_idx]
        in_normals = normals_res.normals[input_idx]
        notes.append(normals_res.summary())
    else:
        first, vertex_map = merge_vertices(pts_all)
        query_pts = pts_all[first]
        query_is_input = np.ones(len(query_pts), dtype=bool)
        input_of_query = np.arange(len(query_pts))
        in_pts = query_pts
        in_normals = None
        clock.lap("clean")
        if recipe == "normals":
            if len(in_pts) < 3:
                raise ValueError(f"{mesh_path}: a point cloud of {len(in_pts)} points is too small for normals")
            in_normals = point_cloud_normals(in_pts)
            _warn(warn_list, f"{mesh_path}: no faces, so normals come from local PCA of the points and point "
                                 f"away from the centroid; check the preview")
            notes.append("normals: point cloud, local PCA")
            clock.lap("normals")
    if len(in_pts) == 0:
        raise ValueError(f"{mesh_path}: no points to predict on")

    # --- units (informational: the unit-box frame is scale-free)
    ckpt_units = (env.units if env is not None else None) or extra.get("units")
    mesh_units = mesh.units or units or ckpt_units
    if mesh.units and units and units != mesh.units:
        _warn(warn_list, f"{mesh_path}: --units {units} ignored: the file declares its unit (read as {mesh.units})")
    box = float(np.ptp(in_pts, axis=0).max()) if len(in_pts) > 1 else 0.0
    size_line = f"{box:.4g} {mesh_units or '(unit unknown)'} (largest box side)"
    if mesh_units in UNITS and ckpt_units in UNITS and mesh_units != ckpt_units:
        size_line += f" = {box * UNITS[mesh_units] / UNITS[ckpt_units]:.4g} {ckpt_units}"
    size_line += "; the unit-box frame makes predictions independent of size and units"

    # --- the frame, features and the envelope check
    dtype = next(model.parameters()).dtype
    mesh.__dict__.pop("_triangulation", None)  # the surface triangles live on in `surface`
    p64 = torch.as_tensor(in_pts[:, :dim], dtype=torch.float64)
    try:
        frame = Frame.of(p64)
    except ValueError:
        raise ValueError(f"{mesh_path}: all {len(in_pts):,} points coincide; there is no geometry") from None
    pu = frame.forward(p64)
    all_inputs = bool(query_is_input.all())
    qu = None if all_inputs else frame.forward(torch.as_tensor(query_pts[:, :dim], dtype=torch.float64))
    feats = None
    q_feats = None
    if recipe == "smooth_normals":
        if not all_inputs:  # queries off the inputs (vertices no face uses): the function at them, as in training
            q_normals = smooth_normals_at_queries(surface.points, surface.faces, in_pts, in_normals, query_pts,
                                                  frame.scale)
            q_feats = normalize_features(normalizer, torch.as_tensor(q_normals, dtype=torch.float64)).to(dtype)
        in_normals = smooth_normals(surface.points, surface.faces, in_pts, frame.scale, fallback=in_normals)
        notes.append(f"normals: then windowed over {SMOOTH_NORMALS_RADIUS:g} frame units (smooth_normals inputs)")
        clock.lap("smooth normals")
    if recipe in NORMAL_RECIPES:
        feats = normalize_features(normalizer, torch.as_tensor(in_normals, dtype=torch.float64)).to(dtype)
    dev = torch.device(device)
    stats: dict[str, int] = {}
    _release_memory()
    density = extra.get("point_density")
    if surface is not None and isinstance(density, list) and len(density) == 2 and min(density) > 0:
        # points per unit area in the frame against the training range (prepare_sample's weights)
        tri = surface.points[surface.faces]
        area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum()
        ours = len(in_pts) / max(area / frame.scale ** 2, 1e-300)
        lo, hi = float(min(density)), float(max(density))
        if ours < lo / 2 or ours > 2 * hi:
            ratio = ours / lo if ours < lo else ours / hi
            quad = getattr(getattr(model, "config", None), "quadrature", False)
            notes.append(f"point density: {ratio:.3g}x the {'lowest' if ours < lo else 'highest'} of the training "
                         f"meshes ({ours:.4g} points per unit area in the frame; training {lo:.4g} to {hi:.4g}); "
                         + ("the model integrates with quadrature weights, built to tolerate this"
                            if quad else "this model averages over points (quadrature off), so its predictions "
                            "may depend on the resolution"))
    weights = None
    if getattr(getattr(model, "config", None), "quadrature", False):
        # quadrature weights of the inputs in the frame: vertex areas of the cleaned surface, else density
        from ..geometry.quadrature import density_weights, vertex_areas

        if surface is not None:
            w = np.asarray(vertex_areas(surface.points[:, :3], surface.faces))[input_idx] / frame.scale ** 2
            w = np.where(w > 0, w, np.median(w[w > 0]) if (w > 0).any() else 1.0)
        else:
            w = np.asarray(density_weights(pu.numpy()))
        weights = torch.as_tensor(w, dtype=dtype, device=dev)
        notes.append("quadrature: " + ("vertex areas" if surface is not None else "k-nearest-neighbour density"))
    pred = predict_chunked(model, pu.to(dev, dtype), None if feats is None else feats.to(dev),
                           None if qu is None else qu.to(dev, dtype), chunk_size=chunk_size, progress=progress,
                           stats=stats, weights=weights,
                           query_features=None if q_feats is None else q_feats.to(dev)).float().cpu()
    clock.lap("predict")
    fields, start = {}, 0
    for name, width in widths.items():
        block = pred[:, start:start + width]
        fields[name] = normalizer.denormalize_field(name, block[:, 0] if width == 1 else block)
        start += width
    bad = ~torch.stack([f.reshape(len(pred), -1).isfinite().all(1) for f in fields.values()]).all(0)
    if bool(bad.any()):
        raise ValueError(f"{mesh_path}: the model predicted NaN or Inf at {int(bad.sum()):,} of {len(bad):,} vertices; "
                         f"nothing was written")
    a = assess(env, pu.to(torch.float64), None if in_normals is None else torch.as_tensor(in_normals),
               fields, query_is_input, input_of_query)
    for w in a.warnings:
        _warn(warn_list, f"{mesh_path}: {w}")
    clock.lap("check")

    # --- write on the input's own vertices
    out_fields = {name: v.numpy()[vertex_map] for name, v in fields.items()}
    flag = a.flag[vertex_map]
    from ..geometry import save_mesh

    save_mesh(mesh, out_path, point_data={**{f"{k}_pred": v for k, v in out_fields.items()}, "extrapolation": flag})
    clock.lap("write")
    png_path = None
    if png is not None:
        png_path = Path(png)
        first_name = next(iter(fields))
        v = fields[first_name].numpy()
        shown = v if v.ndim == 1 else np.linalg.norm(v, axis=1)
        label = first_name if v.ndim == 1 else f"|{first_name}|"
        from .plots import render_preview

        title = (f"{mesh_path.name}: {label} predicted; {a.counts['any']:,} of {len(a.flag):,} vertices flagged as "
                 f"extrapolation")
        if surface is not None:
            render_preview(png_path, surface.points, surface.faces, shown, field=f"{label} (predicted)",
                           normals=normals_res.normals, cull=surface.closed[surface.component], title=title)
        elif in_normals is not None or len(query_pts) >= 2:
            nrm = in_normals if in_normals is not None else np.tile([0.0, 0.0, 1.0], (len(query_pts), 1))
            render_preview(png_path, query_pts, np.zeros((0, 3), np.int64), shown, field=f"{label} (predicted)",
                           normals=nrm, title=title + " (point cloud)")
        else:
            png_path = None
        clock.lap("preview")

    n_cells = sum(len(c) for c in mesh.cells.values())
    kinds = ", ".join(f"{k} {len(c):,}" for k, c in mesh.cells.items())
    lines = [f"pyengine predict: {mesh_path} -> {out_path}",
             f"  mesh           {mesh.num_points:,} vertices, {n_cells:,} cells" + (f" ({kinds})" if kinds else "")]
    for note in notes:
        head, _, rest = note.partition(": ")
        lines.append(f"  {head:<14} {rest}" if rest else f"  {note}")
    lines.append(f"  model          {payload['family']} on {len(in_pts):,} points, {stats.get('chunks', 1)} chunk"
                 f"{'s' if stats.get('chunks', 1) != 1 else ''} of <= {chunk_size:,} queries, {device}")
    total = sum(clock.stages.values())
    lines.append("  time           " + ", ".join(f"{k} {v:.1f} s" for k, v in clock.stages.items())
                 + f"; total {total:.1f} s")
    for name, v in out_fields.items():
        rng = env.fields.get(name) if env is not None else None
        tr = f" (training {min(r[0] for r in rng):.4g} .. {max(r[1] for r in rng):.4g})" if rng else ""
        lines.append(f"  {name + '_pred':<14} {float(v.min()):.4g} .. {float(v.max()):.4g}{tr}")
    c = a.counts
    n = len(a.flag)
    if env is None:
        lines.append(f"  extrapolation  not checked: the checkpoint stores no training envelope "
                     f"({c['off_surface']:,} vertices in no face flagged)")
    else:
        kinds_f = [f"{c['geometry']:,} local geometry", f"{c['field']:,} field range", f"{c['off_surface']:,} in no face"]
        lines.append(f"  extrapolation  {c['any']:,} of {n:,} distinct vertices ({c['any'] / max(n, 1):.1%}) flagged: "
                     + ", ".join(kinds_f) + " (point field 'extrapolation')")
    lines.append(f"  size           {size_line}")
    lines.append(f"  wrote          {out_path}" + (f", {png_path}" if png_path else ""))
    if verbose:
        print("\n".join(lines))
    return PredictResult(out=out_path, png=png_path, fields=out_fields, extrapolation=flag,
                         timings=dict(clock.stages), cpu_timings=dict(clock.cpu), summary=lines, warnings=warn_list)
