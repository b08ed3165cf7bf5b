"""pyengine's CUDA sources compiled as host code, as ``torch.ops.pyengine_emu``: one harness, two back ends.

Every ``csrc/<family>/*_cuda.cu`` is compiled as host C++ with ``tests/simt/pye_simt/prelude.h``
forced first, which redirects its ``TORCH_LIBRARY_IMPL(pyengine, CUDA, m)`` block so the CUDA
entry points register as the CPU kernels of ``torch.ops.pyengine_emu`` (same schemas as
``torch.ops.pyengine``, whose CPU kernels are the reference in the tests). Each source is
built by exactly one back end (``test_every_cuda_source_is_emulated`` keeps the split exhaustive):

* ``simt``: kernels written against the CUDA runtime run on the SIMT fiber emulator
  (``tests/simt``: every CUDA thread a fiber, see ``tests/simt/pye_simt/runtime.h`` for
  what it checks). Sources: every ``*_cuda.cu`` not in ``THRUST_HOST_SOURCES``.
* ``thrust_host``: sources whose device code is Thrust algorithms over ``__host__ __device__``
  functors (the k-d tree), which the SIMT stand-ins do not provide. They are compiled with
  ``THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP`` (Thrust headers from the CUDA toolkit),
  and ``tests/simt/thrust_host`` stands in for the CUDA policy: a sequential host policy
  whose element-wise loops honour ``PYE_SIMT_ORDER`` like the SIMT lanes. The ``simt``
  build holds the schemas, so it is loaded first.

Each back end builds into its own folder under ``build/`` and is reused while its sources
and headers are unchanged (a few minutes from scratch on two cores).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import re
import shutil
from dataclasses import dataclass

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SIMT = ROOT / "tests" / "simt"
BUILD = ROOT / "build" / "simt_emulation"
THRUST_BUILD = ROOT / "build" / "thrust_emulation"


def _discover(pattern: str) -> tuple[str, ...]:
    return tuple(sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").glob(pattern)))


_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def _uses_thrust(path: pathlib.Path, seen: set | None = None) -> bool:
    """Whether a source includes a Thrust header, itself or through the csrc headers it includes."""
    seen = set() if seen is None else seen
    if path in seen or not path.exists():
        return False
    seen.add(path)
    for bracket, name in _INCLUDE.findall(path.read_text()):
        if name.startswith("thrust/"):
            return True
        if bracket == '"' and _uses_thrust(ROOT / "csrc" / name, seen):
            return True
    return False


# Every CUDA source of the extension, each in one back end: Thrust-written ones in thrust_host.
ALL_CUDA_SOURCES = _discover("*/*_cuda.cu")
THRUST_HOST_SOURCES = tuple(f for f in ALL_CUDA_SOURCES if _uses_thrust(ROOT / f))
CUDA_SOURCES = tuple(f for f in ALL_CUDA_SOURCES if f not in THRUST_HOST_SOURCES)
# Each back end's own self-test (tests/emulator/test_simt_emulator.py, tests/neighbors/test_kdtree_emulated.py).
SELFTEST_SOURCES = ("tests/simt/selftest.cu",)
THRUST_SELFTEST_SOURCES = ("tests/simt/thrust_selftest.cu",)


def _args_of(sources: tuple[str, ...]) -> tuple[str, ...]:
    """The shared checks and the argument checks (csrc/<family>/*_args.cpp, no kernels) of
    every family with a source in ``sources``: host code that the entry points call."""
    families = {pathlib.Path(f).parent.name for f in sources}
    return ("csrc/common/checks.cpp",) + tuple(f for f in _discover("*/*_args.cpp")
                                                if pathlib.Path(f).parent.name in families)


# Host sources of each back end; the simt build also holds every schema (registration.cpp).
HOST_SOURCES = ("csrc/registration.cpp",) + _args_of(CUDA_SOURCES)
THRUST_HOST_HOST_SOURCES = _args_of(THRUST_HOST_SOURCES)


def available() -> tuple[bool, str]:
    """Whether the emulator can be built here (a C++ compiler and ninja)."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        return False, "no C++ compiler"
    try:
        from torch.utils.cpp_extension import verify_ninja_availability

        verify_ninja_availability()
    except RuntimeError:
        return False, "ninja is not installed"
    return True, ""


def thrust_include() -> pathlib.Path | None:
    """The folder holding ``thrust/`` (a CUDA toolkit's CCCL headers), or None."""
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(str(pathlib.Path(nvcc).resolve().parents[1]))
    for root in filter(None, roots):
        for inc in (pathlib.Path(root) / "include" / "cccl", pathlib.Path(root) / "include"):
            if (inc / "thrust" / "sort.h").exists() and (inc / "cuda" / "std").is_dir():
                return inc
    return None


def _digest(headers: list[pathlib.Path]) -> str:
    # torch rebuilds when the listed sources or the flags change, not when a header
    # changes: a digest of the headers in the flags makes a header edit rebuild too.
    return hashlib.sha1(b"".join(f.read_bytes() for f in sorted(headers))).hexdigest()[:12]


def _headers(*dirs: pathlib.Path) -> list[pathlib.Path]:
    return [f for d in dirs for f in (*d.rglob("*.h"), *d.rglob("*.cuh"))]


def _wrapper(build: pathlib.Path, cu: str) -> str:
    """A .cpp that includes one .cu, so the host compiler (not nvcc) builds it."""
    src = build / "src"
    src.mkdir(parents=True, exist_ok=True)
    path = src / (pathlib.Path(cu).stem + "_emu.cpp")
    text = f'// generated by tests/cuda_emulation.py\n#include "{ROOT / cu}"\n'
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return str(path)


@dataclass(frozen=True)
class Backend:
    name: str
    library: str  # torch extension name
    build: pathlib.Path
    sources: tuple[str, ...]  # *_cuda.cu, compiled through a generated wrapper
    host_sources: tuple[str, ...]
    include_paths: tuple[str, ...]
    cflags: tuple[str, ...]


def _family_headers(sources: tuple[str, ...]) -> list[pathlib.Path]:
    """Every header the sources can include: their families' and csrc/common's (families
    include no other family's files: tests/emulator/test_csrc_layout.py), so an edit in one
    family rebuilds only the back end that holds it."""
    families = sorted({pathlib.Path(f).parent.name for f in sources if f.startswith("csrc/")} | {"common"})
    return _headers(*(ROOT / "csrc" / fam for fam in families))


def _simt_backend() -> Backend:
    digest = _digest(_family_headers(CUDA_SOURCES) + _headers(SIMT / "pye_simt", SIMT / "c10")
                     + [*SIMT.glob("*.h")])
    return Backend(
        "simt", "pyengine_simt_emulation", BUILD, CUDA_SOURCES + SELFTEST_SOURCES, HOST_SOURCES,
        (str(SIMT), str(ROOT / "csrc")),
        ("-O1", "-std=c++17", "-DPYE_SIMT_EMULATION", "-include", str(SIMT / "pye_simt" / "prelude.h"),
         f"-DPYE_SIMT_DIGEST={digest}"))


def _cccl_only(thrust: pathlib.Path) -> pathlib.Path:
    """A folder with only the CCCL libraries (thrust, cub, libcu++'s cuda/, nv/) of ``thrust``:
    older toolkits keep them beside the CUDA runtime headers, which must stay out of reach."""
    folder = THRUST_BUILD / "cccl"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("thrust", "cub", "cuda", "nv"):
        link, target = folder / name, thrust / name
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()
        if target.exists() and not link.is_symlink():
            link.symlink_to(target)
    return folder


def _thrust_backend(thrust: pathlib.Path) -> Backend:
    # No CUDA runtime header may be findable by <...>: Thrust takes a findable
    # <cuda_runtime_api.h> for a CUDA toolkit and expects its vector types. So tests/simt stays
    # off the angle-bracket path; the stand-ins (tests/simt/thrust_host) and the prelude reach
    # the SIMT headers by quoted includes (-iquote), and Thrust comes from a CCCL-only folder.
    digest = _digest(_family_headers(THRUST_HOST_SOURCES) + _headers(SIMT))
    return Backend(
        "thrust_host", "pyengine_thrust_emulation", THRUST_BUILD, THRUST_HOST_SOURCES + THRUST_SELFTEST_SOURCES,
        THRUST_HOST_HOST_SOURCES,
        (str(SIMT / "thrust_host"), str(ROOT / "csrc")),
        ("-O1", "-std=c++17", "-DPYE_SIMT_EMULATION", "-DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP",
         "-DTHRUST_HOST_SYSTEM=THRUST_HOST_SYSTEM_CPP", "-iquote", str(SIMT), "-isystem", str(_cccl_only(thrust)),
         "-include", str(SIMT / "pye_simt" / "prelude.h"), f"-DPYE_SIMT_DIGEST={digest}"))


def _load(be: Backend) -> None:
    import fcntl

    from torch.utils.cpp_extension import load

    be.build.mkdir(parents=True, exist_ok=True)
    # torch's cpp_extension guards a build with a plain ``lock`` file (FileBaton) that a killed
    # build leaves behind, and every later load then waits on it forever. Our loads hold an
    # fcntl lock instead, which the kernel releases when the holder dies; a ``lock`` file found
    # while holding it belongs to no live pyengine build, so it is stale and removed.
    with open(be.build / "pyengine_build.flock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            (be.build / "lock").unlink(missing_ok=True)
            load(
                name=be.library,
                sources=[_wrapper(be.build, cu) for cu in be.sources] + [str(ROOT / s) for s in be.host_sources],
                extra_include_paths=list(be.include_paths),
                extra_cflags=list(be.cflags),
                build_directory=str(be.build),
                is_python_module=False,
                verbose=False,
            )
        finally:
            fcntl.flock(guard, fcntl.LOCK_UN)


def backend_missing(name: str) -> str:
    """Why back end ``name`` cannot be built here ("" when it can)."""
    ok, why = available()
    if not ok:
        return why
    if name == "thrust_host" and thrust_include() is None:
        return "no Thrust headers (a CUDA toolkit's include/cccl; set CUDA_HOME)"
    return ""


@functools.lru_cache(maxsize=None)
def emulated_ops():
    """Builds (or reuses) the ``simt`` back end and returns ``torch.ops.pyengine_emu``."""
    import pyengine  # noqa: F401  (the real ops first: the emulated ones sit beside them)

    _load(_simt_backend())
    return torch.ops.pyengine_emu


@functools.lru_cache(maxsize=None)
def thrust_host_ops():
    """Builds (or reuses) the ``thrust_host`` back end too and returns ``torch.ops.pyengine_emu``."""
    ops = emulated_ops()  # the schemas
    thrust = thrust_include()
    if thrust is None:
        raise RuntimeError(backend_missing("thrust_host"))
    _load(_thrust_backend(thrust))
    return ops


BACKENDS = {"simt": emulated_ops, "thrust_host": thrust_host_ops}
