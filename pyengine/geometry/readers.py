"""Parsers for the plain surface formats (STL, OBJ, OFF) that refuse to read part of a file silently.

trimesh reads these formats, but it triangulates quads and polygons, drops
vertices no face uses (so the vertex order of the file is lost), and reads
truncated files as smaller meshes: a binary STL cut in half loads as half a
body, a cut OBJ face is dropped. These parsers keep the file's vertices in
order, keep polygons as they are, and report every sign of truncation as a
*problem* (a sentence with counts) that :func:`pyengine.geometry.load_mesh`
refuses unless partial files are allowed. Malformed content that cannot be the
result of a cut raises :class:`FormatError`.

Cells come back as ``{"triangle": (n, 3), "quad": (n, 4), "polygon5": (n, 5), ...}``:
polygons are grouped by vertex count, in file order within each group.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FormatError", "RawMesh", "polygon_blocks", "read_obj", "read_off", "read_stl"]


class FormatError(ValueError):
    """The bytes are not a valid file of the format (the loader adds the path)."""


@dataclass
class RawMesh:
    """What a parser read: points, cells by type, data, and the problems that make it partial."""

    points: np.ndarray
    cells: dict[str, np.ndarray] = field(default_factory=dict)
    point_data: dict[str, np.ndarray] = field(default_factory=dict)
    cell_data: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def cell_type(n: int) -> str:
    """meshio-style cell type of a polygon with ``n`` vertices."""
    return {3: "triangle", 4: "quad"}.get(n, f"polygon{n}")


def polygon_blocks(sizes: np.ndarray, flat: np.ndarray) -> dict[str, np.ndarray]:
    """Group polygons given as per-face sizes and concatenated indices into blocks by size."""
    sizes = np.asarray(sizes, dtype=np.int64)
    flat = np.asarray(flat, dtype=np.int64)
    blocks: dict[str, np.ndarray] = {}
    if len(sizes) == 0:
        return blocks
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    for n in np.unique(sizes):
        rows = starts[sizes == n]
        blocks[cell_type(int(n))] = flat[rows[:, None] + np.arange(n)]
    return blocks


# --------------------------------------------------------------------------- STL

_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def _merge_exact(tri_vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """STL stores 3 vertices per facet: share exact copies, numbered by first appearance."""
    from .clean import group_rows

    v = np.ascontiguousarray(tri_vertices.reshape(-1, 3))
    v = v + v.dtype.type(0)  # -0.0 and 0.0 are the same coordinate
    first, inverse = group_rows(v)
    return v[first].astype(np.float64), inverse.reshape(-1, 3)


def _looks_ascii_stl(data: bytes) -> bool:
    head = data[:1024].lstrip()
    return head[:5].lower() == b"solid" and b"\x00" not in data[:1024] and (
        re.search(rb"\bfacet\b", data[:4096], re.IGNORECASE) is not None or b"endsolid" in data.lower()[-1024:]
        or len(data) < 200)


def read_stl(data: bytes) -> RawMesh:
    """Binary or ASCII STL. Identical vertex copies are shared (first appearance order)."""
    n_bin = int(np.frombuffer(data, "<u4", 1, 80)[0]) if len(data) >= 84 else -1
    if n_bin >= 0 and len(data) == 84 + 50 * n_bin:
        return _stl_binary(data, n_bin)
    if _looks_ascii_stl(data):
        return _stl_ascii(data)
    if len(data) < 84:
        raise FormatError(f"not an STL file: {len(data)} bytes, shorter than a binary STL header (84 bytes) "
                          f"and not ASCII STL")
    return _stl_binary(data, n_bin)


def _stl_binary(data: bytes, n: int) -> RawMesh:
    expected = 84 + 50 * n
    problems, notes = [], []
    have = (len(data) - 84) // 50
    if len(data) < expected:
        problems.append(f"truncated binary STL: the header promises {n:,} triangles but the file holds {have:,} "
                        f"({len(data):,} of {expected:,} bytes)")
    elif len(data) > expected:
        if n == 0 and (len(data) - 84) % 50 == 0:
            n = have  # some writers leave the count at zero
            notes.append(f"binary STL header gives 0 triangles; read the {n:,} the file holds")
        else:
            notes.append(f"{len(data) - expected:,} bytes after the last of {n:,} triangles ignored")
    count = min(n, have)
    rec = np.frombuffer(data, _STL_RECORD, count, 84)
    if count == 0:
        raise FormatError("binary STL holds no triangles" if not problems else problems[0])
    points, faces = _merge_exact(rec["v"])
    return RawMesh(points, {"triangle": faces}, problems=problems, notes=notes)


_FLOAT = rb"(\S+)"
_FACET = re.compile(
    rb"facet\s+normal\s+\S+\s+\S+\s+\S+\s+outer\s+loop\s+"
    + rb"\s+".join([rb"vertex\s+" + rb"\s+".join([_FLOAT] * 3)] * 3)
    + rb"\s+endloop\s+endfacet", re.IGNORECASE)
_FACET_START = re.compile(rb"(?<![A-Za-z])facet\b", re.IGNORECASE)


def _stl_ascii(data: bytes) -> RawMesh:
    complete = list(_FACET.finditer(data))
    starts = [m.start() for m in _FACET_START.finditer(data)]
    problems = []
    if len(starts) != len(complete):
        ends = {m.start() for m in complete}
        broken = [i for i, s in enumerate(starts) if s not in ends]
        first_bad = broken[0]
        last_end = complete[-1].end() if complete else 0
        if first_bad == len(starts) - 1 and starts[first_bad] >= last_end and \
                re.search(rb"endsolid", data[starts[first_bad]:], re.IGNORECASE) is None:
            problems.append(f"truncated ASCII STL: facet {first_bad + 1:,} is cut off after {len(complete):,} "
                            f"complete facets")
        else:
            raise FormatError(f"malformed ASCII STL: facet {first_bad + 1:,} of {len(starts):,} is not "
                              f"'facet normal nx ny nz outer loop' + 3 vertices + 'endloop endfacet'")
    elif not complete:
        raise FormatError("ASCII STL holds no facets")
    elif re.search(rb"endsolid", data[complete[-1].end():], re.IGNORECASE) is None:
        problems.append(f"truncated ASCII STL: no 'endsolid' after the last of {len(complete):,} facets")
    if not complete:
        raise FormatError(problems[0] if problems else "ASCII STL holds no facets")
    toks = np.array([g for m in complete for g in m.groups()])
    try:
        v = toks.astype(np.float64).reshape(-1, 3, 3)
    except ValueError:
        bad = next(t for t in toks if not _is_float(t))
        raise FormatError(f"malformed ASCII STL: vertex coordinate {bad[:20]!r} is not a number") from None
    points, faces = _merge_exact(v)
    return RawMesh(points, {"triangle": faces}, problems=problems)


def _is_float(t: bytes) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------- OBJ


def _unterminated(data: bytes, keywords: tuple[bytes, ...]) -> bytes | None:
    """The last line, if the file does not end with a newline and that line is a data record."""
    if not data or data.endswith((b"\n", b"\r")):
        return None
    last = data[data.rfind(b"\n") + 1:].strip()
    word = last.split(None, 1)[0] if last else b""
    return last if word in keywords else None


def read_obj(data: bytes) -> RawMesh:
    """Wavefront OBJ: ``v`` records (extra values such as colours ignored) and ``f`` polygons
    (``i``, ``i/t``, ``i//n``, ``i/t/n``; negative indices count back from the last vertex).
    Every other record (vt, vn, l, g, o, s, usemtl, mtllib, comments) is skipped."""
    problems = []
    cut = _unterminated(data, (b"v", b"f", b"vt", b"vn", b"l", b"p"))
    if cut is not None:
        problems.append(f"truncated OBJ: the last line {cut[:40].decode('latin-1')!r} is cut off "
                        f"(no newline at the end of the file)")
        data = data[:data.rfind(b"\n") + 1]
    lines = data.splitlines()
    vs, fs, f_nv = [], [], []
    nv = 0
    for ln, line in enumerate(lines, 1):
        if line[:2] == b"v " or line[:2] == b"v\t":
            vs.append(line[2:])
            nv += 1
        elif line[:2] == b"f " or line[:2] == b"f\t":
            fs.append(line[2:])
            f_nv.append(nv)
    if not vs:
        raise FormatError("OBJ holds no vertices ('v' records)")
    points = _obj_vertices(vs)
    sizes, flat, bad = _obj_faces(fs, np.asarray(f_nv, dtype=np.int64), len(points))
    cells = polygon_blocks(sizes, flat)
    if bad:
        problems.append(f"{bad:,} of {len(fs):,} faces index vertices the file does not have "
                        f"(it has {len(points):,} vertices)")
    return RawMesh(points, cells, problems=problems)


def _obj_vertices(vs: list[bytes]) -> np.ndarray:
    counts = np.fromiter((len(v.split()) for v in vs), dtype=np.int64, count=len(vs))
    short = np.flatnonzero(counts < 3)
    if len(short):
        raise FormatError(f"malformed OBJ: vertex {short[0] + 1:,} has {counts[short[0]]} coordinates, not 3")
    try:
        if (counts == counts[0]).all():
            arr = np.array(b" ".join(vs).split(), dtype=np.float64).reshape(len(vs), int(counts[0]))[:, :3]
        else:
            arr = np.array([v.split()[:3] for v in vs], dtype=np.float64)
    except ValueError:
        raise FormatError("malformed OBJ: a vertex coordinate is not a number") from None
    return arr


def _obj_faces(fs: list[bytes], f_nv: np.ndarray, nv: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(sizes, flat 0-based indices, number of faces that index missing vertices); drops those faces."""
    if not fs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    toks = [f.split() for f in fs]
    sizes = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
    small = np.flatnonzero(sizes < 3)
    if len(small):
        raise FormatError(f"malformed OBJ: face {small[0] + 1:,} has {sizes[small[0]]} vertices, fewer than 3")
    flat_tok = b" ".join(t.split(b"/", 1)[0] for f in toks for t in f).split()
    if len(flat_tok) != int(sizes.sum()):
        raise FormatError("malformed OBJ: a face has an empty vertex index")
    try:
        idx = np.array(flat_tok, dtype=np.int64)
    except (ValueError, OverflowError):
        raise FormatError("malformed OBJ: a face vertex index is not an integer") from None
    owner = np.repeat(np.arange(len(sizes)), sizes)
    if (idx == 0).any():
        raise FormatError("malformed OBJ: face vertex index 0 (OBJ indices start at 1)")
    # negative: relative to the vertices read so far
    idx = np.where(idx < 0, f_nv[owner] + idx, idx - 1)
    out = (idx < 0) | (idx >= nv)
    bad_face = np.zeros(len(sizes), dtype=bool)
    bad_face[owner[out]] = True
    if bad_face.any():
        keep = ~bad_face[owner]
        return sizes[~bad_face], idx[keep], int(bad_face.sum())
    return sizes, idx, 0


# --------------------------------------------------------------------------- OFF


def read_off(data: bytes) -> RawMesh:
    """OFF (also COFF/NOFF/CNOFF: per-vertex extras ignored): counts, vertices, then polygons
    ``k i1 .. ik`` (per-face colours after the indices ignored)."""
    text_lines = [ln.split(b"#", 1)[0].strip() for ln in data.splitlines()]
    lines = [ln for ln in text_lines if ln]
    if not lines or not re.fullmatch(rb"(ST)?C?N?4?OFF.*", lines[0].split()[0] if lines[0] else b""):
        raise FormatError("not an OFF file: it does not start with 'OFF'")
    head = lines[0].split()[1:]
    rest = lines[1:]
    if len(head) < 2:
        if not rest:
            raise FormatError("OFF header has no vertex and face counts")
        head, rest = rest[0].split(), rest[1:]
    try:
        nv, nf = int(head[0]), int(head[1])
    except (ValueError, IndexError):
        raise FormatError("OFF header counts are not integers") from None
    if nv < 0 or nf < 0:
        raise FormatError(f"OFF header counts must not be negative, got {nv} vertices and {nf} faces")
    problems = []
    cut = not data.endswith((b"\n", b"\r"))
    vlines = rest[:nv]
    if len(vlines) < nv or (cut and nf == 0 and len(rest) == nv):
        problems.append(f"truncated OFF: the header promises {nv:,} vertices but the file holds {len(vlines):,}")
    counts = np.fromiter((len(v.split()) for v in vlines), dtype=np.int64, count=len(vlines))
    if len(counts) and (counts < 3).any():
        i = int(np.flatnonzero(counts < 3)[0])
        if i == len(vlines) - 1 and cut:
            vlines = vlines[:-1]
            problems.append(f"truncated OFF: vertex {i + 1:,} is cut off")
        else:
            raise FormatError(f"malformed OFF: vertex {i + 1:,} has fewer than 3 coordinates")
    try:
        points = np.array([v.split()[:3] for v in vlines], dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise FormatError("malformed OFF: a vertex coordinate is not a number") from None
    if len(points) == 0:
        raise FormatError(problems[0] if problems else "OFF holds no vertices")
    flines = rest[nv:nv + nf] if len(vlines) == nv else []
    if len(vlines) == nv and len(flines) < nf:
        problems.append(f"truncated OFF: the header promises {nf:,} faces but the file holds {len(flines):,}")
    sizes, flat = [], []
    for j, ln in enumerate(flines):
        t = ln.split()
        try:
            k = int(t[0])
            ids = [int(x) for x in t[1:1 + k]]
        except ValueError:
            raise FormatError(f"malformed OFF: face {j + 1:,} is not 'k i1 .. ik'") from None
        if k < 3 or len(ids) < k:
            if j == len(flines) - 1 and cut:
                problems.append(f"truncated OFF: face {j + 1:,} is cut off")
                break
            raise FormatError(f"malformed OFF: face {j + 1:,} has {len(ids)} of {k} vertex indices (need >= 3)")
        sizes.append(k)
        flat += ids
    sizes_a, flat_a = np.asarray(sizes, np.int64), np.asarray(flat, np.int64)
    owner = np.repeat(np.arange(len(sizes_a)), sizes_a)
    out = (flat_a < 0) | (flat_a >= len(points))
    if out.any():
        bad = np.zeros(len(sizes_a), bool)
        bad[owner[out]] = True
        problems.append(f"{int(bad.sum()):,} of {len(sizes_a):,} faces index vertices the file does not have "
                        f"(it has {len(points):,} vertices)")
        flat_a, sizes_a = flat_a[~bad[owner]], sizes_a[~bad]
    return RawMesh(points, polygon_blocks(sizes_a, flat_a), problems=problems)


def write_off(path: str, points: np.ndarray, cells: dict[str, np.ndarray]) -> None:
    """OFF with every polygon block (meshio's OFF writer keeps triangles only)."""
    n_faces = sum(len(c) for c in cells.values())
    with open(path, "w") as fh:
        fh.write(f"OFF\n{len(points)} {n_faces} 0\n")
        np.savetxt(fh, np.asarray(points, dtype=np.float64), fmt="%.17g")
        for c in cells.values():
            c = np.asarray(c, dtype=np.int64)
            np.savetxt(fh, np.c_[np.full(len(c), c.shape[1]), c], fmt="%d")
