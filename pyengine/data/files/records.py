"""What every file reader returns: points, cells, and point/cell data with their file's name.

A :class:`MeshRecord` differs from :class:`pyengine.geometry.Mesh` in one way that
matters for datasets: its ``cell_data`` arrays are flat, one row per cell in the
record's cell order (the blocks of ``cells`` concatenated in dict order), so a
field is "point data" or "cell data" by its length alone, as a CFD user thinks of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DataFileError", "MeshRecord", "listing"]


class DataFileError(ValueError):
    """A data file is missing, unreadable, or lacks what the dataset asks for; the message
    names the file (and the field) and lists what is there."""


def listing(record: "MeshRecord") -> str:
    """'point data [a, b]; cell data [c]' for error messages."""
    return (f"point data {sorted(record.point_data) or '[]'}; cell data {sorted(record.cell_data) or '[]'} "
            f"({record.num_points} points, {record.num_cells} cells)")


@dataclass
class MeshRecord:
    """One file's contents.

    Attributes:
        source: the file (or case directory) it came from.
        points: (N, 3) float64 coordinates (2-D files padded with z = 0).
        cells: meshio cell type -> (n, k) int64 connectivity into ``points``.
        point_data: name -> (N,) or (N, k) array.
        cell_data: name -> (C,) or (C, k) array, rows in cell order.
        centers: (C, 3) cell centres when the connectivity cannot give them (polyhedra);
            None: computed from ``cells`` on demand (vertex means).
    """

    source: str
    points: np.ndarray
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    cell_data: dict[str, np.ndarray] = field(default_factory=dict)
    centers: np.ndarray | None = None

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] not in (2, 3):
            raise DataFileError(f"{self.source}: points must be (N, 2) or (N, 3), got shape {pts.shape}")
        if pts.shape[1] == 2:
            pts = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
        self.points = pts
        self.cells = {k: np.asarray(v, dtype=np.int64) for k, v in self.cells.items() if len(v)}
        n, c = self.num_points, self.num_cells
        for name, v in self.point_data.items():
            if len(v) != n:
                raise DataFileError(f"{self.source}: point data {name!r} has {len(v)} rows, not {n}")
        for name, v in self.cell_data.items():
            if len(v) != c:
                raise DataFileError(f"{self.source}: cell data {name!r} has {len(v)} rows, not {c}")

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_cells(self) -> int:
        if self.centers is not None:
            return int(len(self.centers))
        return int(sum(len(v) for v in self.cells.values()))

    def cell_centers(self) -> np.ndarray:
        """(C, 3) cell centres (vertex means of each cell, or the reader's centres)."""
        if self.centers is not None:
            return self.centers
        if not self.cells:
            return np.zeros((0, 3))
        return np.concatenate([self.points[c].mean(axis=1) for c in self.cells.values()])
