"""A small OpenFOAM case written from scratch (ASCII polyMesh + a ``p`` field), for reader tests.

:func:`write_case` builds an ``nx x ny x nz`` block of unit hexahedra with patches ``inlet``
(x = 0), ``outlet`` (x = nx) and ``walls`` (the rest), face order and orientation as
OpenFOAM requires (internal faces upper-triangular, owner-outward normals), and writes
``0/p`` with known internal and patch values. It returns what a reader must find.
"""

from pathlib import Path

import numpy as np

HEADER = """FoamFile
{{
    version     2.0;
    format      ascii;
    class       {cls};
    location    "{loc}";
    object      {obj};
}}
"""

def write_case(root, nx=3, ny=2, nz=1):
    """Write the case under ``root``; returns (cell centres (C, 3), internal p (C,),
    {patch: (face centres (F, 3), p (F,))}). p = 10 x + y inside, 100 x + z on the patches."""
    root = Path(root)
    (root / "constant/polyMesh").mkdir(parents=True, exist_ok=True)
    (root / "system").mkdir(exist_ok=True)
    (root / "0").mkdir(exist_ok=True)
    def pid(i, j, k):
        return i + (nx + 1) * (j + (ny + 1) * k)

    pts = np.array([[i, j, k] for k in range(nz + 1) for j in range(ny + 1) for i in range(nx + 1)], float)
    def cid(i, j, k):
        return i + nx * (j + ny * k)

    internal, patches = [], {"inlet": [], "outlet": [], "walls": []}
    def quad(a, b, c, d):
        return [a, b, c, d]

    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                c = cid(i, j, k)
                # +x face between (i,j,k) and (i+1,j,k): normal +x, owner c
                f = quad(pid(i+1,j,k), pid(i+1,j+1,k), pid(i+1,j+1,k+1), pid(i+1,j,k+1))
                (internal.append((f, c, cid(i+1,j,k))) if i + 1 < nx else patches["outlet"].append((f, c)))
                f = quad(pid(i,j+1,k), pid(i,j+1,k+1), pid(i+1,j+1,k+1), pid(i+1,j+1,k))  # +y
                (internal.append((f, c, cid(i,j+1,k))) if j + 1 < ny else patches["walls"].append((f, c)))
                f = quad(pid(i,j,k+1), pid(i+1,j,k+1), pid(i+1,j+1,k+1), pid(i,j+1,k+1))  # +z
                (internal.append((f, c, cid(i,j,k+1))) if k + 1 < nz else patches["walls"].append((f, c)))
                if i == 0:
                    patches["inlet"].append((quad(pid(0,j,k), pid(0,j,k+1), pid(0,j+1,k+1), pid(0,j+1,k)), c))
                if j == 0:
                    patches["walls"].append((quad(pid(i,0,k), pid(i+1,0,k), pid(i+1,0,k+1), pid(i,0,k+1)), c))
                if k == 0:
                    patches["walls"].append((quad(pid(i,j,0), pid(i,j+1,0), pid(i+1,j+1,0), pid(i+1,j,0)), c))
    internal.sort(key=lambda t: (t[1], t[2]))
    faces = [f for f, _, _ in internal]; owner = [o for _, o, _ in internal]; neigh = [n for _, _, n in internal]
    bnd = []
    for name, lst in patches.items():
        bnd.append((name, len(faces), len(lst)))
        faces += [f for f, _ in lst]; owner += [o for _, o in lst]
    def lst(name, cls, items, fmt):
        body = HEADER.format(cls=cls, loc="constant/polyMesh", obj=name) + f"\n{len(items)}\n(\n" + "\n".join(fmt(x) for x in items) + "\n)\n"
        (root / "constant/polyMesh" / name).write_text(body)
    lst("points", "vectorField", pts, lambda p: f"({p[0]:g} {p[1]:g} {p[2]:g})")
    lst("faces", "faceList", faces, lambda f: "4(" + " ".join(map(str, f)) + ")")
    lst("owner", "labelList", owner, str)
    lst("neighbour", "labelList", neigh, str)
    b = HEADER.format(cls="polyBoundaryMesh", loc="constant/polyMesh", obj="boundary") + f"\n{len(bnd)}\n(\n"
    for name, start, n in bnd:
        b += f"    {name}\n    {{\n        type wall;\n        nFaces {n};\n        startFace {start};\n    }}\n"
    (root / "constant/polyMesh/boundary").write_text(b + ")\n")
    (root / "system/controlDict").write_text(HEADER.format(cls="dictionary", loc="system", obj="controlDict") +
        "application simpleFoam;\nstartFrom startTime;\nstartTime 0;\nstopAt endTime;\nendTime 1;\ndeltaT 1;\nwriteControl timeStep;\nwriteInterval 1;\n")
    ncells = nx * ny * nz
    centres = np.array([[i + .5, j + .5, k + .5] for k in range(nz) for j in range(ny) for i in range(nx)])
    p_int = centres[:, 0] * 10 + centres[:, 1]
    def vals(v):
        return "nonuniform List<scalar> " + f"{len(v)}\n(\n" + "\n".join(f"{x:.10g}" for x in v) + "\n)"
    bf = ""
    patch_vals = {}
    for name, start, n in bnd:
        fc = np.array([pts[faces[start + q]].mean(0) for q in range(n)])
        pv = fc[:, 0] * 100 + fc[:, 2]
        patch_vals[name] = (fc, pv)
        bf += f"    {name}\n    {{\n        type fixedValue;\n        value {vals(pv)};\n    }}\n"
    (root / "0/p").write_text(HEADER.format(cls="volScalarField", loc="0", obj="p") +
        f"\ndimensions [0 2 -2 0 0 0 0];\n\ninternalField {vals(p_int)};\n\nboundaryField\n{{\n{bf}}}\n")
    return centres, p_int, patch_vals
