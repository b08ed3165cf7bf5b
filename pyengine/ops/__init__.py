"""Differentiable, validated wrappers over ``torch.ops.pyengine``.

Each op family lives in its own module; importing this package registers the
fake (meta) kernels used by ``torch.compile`` and the autograd formulas.
"""

from ._checks import input_checks, set_input_checks
from .neighbors import KDTree, knn, radius_search, radius_search_multi
from .partition import Partition, kd_partition
from .nufft import NUFFTPlan, nufft1, nufft2
from .segment import csr_transpose, index_to_row_ptr, row_index, sddmm, segment_reduce, segment_softmax, spmm

__all__ = [
    "KDTree",
    "NUFFTPlan",
    "Partition",
    "csr_transpose",
    "index_to_row_ptr",
    "row_index",
    "input_checks",
    "kd_partition",
    "knn",
    "nufft1",
    "nufft2",
    "radius_search",
    "radius_search_multi",
    "sddmm",
    "segment_reduce",
    "segment_softmax",
    "set_input_checks",
    "spmm",
]

# integral (GNO): fused kernel integral
from .integral import gno_integral, pack_mlp  # noqa: E402

__all__ += ["gno_integral", "pack_mlp"]

# integral: fused CSR attention and local (DISCO-style) basis sums
from .attention import csr_attention  # noqa: E402
from .local_kernel import local_basis_aggregate  # noqa: E402

__all__ += ["csr_attention", "local_basis_aggregate"]
