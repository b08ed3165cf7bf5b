"""Constants and helpers shared by the segment op tests.

Used by tests/segment/test_segment.py (CPU kernels against float64 numpy references) and
tests/segment/test_segment_cuda.py (CUDA kernels against the CPU kernels). A plain module, not
a test file: tests/ has no __init__.py, so pytest's default ("prepend") import mode puts
tests/ on sys.path and the test files import it as ``from segment_helpers import ...``.
"""

from __future__ import annotations

import numpy as np
import torch

FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
REDUCES = ["sum", "mean", "max", "min"]
INDEX_DTYPES = [torch.int64, torch.int32]
# Safety factor of the summation error model. Observed: <= 3 for zero-mean terms, ~25 when
# thousands of identical terms are added (spmm without values into a hub column), where
# rounding errors are correlated; float64 runs of the same tests catch logic errors.
K_SUM = 128


def dtype_id(x):
    """Test id of a dtype parameter: ``float32`` for ``torch.float32``."""
    return str(x).replace("torch.", "")


def heads_id(heads):
    """Test id of a softmax heads parameter: ``1d`` for 1-D scores (heads None), else the head count."""
    return "1d" if heads is None else str(heads)


# Small and medium CSR layouts (keyword arguments of the make_csr fixture) that both test
# files use; each adds the huge layouts that exercise its own engine's long-row path.
COMMON_CASES = {
    "M1": dict(M=1, max_deg=7, empty_frac=0.0),
    "37rows": dict(M=37, max_deg=9, empty_frac=0.25),
    "1000rows_30pct_empty": dict(M=1000, max_deg=12, empty_frac=0.3),
}


class Layouts:
    """A test file's named CSR layouts ``cases`` (make_csr keyword arguments), ``huge`` the huge ones."""

    def __init__(self, cases, huge):
        self.cases, self.huge = cases, huge

    def csr(self, make_csr, case):
        """(row_ptr, M, E) of the named layout."""
        row_ptr = make_csr(**self.cases[case])
        return row_ptr, row_ptr.numel() - 1, int(row_ptr[-1])

    def num_cols_for(self, case):
        """Number of columns of the random col for a layout: more for the huge ones."""
        return 97 if case in self.huge else 41

    def csr_and_col(self, make_csr, case, col_dtype):
        """(row_ptr, M, E, N, col): the named layout and its random col (random_col) into N = num_cols_for(case)."""
        row_ptr, M, E = self.csr(make_csr, case)
        N = self.num_cols_for(case)
        return row_ptr, M, E, N, random_col(E, N, col_dtype)


def random_src(shape, dtype):
    """Standard normal values drawn in float64 and rounded to dtype (on the CPU)."""
    return torch.randn(shape, dtype=torch.float64).to(dtype)


def random_col(num_edges, num_cols, dtype):
    """Random columns, every fourth edge sent to column 0 (a hub) so the transpose has a long row."""
    col = torch.randint(0, num_cols, (num_edges,))
    col[::4] = 0
    return col.to(dtype)


def random_scores(shape, dtype):
    """Softmax scores: 3 * standard normal, drawn in float64 and rounded to dtype (on the CPU)."""
    return (3 * random_src(shape, torch.float64)).to(dtype)


# --------------------------------------------------------------------------- rounding units


def acc_unit(dtype):
    """Unit roundoff of the accumulator (float64 for float64, float32 otherwise)."""
    return 2.0**-53 if dtype == torch.float64 else 2.0**-24


def out_unit(dtype):
    """Unit roundoff of the stored result."""
    return torch.finfo(dtype).eps / 2


def subnormal(dtype):
    """Spacing of the subnormal numbers of dtype: the absolute rounding error near 0."""
    return torch.finfo(dtype).tiny * torch.finfo(dtype).eps


def softmax_rel_tol(lens, dtype):
    """Relative error of exp(x - max) / sum: output rounding + exp + a sum of `lens` positive terms.

    For positive terms sqrt(sum_k S_k^2) / S_n is about sqrt(lens / 3), the summation model with
    safety factor K_SUM. ``lens`` is a numpy array or a torch tensor; the result is of the same kind.
    """
    sqrt = torch.sqrt if isinstance(lens, torch.Tensor) else np.sqrt
    return 2 * out_unit(dtype) + acc_unit(dtype) * (64 + K_SUM * sqrt(lens / 3))
