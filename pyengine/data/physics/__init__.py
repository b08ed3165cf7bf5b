"""Physics datasets from real solvers: gmsh meshes, scikit-fem assembles, scipy solves.

* :mod:`.bodies`: parametric OCC bodies (ellipsoids, Ahmed-like bluff bodies, car-like bodies).
* :mod:`.potential_flow`: 3D potential flow around a closed body, Cp on its surface.
* :mod:`.darcy2d`: a fast 2D Darcy family on random domains with holes.
* :mod:`.advection_diffusion2d`: a time-dependent 2D family (advection-diffusion around holes) for MP-PDE.
* :mod:`.datasets`: parallel, seeded, disk-cached dataset builders.
"""

from .bodies import BODY_KINDS, AhmedBody, Body, CarBody, Ellipsoid, random_body, sphere
from .darcy2d import darcy2d, mesh_domain, random_holes, solve_darcy
from .datasets import QUICK_FLOW, build_darcy_dataset, build_flow_dataset, flow_bodies
from .potential_flow import DEFAULT_RESOLUTION, potential_flow

__all__ = ["AhmedBody", "BODY_KINDS", "Body", "CarBody", "DEFAULT_RESOLUTION", "Ellipsoid", "QUICK_FLOW",
           "build_darcy_dataset", "build_flow_dataset", "darcy2d", "flow_bodies", "mesh_domain", "potential_flow",
           "random_body", "random_holes", "solve_darcy", "sphere"]

from .advection_diffusion2d import (  # noqa: E402  (issue 20)
    advection_diffusion2d, build_advection_diffusion_dataset, trajectory, trajectory_windows)

__all__ += ["advection_diffusion2d", "build_advection_diffusion_dataset", "trajectory", "trajectory_windows"]
