"""Prediction meshes for ParaView: the input connectivity with true, predicted and error fields."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

__all__ = ["write_prediction_mesh"]


def write_prediction_mesh(path: str | Path, points: Tensor, cells: dict[str, Tensor],
                          true: dict[str, Tensor] | None, pred: dict[str, Tensor]) -> Path:
    """Write ``points`` + ``cells`` with point fields ``<name>_pred`` (and ``<name>_true``, ``<name>_error``).

    Args:
        path: output file; any format :func:`pyengine.geometry.save_mesh` writes with data (.vtu, .vtk, .ply, ...).
        points: (N, 3) coordinates in the original (physical) frame.
        cells: cell type -> (n_cells, k) connectivity.
        true: name -> (N,) or (N, k) reference values, or None for pure predictions.
        pred: name -> predicted values of the same shapes.
    """
    from ..geometry import Mesh, save_mesh

    data = {f"{k}_pred": v.detach().cpu().numpy() for k, v in pred.items()}
    for k, v in (true or {}).items():
        data[f"{k}_true"] = v.detach().cpu().numpy()
        if k in pred:
            data[f"{k}_error"] = (pred[k].detach().cpu() - v.detach().cpu()).numpy()
    pts = points.detach().cpu().double()
    if pts.shape[1] == 2:
        pts = torch.cat([pts, torch.zeros(pts.shape[0], 1, dtype=pts.dtype)], dim=1)
    mesh = Mesh(points=pts.numpy(), cells={k: v.detach().cpu().numpy() for k, v in cells.items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_mesh(mesh, path, point_data=data)
