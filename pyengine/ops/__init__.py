"""Differentiable, validated wrappers over ``torch.ops.pyengine``.

One module per op family, as in ``csrc/<family>/``: ``neighbors`` (k-d tree,
radius and kNN search; ``partition``: k-d domain decomposition on top of it),
``nufft``, ``segment``, ``gno``, ``attention`` and ``local``. Importing this
package registers the fake (meta) kernels used by ``torch.compile`` and the
autograd formulas.
"""

from ._checks import input_checks, set_input_checks
from .attention import csr_attention
from .gno import gno_integral, pack_mlp
from .local import local_basis_aggregate
from .neighbors import KDTree, knn, radius_search, radius_search_multi
from .nufft import NUFFTPlan, nufft1, nufft2
from .nufft import NUFFTAccuracyWarning
from .nufft_type3 import NUFFT3Plan, nufft3
from .partition import Partition, kd_partition
from .segment import csr_transpose, index_to_row_ptr, row_index, sddmm, segment_reduce, segment_softmax, spmm
from .segment import segment_log_softmax
from .segment import index_softmax
from .bruteforce import knn_bruteforce
from .sampling import farthest_point_sampling

__all__ = [
    "KDTree",
    "NUFFTPlan",
    "NUFFT3Plan",
    "NUFFTAccuracyWarning",
    "Partition",
    "csr_attention",
    "csr_transpose",
    "gno_integral",
    "index_softmax",
    "index_to_row_ptr",
    "input_checks",
    "kd_partition",
    "knn",
    "local_basis_aggregate",
    "nufft1",
    "nufft2",
    "nufft3",
    "pack_mlp",
    "radius_search",
    "radius_search_multi",
    "row_index",
    "sddmm",
    "segment_reduce",
    "segment_softmax",
    "segment_log_softmax",
    "knn_bruteforce",
    "farthest_point_sampling",
    "set_input_checks",
    "spmm",
]
