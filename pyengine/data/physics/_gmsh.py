"""A safe way to use gmsh (one global, process-wide session), and single-threaded BLAS for the solvers.

gmsh keeps a single model store per process, so two overlapping sessions would
silently share (and corrupt) each other's geometry. :func:`gmsh_session`
initialises gmsh quietly, refuses to nest, and always finalises, even when
meshing raises, so a failed shape never poisons the next one. Parallelism comes
from worker *processes*, each with its own gmsh (see ``datasets.py``).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np

_lock = threading.Lock()


@contextlib.contextmanager
def gmsh_session(seed: int = 0) -> Iterator["object"]:
    """Initialise gmsh for one meshing job and finalise it afterwards.

    Yields the ``gmsh`` module. ``seed`` fixes gmsh's own random perturbations
    (``Mesh.RandomSeed``) so the same geometry always gives the same mesh.
    """
    import gmsh

    if not _lock.acquire(blocking=False):
        raise RuntimeError("gmsh_session: gmsh is already in use in this process (sessions cannot nest)")
    try:
        if gmsh.isInitialized():
            raise RuntimeError("gmsh_session: gmsh was initialised elsewhere in this process")
        # "-nt": no config files; interruptible=False: no SIGINT handler (works off the main thread).
        gmsh.initialize(["-nt"], readConfigFiles=False, interruptible=False)
        try:
            gmsh.option.setNumber("General.Terminal", 0)
            gmsh.option.setNumber("General.Verbosity", 1)
            # One thread: determinism, and the machine's cores go to worker processes.
            gmsh.option.setNumber("General.NumThreads", 1)
            gmsh.option.setNumber("Mesh.RandomSeed", int(seed) % 2**31 + 1)
            # Surface Delaunay: the default frontal algorithm leaves dilated (B-spline) spheres
            # unmeshed, and algorithm 8 crashes on them (gmsh 4.15).
            gmsh.option.setNumber("Mesh.Algorithm", 5)
            gmsh.option.setNumber("Mesh.Algorithm3D", 1)
            # Tight bounding boxes (OCC's own are loose for spheres and B-splines); sizes use them.
            gmsh.option.setNumber("Geometry.OCCBoundsUseStl", 1)
            gmsh.model.add("pyengine")
            yield gmsh
        finally:
            gmsh.finalize()
    finally:
        _lock.release()


def mesh_arrays(gmsh, dim: int, tag: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """All nodes of the model and the first-order simplices of one entity (or all of ``dim``).

    Returns:
        nodes: (n_nodes, 3) float64 coordinates, row ``i`` is gmsh node ``tags[i]``.
        simplices: (n_elem, dim + 1) int64 indices into ``nodes``.
    """
    tags, coords, _ = gmsh.model.mesh.getNodes()
    nodes = coords.reshape(-1, 3)
    index = np.empty(int(tags.max()) + 1, dtype=np.int64)
    index[tags.astype(np.int64)] = np.arange(len(tags))
    etype = {1: 1, 2: 2, 3: 4}[dim]  # gmsh element types: line, triangle, tetrahedron
    _, enodes = gmsh.model.mesh.getElementsByType(etype, tag)
    simplices = index[enodes.astype(np.int64)].reshape(-1, dim + 1)
    return nodes, simplices


def single_threaded_blas():
    """Context limiting BLAS to one thread (threadpoolctl), or a no-op if it is not installed.

    scipy's CG calls BLAS dot products on vectors of ~10^4-10^5 entries: threading them
    gains nothing, costs 10x when the cores are shared, and changes the summation order
    (so results would differ in the last bits between serial and parallel builds).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is installed by scripts/setup.sh
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
