"""From a folder, a glob or a manifest to a list of :class:`SampleSpec` (what to read per sample).

Manifest (CSV with a header row, or JSON: a list of objects, or ``{"samples": [...]}``):

=============  ==================================================================
``geometry``   required: the geometry/result file or OpenFOAM case directory
``fields``     optional: sidecar field files, ``;``-separated in CSV (a list in
               JSON); ``name=file.npy`` names the array, else the file stem does
``surface``    optional: the surface file of a volume sample
``split``      optional: ``train``, ``test`` (or ``val``, counted as test)
``name``       optional: sample name (default: the geometry path)
anything else  per-sample scalars (numbers), usable as conditioning inputs
=============  ==================================================================

Folders: each geometry file is a sample, with sidecars ``<stem>.npy``, ``<stem>.npz`` or
``<stem>.<field>.npy`` beside it; each subfolder holding one geometry file (its ``.npy``/
``.npz`` files are its fields) or an OpenFOAM case is a sample too. Samples are sorted by name.
"""

from __future__ import annotations

import csv
import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .records import DataFileError

__all__ = ["GEOMETRY_SUFFIXES", "SampleSpec", "discover"]

GEOMETRY_SUFFIXES = (".vtp", ".vtu", ".vtk", ".msh", ".xdmf", ".xmf", ".ply", ".stl", ".obj", ".off")
_SPLITS = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}


@dataclass
class SampleSpec:
    """One sample: the files to read and its per-sample scalars."""

    name: str
    geometry: Path
    field_files: list[tuple[str | None, Path]] = field(default_factory=list)
    surface: Path | None = None
    split: str | None = None
    scalars: dict[str, float] = field(default_factory=dict)


def _is_case(p: Path) -> bool:
    return p.is_dir() and (p / "system" / "controlDict").is_file() and (p / "constant" / "polyMesh").is_dir()


def _sidecars(geometry: Path) -> list[tuple[str | None, Path]]:
    out = []
    for p in sorted(geometry.parent.glob(f"{geometry.stem}.*")):
        if p.suffix.lower() in (".npy", ".npz") and p != geometry:
            rest = p.name[len(geometry.stem) + 1:-len(p.suffix)]  # "<stem>.<field>.npy" -> field
            out.append((rest or None, p))
    return out


def _from_file(p: Path) -> SampleSpec:
    return SampleSpec(str(p), p, _sidecars(p))


def _from_subfolder(d: Path) -> SampleSpec | None:
    if _is_case(d):
        return SampleSpec(str(d), d)
    geoms = [p for p in sorted(d.iterdir()) if p.is_file() and p.suffix.lower() in GEOMETRY_SUFFIXES]
    if len(geoms) != 1:
        return None
    arrays = [(None, p) for p in sorted(d.iterdir()) if p.suffix.lower() in (".npy", ".npz")]
    return SampleSpec(str(d), geoms[0], arrays)


def _folder(root: Path) -> list[SampleSpec]:
    if _is_case(root):
        return [SampleSpec(str(root), root)]
    specs = []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in GEOMETRY_SUFFIXES:
            specs.append(_from_file(p))
        elif p.is_dir():
            s = _from_subfolder(p)
            if s is not None:
                specs.append(s)
    return specs


def _number(value, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DataFileError(f"{where}: {value!r} is not a number (extra manifest columns are per-sample scalars)") \
            from None
    if not math.isfinite(v):
        raise DataFileError(f"{where}: {value!r} is not finite")
    return v


def _rows(path: Path) -> list[dict]:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                return [{k.strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items() if k}
                        for row in csv.DictReader(f)]
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as e:
        raise DataFileError(f"{path}: not a readable manifest ({e})") from None
    if isinstance(data, dict) and "samples" in data:
        data = data["samples"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataFileError(f"{path}: a JSON manifest must be a list of objects (or {{'samples': [...]}})")
    return data


def _manifest(path: Path) -> list[SampleSpec]:
    base = path.parent
    rows = _rows(path)
    specs = []
    for i, row in enumerate(rows):
        where = f"{path}: row {i + 1}"
        if not row.get("geometry"):
            raise DataFileError(f"{where}: no 'geometry' (columns: {sorted(row)})")
        geometry = base / str(row["geometry"])
        files = row.get("fields") or []
        if isinstance(files, str):
            files = [f for f in (x.strip() for x in files.split(";")) if f]
        field_files = []
        for f in files:
            name, _, file = str(f).rpartition("=")
            field_files.append((name or None, base / file))
        split = row.get("split") or None
        if split is not None:
            if str(split).lower() not in _SPLITS:
                raise DataFileError(f"{where}: split {split!r} is not one of {sorted(_SPLITS)}")
            split = _SPLITS[str(split).lower()]
        surface = base / str(row["surface"]) if row.get("surface") else None
        scalars = {k: _number(v, f"{where}, column {k!r}") for k, v in row.items()
                   if k not in ("geometry", "fields", "split", "surface", "name") and v not in (None, "")}
        name = row.get("name") or (row["geometry"] if not Path(str(row["geometry"])).is_absolute()
                                   else "/".join(Path(str(row["geometry"])).parts[-2:]))
        specs.append(SampleSpec(str(name), geometry, field_files, surface, split, scalars))
    return specs


def discover(path: str | Path, base: str | Path | None = None) -> list[SampleSpec]:
    """The samples that ``path`` (folder, glob or manifest) describes, in order.

    ``base``: directory a relative ``path`` is resolved against (the YAML file's folder).
    Raises DataFileError when nothing is found, naming the path.
    """
    raw = str(path)
    p = Path(raw)
    if base is not None and not p.is_absolute():
        p = Path(base) / p
    if any(ch in raw for ch in "*?["):
        matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True))
        specs = [SampleSpec(str(m), m) if _is_case(m) else _from_file(m) for m in matches
                 if _is_case(m) or (m.is_file() and m.suffix.lower() in GEOMETRY_SUFFIXES)]
        if not specs:
            raise DataFileError(f"{p}: the glob matches no geometry file ({', '.join(GEOMETRY_SUFFIXES)}) "
                                "or OpenFOAM case")
        return specs
    if not p.exists():
        raise DataFileError(f"{p}: no such folder or manifest")
    if p.is_file():
        if p.suffix.lower() not in (".csv", ".json"):
            raise DataFileError(f"{p}: a dataset path must be a folder, a glob, or a .csv/.json manifest")
        specs = _manifest(p)
    else:
        specs = _folder(p)
    if not specs:
        raise DataFileError(f"{p}: holds no samples (geometry files {', '.join(GEOMETRY_SUFFIXES)}, "
                            "subfolders with one, or OpenFOAM cases)")
    return specs
