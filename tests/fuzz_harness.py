"""Property-based fuzzing harness (hypothesis) shared by tests/<family>/test_<family>_fuzz.py.

Profiles (registered by tests/conftest.py): ``ci`` (the default: few, derandomized examples, so
the fuzz suite stays well under a minute on 2 cores) and ``long``
(``pytest --hypothesis-profile=long``: thousands of examples per property).

Fuzz cases reach raw C++ kernels, where a bug is a crash, not an exception. So every property
runs in a child Python process: ``run_in_subprocess(__file__, "_fuzz_x", profile)`` imports the
test module there and calls its ``_fuzz_x`` (a ``@given`` function, not collected by pytest).
A falsified property (an assertion or an unexpected exception) and a crash (SIGSEGV, SIGABRT,
a C++ exception escaping a thread) both fail the pytest test, with the child's stderr, where
the last input tried is printed before every example.

Helpers for the properties: ``magnitudes()`` (floats from 1e-30 to 1e38, both signs, zero),
``maybe_noncontiguous()`` (a strided view holding the same values), ``expect_clean_error()``.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILE_ENV = "PYENGINE_HYPOTHESIS_PROFILE"


def register_profiles() -> None:
    common = dict(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)
    settings.register_profile("ci", max_examples=40, derandomize=True, **common)
    settings.register_profile("long", max_examples=2000, **common)


def run_in_subprocess(test_file: str, func: str, profile: str, timeout: float = 600) -> None:
    """Runs ``func`` of ``test_file`` in a child process under hypothesis ``profile``; fails on any error or crash."""
    code = (
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {os.path.dirname(os.path.dirname(os.path.abspath(test_file)))!r})\n"
        "import fuzz_harness\n"
        "fuzz_harness.child_main(sys.argv[1], sys.argv[2])\n"
    )
    env = dict(os.environ, **{PROFILE_ENV: profile})
    env.setdefault("OMP_NUM_THREADS", "2")
    r = subprocess.run([sys.executable, "-c", code, os.path.abspath(test_file), func], capture_output=True,
                       text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        how = f"crashed (signal {-r.returncode})" if r.returncode < 0 else f"failed (exit {r.returncode})"
        lines = r.stderr.splitlines()
        if r.returncode > 0:  # a falsified property: hypothesis's report, without the case log of shrinking
            lines = [ln for ln in lines if not ln.startswith("case: ")]
        else:  # a crash: the last cases tried, the last one first to blame
            lines = lines[-40:]
        raise AssertionError(f"fuzz property {func} {how}; child stderr (tail):\n" + "\n".join(lines)[-8000:])


def _load_sanitized_extension(path: str) -> None:
    """Under scripts/sanitize.sh: the ASan+UBSan build of pyengine._C, in place of the installed one."""
    spec = importlib.util.spec_from_file_location("pyengine._C", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["pyengine._C"] = mod
    import pyengine

    assert pyengine._C is mod, "the sanitized extension was not picked up"


def child_main(test_file: str, func: str) -> None:
    if os.environ.get("PYENGINE_SANITIZED_EXT"):
        _load_sanitized_extension(os.environ["PYENGINE_SANITIZED_EXT"])
    register_profiles()
    settings.load_profile(os.environ.get(PROFILE_ENV, "ci"))
    torch.set_num_threads(2)
    spec = importlib.util.spec_from_file_location("_fuzz_target", test_file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    getattr(mod, func)()


def log_case(**kw) -> None:
    """One line per example on stderr, flushed first: after a crash, the last line is the input."""
    parts = []
    for k, v in kw.items():
        if isinstance(v, torch.Tensor):
            desc = f"{tuple(v.shape)} {str(v.dtype).replace('torch.', '')}"
            if not v.is_contiguous():
                desc += f" strides {v.stride()}"
            if v.numel() <= 12:
                desc += f" {v.tolist()}"
            parts.append(f"{k}={desc}")
        else:
            parts.append(f"{k}={v!r}")
    print("case: " + ", ".join(parts), file=sys.stderr, flush=True)


def magnitudes(allow_nonfinite: bool = False) -> st.SearchStrategy[float]:
    """Scale factors 0 and +-10^e for e in [-30, 38] (and inf/nan when asked)."""
    s = st.builds(lambda e, sign: sign * 10.0 ** e, st.integers(-30, 38), st.sampled_from([1.0, -1.0]))
    s = st.one_of(st.just(0.0), st.just(1.0), s)
    if allow_nonfinite:
        s = st.one_of(s, st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    return s


def random_tensor(seed: int, shape, dtype, scale: float = 1.0) -> torch.Tensor:
    """Deterministic N(0, 1) values times scale in dtype (saturating to +-inf beyond the dtype's range)."""
    g = np.random.default_rng(seed)
    x = g.standard_normal(size=tuple(shape)) * scale
    return torch.from_numpy(x).to(dtype)


def maybe_noncontiguous(t: torch.Tensor, mode: int) -> torch.Tensor:
    """mode 0: t itself; 1: a strided view (every other row of a doubled buffer); 2: a transposed copy."""
    if mode == 0 or t.dim() == 0:
        return t
    if mode == 1:
        buf = torch.empty((2 * t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype)
        buf[0::2] = t
        return buf[0::2]
    if t.dim() >= 2:
        return t.transpose(0, 1).contiguous().transpose(0, 1)
    return t


def expect_clean_error(call):
    """Runs call; returns its result, or the ValueError/TypeError it raised (any other exception fails)."""
    try:
        return call()
    except (ValueError, TypeError) as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        return e


def assert_matches(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, rtol: float | None = None) -> None:
    """got (kernel, dtype) against want (float64 reference): same NaN positions, same infinities,
    finite values within rtol of the largest finite reference magnitude. A float32 result may
    overflow to inf where the float64 reference exceeds 1e37 (float32's range ends at 3.4e38)."""
    got, want = got.double(), want.double()
    assert got.shape == want.shape, (got.shape, want.shape)
    if rtol is None:
        rtol = 1e-4 if dtype in (torch.float32, torch.complex64) else 1e-10
    nan_w, nan_g = torch.isnan(want), torch.isnan(got)
    big = want.abs() > 1e37 if dtype == torch.float32 else torch.zeros_like(nan_w)
    assert torch.equal(nan_g & ~big, nan_w & ~big), f"NaN pattern differs:\n{got}\n{want}"
    inf_w = torch.isinf(want)
    assert torch.equal(got[inf_w & ~nan_g], want[inf_w & ~nan_g]), f"infinities differ:\n{got}\n{want}"
    fin = torch.isfinite(want)
    assert bool((torch.isfinite(got) | ~fin | big).all()), f"inf/NaN where the reference is finite:\n{got}\n{want}"
    both = fin & torch.isfinite(got)
    if both.any():
        scale = want[both].abs().max()
        err = (got[both] - want[both]).abs().max()
        assert err <= rtol * scale or err == 0, f"error {float(err):.3g} vs scale {float(scale):.3g}"
