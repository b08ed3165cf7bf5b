"""Parametric closed bodies built with gmsh's OpenCASCADE (OCC) kernel.

Each body is a frozen dataclass of its shape parameters (lengths in metres, or
any consistent unit; angles in degrees). Bodies are built *into* the current
gmsh model (``build``) so the flow solver can cut them out of a box with an
exact OCC boolean, or meshed on their own into a closed triangle surface
(``surface``). Every body is centred on the origin of its bounding box, with
its length along +x (the default flow direction).

Families:
    * :class:`Ellipsoid` (and :func:`sphere`): semi-axes ``a, b, c``.
    * :class:`AhmedBody`: the classic automotive bluff body, a box with
      rounded front edges and a slanted rear roof.
    * :class:`CarBody`: a rounded main box, a rounded cabin on top and four
      cylindrical wheels, fused into one solid.

:func:`random_body` draws a body of a family from a numpy ``Generator``, so
datasets are reproducible from a seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ._gmsh import gmsh_session, mesh_arrays

__all__ = ["AhmedBody", "Body", "CarBody", "Ellipsoid", "BODY_KINDS", "random_body", "sphere"]


def _positive(owner: str, **values: float) -> None:
    for name, v in values.items():
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{owner}: {name} must be a positive finite number, got {v!r}")


@dataclass(frozen=True)
class Body:
    """Base class: a closed solid with named shape parameters."""

    kind: ClassVar[str] = "body"

    def params(self) -> dict:
        """The shape parameters plus ``kind``, JSON-friendly (used as cache keys and metadata)."""
        return {"kind": self.kind, **asdict(self)}

    def _build(self, occ) -> list[tuple[int, int]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, gmsh) -> list[tuple[int, int]]:
        """Add this solid to the current gmsh model, centred on the origin (by construction).

        Returns the OCC ``(3, tag)`` dim-tags of the solid (not yet synchronised).
        """
        occ = gmsh.model.occ
        dimtags = self._build(occ)
        if len(dimtags) > 1:  # unions that did not fuse into one solid are fused here
            dimtags, _ = occ.fuse(dimtags[:1], dimtags[1:])
        return dimtags

    def surface(self, mesh_size: float | None = None, seed: int = 0):
        """The closed triangulated surface of the body as a ``trimesh.Trimesh``.

        Args:
            mesh_size: target triangle edge length (same unit as the body);
                default: 1/20 of the body's largest extent.
        Returns:
            A watertight ``trimesh.Trimesh`` (vertices (V, 3) float64, faces (F, 3) int64),
            faces oriented outwards.
        """
        import trimesh

        with gmsh_session(seed) as gmsh:
            dimtags = self.build(gmsh)
            gmsh.model.occ.synchronize()
            lo, hi = _bbox(gmsh, dimtags)
            h = float(mesh_size) if mesh_size is not None else float(np.max(hi - lo)) / 20
            _positive(type(self).__name__ + ".surface", mesh_size=h)
            gmsh.option.setNumber("Mesh.MeshSizeMax", h)
            gmsh.option.setNumber("Mesh.MeshSizeMin", h / 3)
            gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 16)
            gmsh.model.mesh.generate(2)
            nodes, tris = mesh_arrays(gmsh, 2)
        used, inv = np.unique(tris, return_inverse=True)
        mesh = trimesh.Trimesh(nodes[used], inv.reshape(-1, 3), process=True)
        trimesh.repair.fix_normals(mesh)  # OCC surfaces come with mixed orientations
        return mesh


def _bbox(gmsh, dimtags) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for d, t in dimtags:
        b = gmsh.model.getBoundingBox(d, t)
        lo = np.minimum(lo, b[:3])
        hi = np.maximum(hi, b[3:])
    return lo, hi


@dataclass(frozen=True)
class Ellipsoid(Body):
    """Ellipsoid with semi-axes ``a`` (along x, the flow), ``b`` (y) and ``c`` (z)."""

    a: float = 1.0
    b: float = 1.0
    c: float = 1.0
    kind: ClassVar[str] = "ellipsoid"

    def __post_init__(self) -> None:
        _positive("Ellipsoid", a=self.a, b=self.b, c=self.c)

    def _build(self, occ):
        tag = occ.addSphere(0, 0, 0, 1.0)
        occ.dilate([(3, tag)], 0, 0, 0, self.a, self.b, self.c)
        return [(3, tag)]


def sphere(radius: float = 1.0) -> Ellipsoid:
    """A sphere of the given radius (an :class:`Ellipsoid` with equal semi-axes)."""
    return Ellipsoid(radius, radius, radius)


@dataclass(frozen=True)
class AhmedBody(Body):
    """Ahmed-like bluff body: a box with rounded front edges and a slanted rear roof.

    Attributes (defaults are the original Ahmed body, metres and degrees):
        length: along x (flow direction).
        height: along z.
        width: along y.
        slant_angle: angle of the rear slant to the roof, in [0, 45] degrees (0: square back).
        fillet_radius: radius of the four front edges, in [0, min(height, width) / 2).
        slant_length: length of the slant along x, in (0, length / 2].
    """

    length: float = 1.044
    height: float = 0.288
    width: float = 0.389
    slant_angle: float = 25.0
    fillet_radius: float = 0.1
    slant_length: float = 0.222
    kind: ClassVar[str] = "ahmed"

    def __post_init__(self) -> None:
        _positive("AhmedBody", length=self.length, height=self.height, width=self.width,
                  slant_length=self.slant_length)
        if not (0.0 <= self.slant_angle <= 45.0):
            raise ValueError(f"AhmedBody: slant_angle must be in [0, 45] degrees, got {self.slant_angle!r}")
        if not (0.0 <= self.fillet_radius < 0.5 * min(self.height, self.width)):
            raise ValueError(
                f"AhmedBody: fillet_radius must be in [0, min(height, width) / 2 = "
                f"{0.5 * min(self.height, self.width):g}), got {self.fillet_radius!r}"
            )
        if self.slant_length > 0.5 * self.length:
            raise ValueError(f"AhmedBody: slant_length must be at most length / 2, got {self.slant_length!r}")
        drop = self.slant_length * math.tan(math.radians(self.slant_angle))
        if drop > 0.8 * self.height:
            raise ValueError(
                f"AhmedBody: slant_angle {self.slant_angle} with slant_length {self.slant_length} drops "
                f"{drop:.3g}, more than 0.8 * height; reduce one of them"
            )

    def _build(self, occ):
        import gmsh

        L, H, W = self.length, self.height, self.width
        box = occ.addBox(0, -W / 2, 0, L, W, H)  # built in [0, L] x [-W/2, W/2] x [0, H], centred below
        if self.fillet_radius > 0:
            occ.synchronize()
            # The four edges of the front face (x = 0) are rounded.
            faces = gmsh.model.getBoundary([(3, box)], oriented=False)
            all_edges = {abs(e[1]) for f in faces for e in gmsh.model.getBoundary([f], oriented=False)}
            # The front edges are the ones whose midpoint lies on the front face x = 0.
            edges = sorted(e for e in all_edges if abs(occ.getCenterOfMass(1, e)[0]) < 1e-6 * L)
            out = occ.fillet([box], edges, [self.fillet_radius], removeVolume=True)
            box = out[0][1]
        if self.slant_angle > 0:
            # A prism across the full width removes the rear top corner. Its cross-section's
            # lower edge is the slant plane; it overshoots the roof and the rear
            # face by 10% so the cut leaves no sliver faces behind.
            t = math.tan(math.radians(self.slant_angle))
            x0, x1, top = L - self.slant_length, 1.1 * L, 1.1 * H
            pts = [occ.addPoint(x0, -W, H), occ.addPoint(x0, -W, top), occ.addPoint(x1, -W, top),
                   occ.addPoint(x1, -W, H - (x1 - x0) * t)]
            lines = [occ.addLine(pts[i], pts[(i + 1) % 4]) for i in range(4)]
            surf = occ.addPlaneSurface([occ.addCurveLoop(lines)])
            prism = occ.extrude([(2, surf)], 0, 2 * W, 0)
            vol = [dt for dt in prism if dt[0] == 3]
            out, _ = occ.cut([(3, box)], vol)
        else:
            out = [(3, box)]
        occ.translate(out, -L / 2, 0, -H / 2)
        return out


@dataclass(frozen=True)
class CarBody(Body):
    """Car-like body: a rounded main box, a rounded cabin on its roof and four wheels.

    Attributes (metres):
        length, width, height: the main box (height excludes the cabin).
        cabin_length, cabin_height: the cabin box on top of the main box.
        cabin_offset: x offset of the cabin centre from the main box centre (+: rearwards).
        corner_radius: fillet radius of all edges of both boxes.
        wheel_radius, wheel_width: the four cylinders (axis along y), centred at the
            bottom of the main box, a quarter length in from each end.
    """

    length: float = 1.0
    width: float = 0.42
    height: float = 0.2
    cabin_length: float = 0.5
    cabin_height: float = 0.14
    cabin_offset: float = 0.05
    corner_radius: float = 0.04
    wheel_radius: float = 0.08
    wheel_width: float = 0.06
    kind: ClassVar[str] = "car"

    def __post_init__(self) -> None:
        _positive("CarBody", length=self.length, width=self.width, height=self.height,
                  cabin_length=self.cabin_length, cabin_height=self.cabin_height,
                  corner_radius=self.corner_radius, wheel_radius=self.wheel_radius,
                  wheel_width=self.wheel_width)
        if self.cabin_length >= self.length:
            raise ValueError(f"CarBody: cabin_length must be smaller than length, got {self.cabin_length!r}")
        if abs(self.cabin_offset) + self.cabin_length / 2 > self.length / 2 - self.corner_radius:
            raise ValueError(f"CarBody: cabin_offset {self.cabin_offset!r} puts the cabin past the body's end")
        if 2 * self.corner_radius >= min(self.height, self.cabin_height, self.width, self.cabin_length):
            raise ValueError(
                f"CarBody: corner_radius must be below half of every box side, got {self.corner_radius!r}"
            )
        if self.wheel_radius >= self.length / 4 or self.wheel_radius >= self.height:
            raise ValueError(f"CarBody: wheel_radius must be below length / 4 and height, got {self.wheel_radius!r}")
        if self.wheel_width >= self.width / 2:
            raise ValueError(f"CarBody: wheel_width must be below width / 2, got {self.wheel_width!r}")

    def _rounded_box(self, occ, x, y, z, dx, dy, dz):
        import gmsh

        box = occ.addBox(x, y, z, dx, dy, dz)
        occ.synchronize()
        edges = {abs(e[1]) for face in gmsh.model.getBoundary([(3, box)], oriented=False)
                 for e in gmsh.model.getBoundary([face], oriented=False)}
        out = occ.fillet([box], sorted(edges), [self.corner_radius], removeVolume=True)
        return out[0]

    def _build(self, occ):
        L, W, H = self.length, self.width, self.height
        main = self._rounded_box(occ, -L / 2, -W / 2, 0, L, W, H)
        cx = self.cabin_offset - self.cabin_length / 2
        cw = W - 2 * self.corner_radius
        # The cabin sinks into the main box by one corner radius so the union is one solid.
        cabin = self._rounded_box(occ, cx, -cw / 2, H - self.corner_radius, self.cabin_length, cw,
                                  self.cabin_height + self.corner_radius)
        parts = [main, cabin]
        for sx in (-1, 1):
            for sy in (-1, 1):
                # Each wheel sticks out of the side by half its width and below the floor by 60% of its radius.
                y0 = sy * (W / 2 - self.wheel_width / 2)
                tag = occ.addCylinder(sx * L / 4, y0, 0.4 * self.wheel_radius, 0, sy * self.wheel_width, 0,
                                      self.wheel_radius)
                parts.append((3, tag))
        out, _ = occ.fuse(parts[:1], parts[1:])
        # Centre in z: the solid spans from the wheel bottoms to the cabin roof.
        z0, z1 = -0.6 * self.wheel_radius, H + self.cabin_height
        occ.translate(out, 0, 0, -0.5 * (z0 + z1))
        return out


BODY_KINDS = ("ellipsoid", "ahmed", "car")


def random_body(kind: str, rng: np.random.Generator) -> Body:
    """Draw one body of family ``kind`` ("ellipsoid", "ahmed" or "car") from ``rng``.

    Ranges keep every drawn body valid and of unit-order size (length ~ 1).
    """
    u = rng.uniform
    if kind == "ellipsoid":
        return Ellipsoid(a=u(0.4, 0.7), b=u(0.15, 0.35), c=u(0.15, 0.35))
    if kind == "ahmed":
        h, w = u(0.22, 0.34), u(0.3, 0.45)
        return AhmedBody(length=u(0.9, 1.1), height=h, width=w, slant_angle=u(0.0, 40.0),
                         fillet_radius=u(0.03, 0.45) * min(h, w), slant_length=u(0.15, 0.3))
    if kind == "car":
        L = u(0.9, 1.1)
        return CarBody(length=L, width=u(0.38, 0.46), height=u(0.16, 0.24), cabin_length=u(0.35, 0.6) * L,
                       cabin_height=u(0.1, 0.16), cabin_offset=u(-0.05, 0.1) * L, corner_radius=u(0.02, 0.045),
                       wheel_radius=u(0.06, 0.09), wheel_width=u(0.04, 0.07))
    raise ValueError(f"random_body: kind must be one of {BODY_KINDS}, got {kind!r}")
