"""PLY (ASCII and binary, either byte order) read so that nothing is lost or guessed.

trimesh reads PLY quickly but triangulates polygons and loads a file whose
header promises 300 vertices and holds 2 as a 2-point cloud; meshio reads the
data but fails on many real producers. This reader checks every element count
in the header against what the file holds (a shortfall is a *problem*: the
file is partial), keeps polygons as polygons, and keeps every vertex property
in its own dtype (colours stay uint8, ids stay integers).
"""

from __future__ import annotations

import struct

import numpy as np

from .readers import FormatError, RawMesh, cell_type, polygon_blocks

__all__ = ["read_ply"]

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8", "int64": "i8", "uint64": "u8",
}
_FACE_LISTS = ("vertex_indices", "vertex_index")
_SKIP_POINT_DATA = ("x", "y", "z", "nx", "ny", "nz")


class _Element:
    def __init__(self, name: str, count: int):
        self.name, self.count = name, count
        self.props: list[tuple[str, str, str | None]] = []  # (name, value type, list count type or None)

    @property
    def fixed(self) -> bool:
        return all(c is None for _, _, c in self.props)


def _parse_header(data: bytes) -> tuple[str, list[_Element], int]:
    if not data.startswith(b"ply"):
        raise FormatError("not a PLY file: it does not start with 'ply'")
    end = data.find(b"end_header")
    if end < 0:
        raise FormatError("PLY header has no 'end_header' line")
    body = end + len(b"end_header")
    if data[body:body + 2] == b"\r\n":
        body += 2
    elif data[body:body + 1] in (b"\n", b"\r"):
        body += 1
    else:
        raise FormatError("PLY 'end_header' is not followed by a newline")
    fmt, elements = None, []
    for raw in data[:end].decode("latin-1").splitlines()[1:]:
        words = raw.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                count = int(words[2])
                if count < 0:
                    raise ValueError
                elements.append(_Element(words[1], count))
            elif words[0] == "property":
                if not elements:
                    raise FormatError("PLY header has a property before any element")
                if words[1] == "list":
                    elements[-1].props.append((words[4], _dtype(words[3]), _dtype(words[2])))
                else:
                    elements[-1].props.append((words[2], _dtype(words[1]), None))
            else:
                raise FormatError(f"PLY header line {raw[:40]!r} is not format/element/property/comment")
        except (IndexError, ValueError):
            raise FormatError(f"malformed PLY header line {raw[:40]!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise FormatError(f"PLY format must be ascii, binary_little_endian or binary_big_endian, got {fmt!r}")
    return fmt, elements, body


def _dtype(name: str) -> str:
    if name not in _TYPES:
        raise FormatError(f"unknown PLY property type {name!r}")
    return _TYPES[name]


def _plural(name: str) -> str:
    return {"vertex": "vertices", "face": "faces", "edge": "edges"}.get(name, f"{name} elements")


def _short(element: _Element, have: int) -> str:
    return f"truncated PLY: the header promises {element.count:,} {_plural(element.name)} but the file holds {have:,}"


def _binary(data: bytes, pos: int, el: _Element, endian: str, problems: list[str]) -> tuple[dict, int]:
    """Columns of one element and the position after it."""
    n = el.count
    if not el.props:
        return {}, pos
    if el.fixed:
        dt = np.dtype([(p, endian + t) for p, t, _ in el.props])
        have = (len(data) - pos) // dt.itemsize
        if have < n:
            problems.append(_short(el, have))
            n = have
        rec = np.frombuffer(data, dt, n, pos)
        return {p: rec[p] for p, _, _ in el.props}, pos + n * dt.itemsize
    # lists: try "every record like the first" (all triangles, say) as one structured read
    fields, off, ok = [], pos, True
    for p, t, c in el.props:
        if c is None:
            fields.append((p, endian + t))
            off += np.dtype(t).itemsize
        else:
            if off + np.dtype(c).itemsize > len(data):
                ok = False
                break
            k = int(np.frombuffer(data, endian + c, 1, off)[0])
            fields += [(p + "#n", endian + c), (p, endian + t, (k,))]
            off += np.dtype(c).itemsize + k * np.dtype(t).itemsize
    if ok and n:
        dt = np.dtype(fields)
        have = (len(data) - pos) // dt.itemsize
        rec = np.frombuffer(data, dt, min(n, have), pos)
        if all((rec[p + "#n"] == dt[p].shape[0]).all() for p, _, c in el.props if c is not None):
            if have < n:
                problems.append(_short(el, have))
            return {p: rec[p] for p, _, _ in el.props}, pos + min(n, have) * dt.itemsize
    return _binary_loop(data, pos, el, endian, problems)


def _binary_loop(data: bytes, pos: int, el: _Element, endian: str, problems: list[str]) -> tuple[dict, int]:
    """Record by record, for lists of varying length (mixed triangles, quads, polygons)."""
    cols: dict[str, list] = {p: [] for p, _, _ in el.props}
    fmt = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "f4": "f", "f8": "d",
           "i8": "q", "u8": "Q"}
    e = "<" if endian == "<" else ">"
    size = len(data)
    done = 0
    try:
        for _ in range(el.count):
            for p, t, c in el.props:
                if c is None:
                    cols[p].append(struct.unpack_from(e + fmt[t], data, pos)[0])
                    pos += np.dtype(t).itemsize
                else:
                    k = struct.unpack_from(e + fmt[c], data, pos)[0]
                    pos += np.dtype(c).itemsize
                    if k < 0 or pos + k * np.dtype(t).itemsize > size:
                        raise struct.error("list runs past the end")
                    cols[p].append(struct.unpack_from(e + fmt[t] * k, data, pos))
                    pos += k * np.dtype(t).itemsize
            done += 1
    except struct.error:
        problems.append(_short(el, done))
        for p in cols:
            del cols[p][done:]
    out = {}
    for p, t, c in el.props:
        out[p] = np.asarray(cols[p], dtype=t) if c is None else [np.asarray(v, dtype=np.int64) for v in cols[p]]
    return out, pos


def _ascii(lines: list[bytes], start: int, el: _Element, problems: list[str], cut: bool) -> tuple[dict, int]:
    rows = lines[start:start + el.count]
    if len(rows) < el.count:
        problems.append(_short(el, len(rows)))
    if cut and rows and start + len(rows) == len(lines):
        # the file ends inside this element without a newline: its last record may be cut
        if not _ascii_row_complete(rows[-1], el):
            problems.append(f"truncated PLY: {el.name} element {len(rows):,} is cut off")
            rows = rows[:-1]
    cols: dict[str, list] = {p: [] for p, _, _ in el.props}
    counts = {len(r.split()) for r in rows[:1000]}
    if el.fixed or (len(counts) == 1 and all(len(r.split()) == next(iter(counts)) for r in rows)):
        width = next(iter(counts)) if rows else 0
        try:
            table = np.array(b" ".join(rows).split(), dtype=np.float64).reshape(len(rows), width) if rows \
                else np.zeros((0, width))
        except ValueError:
            raise FormatError(f"malformed PLY: a {el.name} line has a value that is not a number or the wrong "
                              f"number of values") from None
        j = 0
        out = {}
        for p, t, c in el.props:
            if j >= width:
                raise FormatError(f"malformed PLY: {el.name} lines have {width} values, too few for the header")
            if c is None:
                out[p] = table[:, j].astype(t)
                j += 1
            else:
                k = int(table[0, j]) if len(table) else 0
                if len(table) and (table[:, j] != k).any():
                    break
                out[p] = table[:, j + 1:j + 1 + k].astype(np.int64)
                j += 1 + k
        else:
            return out, start + len(rows)
    for r in rows:
        vals = r.split()
        j = 0
        try:
            for p, t, c in el.props:
                if c is None:
                    cols[p].append(float(vals[j]))
                    j += 1
                else:
                    k = int(vals[j])
                    cols[p].append(np.array(vals[j + 1:j + 1 + k], dtype=np.int64))
                    if len(cols[p][-1]) != k:
                        raise IndexError
                    j += 1 + k
        except (IndexError, ValueError):
            raise FormatError(f"malformed PLY: a {el.name} line does not match the header's properties") from None
    return {p: (np.asarray(cols[p], dtype=t) if c is None else cols[p]) for p, t, c in el.props}, start + len(rows)


def _ascii_row_complete(row: bytes, el: _Element) -> bool:
    vals = row.split()
    j = 0
    for _, _, c in el.props:
        if c is None:
            j += 1
        else:
            if j >= len(vals):
                return False
            try:
                j += 1 + int(vals[j])
            except ValueError:
                return False
    return len(vals) >= j


def read_ply(data: bytes) -> RawMesh:
    """A PLY file's ``vertex`` element (x, y, z and scalar properties) and ``face`` element (polygons).
    Other elements (edges, materials) are read past and ignored."""
    fmt, elements, pos = _parse_header(data)
    problems: list[str] = []
    parsed: dict[str, dict] = {}
    if fmt == "ascii":
        body = data[pos:]
        lines = [ln for ln in body.splitlines() if ln.strip() and not ln.startswith(b"comment")]
        cut = not body.endswith((b"\n", b"\r"))
        at = 0
        for el in elements:
            cols, at = _ascii(lines, at, el, problems, cut)
            parsed.setdefault(el.name, cols)
            if problems:
                break
    else:
        endian = "<" if fmt == "binary_little_endian" else ">"
        for el in elements:
            cols, pos = _binary(data, pos, el, endian, problems)
            parsed.setdefault(el.name, cols)
            if problems:
                break
    v = parsed.get("vertex")
    if v is None or not all(k in v for k in "xyz"):
        raise FormatError("PLY has no vertex element with x, y and z properties")
    points = np.stack([np.asarray(v[k], dtype=np.float64) for k in "xyz"], axis=1)
    if len(points) == 0:
        raise FormatError(problems[0] if problems else "PLY holds no vertices")
    point_data = {k: np.asarray(a) for k, a in v.items() if k not in _SKIP_POINT_DATA and not isinstance(a, list)
                  and np.asarray(a).ndim == 1}
    cells, cell_data = {}, {}
    faces = parsed.get("face")
    if faces is not None:
        key = next((k for k in _FACE_LISTS if k in faces), None)
        if key is None:
            raise FormatError("PLY face element has no vertex_indices list")
        lists = faces[key]
        if isinstance(lists, np.ndarray) and lists.ndim == 2:
            sizes = np.full(len(lists), lists.shape[1], dtype=np.int64)
            flat = lists.astype(np.int64).reshape(-1)
        else:
            sizes = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
            flat = np.concatenate([np.asarray(x, np.int64) for x in lists]) if len(lists) else np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(sizes)), sizes)
        bad = np.zeros(len(sizes), dtype=bool)
        bad[owner[(flat < 0) | (flat >= len(points))]] = True
        bad |= sizes < 3
        if bad.any():
            n_small = int((sizes < 3).sum())
            if n_small:
                raise FormatError(f"malformed PLY: {n_small:,} faces have fewer than 3 vertices")
            problems.append(f"{int(bad.sum()):,} of {len(sizes):,} faces index vertices the file does not have "
                            f"(it has {len(points):,} vertices)")
            flat, keep_sizes = flat[~bad[owner]], sizes[~bad]
        else:
            keep_sizes = sizes
        cells = polygon_blocks(keep_sizes, flat)
        for k, a in faces.items():
            if k == key or isinstance(a, list) or np.asarray(a).ndim != 1:
                continue
            a = np.asarray(a)[~bad]
            cell_data[k] = {cell_type(int(n)): a[keep_sizes == n] for n in np.unique(keep_sizes)}
    return RawMesh(points, cells, point_data=point_data, cell_data=cell_data, problems=problems)


_WRITE_TYPES = {"f8": "double", "f4": "float", "i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort",
                "i4": "int", "u4": "uint"}


def _ply_column(name: str, v: np.ndarray) -> np.ndarray:
    """A column in a type PLY has: 64-bit integers narrow to 32 bits only when every value fits."""
    v = np.asarray(v)
    if v.dtype == bool:
        return v.astype(np.uint8)
    if v.dtype.kind in "iu" and v.dtype.itemsize == 8:
        target = np.int32 if v.dtype.kind == "i" else np.uint32
        info = np.iinfo(target)
        if v.size and (v.min() < info.min or v.max() > info.max):
            raise ValueError(f"{name!r} holds 64-bit integers beyond the 32-bit range PLY can store "
                             f"({int(v.min())}..{int(v.max())}); write .vtu, .vtp or .vtk instead")
        return v.astype(target)
    if v.dtype.kind == "f" and v.dtype.itemsize not in (4, 8):
        return v.astype(np.float64)
    if v.dtype.str[1:] not in _WRITE_TYPES:
        raise ValueError(f"{name!r} has dtype {v.dtype}, which PLY cannot store")
    return v


def write_ply(path: str, points: np.ndarray, cells: dict[str, np.ndarray], point_data: dict[str, np.ndarray],
              cell_data: dict[str, dict[str, np.ndarray]]) -> None:
    """Binary little-endian PLY: double x, y, z, scalar point data as vertex properties, polygons
    (every cell block, in the given order) with scalar cell data as face properties."""
    n = len(points)
    vcols = [("x", np.asarray(points[:, 0], np.float64)), ("y", np.asarray(points[:, 1], np.float64)),
             ("z", np.asarray(points[:, 2], np.float64))]
    vcols += [(k, _ply_column(k, v)) for k, v in point_data.items()]
    types = list(cells)
    fcols = []
    for k, per_type in cell_data.items():
        fcols.append((k, _ply_column(k, np.concatenate([np.asarray(per_type[t]) for t in types]))))
    n_faces = sum(len(cells[t]) for t in types)
    widest = max((cells[t].shape[1] for t in types), default=3)
    count_t = "uchar" if widest < 256 else "int"
    head = ["ply", "format binary_little_endian 1.0", "comment written by pyengine", f"element vertex {n}"]
    head += [f"property {_WRITE_TYPES[c.dtype.str[1:]]} {k}" for k, c in vcols]
    if n_faces:
        head += [f"element face {n_faces}", f"property list {count_t} int vertex_indices"]
        head += [f"property {_WRITE_TYPES[c.dtype.str[1:]]} {k}" for k, c in fcols]
    head.append("end_header")
    vdt = np.dtype([(k, "<" + c.dtype.str[1:]) for k, c in vcols])
    vrec = np.empty(n, vdt)
    for k, c in vcols:
        vrec[k] = c
    with open(path, "wb") as fh:
        fh.write(("\n".join(head) + "\n").encode("ascii"))
        fh.write(vrec.tobytes())
        start = 0
        for t in types:
            c = np.asarray(cells[t], np.int64)
            fdt = np.dtype([("n", "<u1" if count_t == "uchar" else "<i4"), ("v", "<i4", (c.shape[1],))]
                           + [(k, "<" + col.dtype.str[1:]) for k, col in fcols])
            rec = np.empty(len(c), fdt)
            rec["n"] = c.shape[1]
            rec["v"] = c
            for k, col in fcols:
                rec[k] = col[start:start + len(c)]
            start += len(c)
            fh.write(rec.tobytes())
