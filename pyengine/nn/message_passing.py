"""Message-passing block (MeshGraphNet / RIGNO style) over a CSR graph."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops import gno_integral, row_index, segment_reduce
from .mlp import ACTIVATIONS, mlp


class MessagePassing(nn.Module):
    """One processor step: edge update, aggregation, node update, both residual.

    For every edge ``e = (i, j)`` of a CSR graph (row ``i`` receives from ``j = col[e]``)::

        e'_ij = e_ij + edge_mlp(cat([h_i, h_j, e_ij]))
        a_i   = reduce_{e in row i} e'_ij                  (sum or mean)
        h'_i  = h_i + node_mlp(cat([h_i, a_i]))

    Args:
        node_dim: width of the node features ``h``.
        edge_dim: width of the edge features ``e``.
        hidden: width of the hidden layers of both MLPs.
        num_hidden_layers: hidden layers per MLP (>= 1).
        reduction: ``"sum"`` or ``"mean"`` (empty rows aggregate to 0).
        activation: ``"gelu"``, ``"relu"``, ``"silu"`` or ``"tanh"``.

    Without edge features (``edge_dim=0``) the block is node-only: messages
    ``m_ij = edge_mlp(cat([h_i, h_j]))`` of width ``hidden`` are aggregated and fed to
    the node MLP, and ``forward`` returns ``(h', None)``.

    Implementation:

    * ``edge_dim=0`` (and ``fused=True``, the default): fused. The edge MLP and the
      aggregation run in one :func:`pyengine.ops.gno_integral` call (transform
      ``"linear_kernelonly"`` with the node features as both "coordinates"), so no
      ``E x hidden`` tensor is ever stored, forward or backward. Needs float32/float64
      and ``num_hidden_layers <= 3`` (a ``ValueError`` says so otherwise).
    * ``edge_dim > 0`` or ``fused=False``: not fused. With edge features the edge
      state ``e'`` is itself an ``E x edge_dim`` output, so per-edge tensors exist
      regardless; what is avoided is the ``E x (2 node_dim + edge_dim)``
      concatenation: the first edge Linear is split into its ``h_i``, ``h_j`` and
      ``e`` blocks, the node blocks are applied once per node and gathered per edge.
      Aggregation uses :func:`pyengine.ops.segment_reduce`.

    Attributes:
        edge_mlp, node_mlp: ``torch.nn.Sequential`` of Linear and activation modules,
            inputs ``cat([h_i, h_j, e_ij])`` and ``cat([h_i, a_i])``.
    """

    def __init__(
        self,
        node_dim: int,
        edge_dim: int,
        hidden: int = 64,
        num_hidden_layers: int = 1,
        reduction: str = "sum",
        activation: str = "gelu",
        fused: bool = True,
    ):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
        if min(node_dim, hidden, num_hidden_layers) < 1 or edge_dim < 0:
            raise ValueError("node_dim, hidden and num_hidden_layers must be >= 1 and edge_dim >= 0")
        if edge_dim == 0 and fused and num_hidden_layers > 3:
            raise ValueError("the fused node-only message passing supports num_hidden_layers <= 3; pass fused=False")
        self.node_dim, self.edge_dim, self.reduction = int(node_dim), int(edge_dim), reduction
        self.activation, self.fused = activation, bool(fused)
        inner = [hidden] * num_hidden_layers
        message_dim = edge_dim if edge_dim > 0 else hidden
        self.edge_mlp = mlp([2 * node_dim + edge_dim, *inner, message_dim], activation)
        self.node_mlp = mlp([node_dim + message_dim, *inner, node_dim], activation)

    def forward(self, h: Tensor, row_ptr: Tensor, col: Tensor, e: Tensor | None = None,
                edge_weights: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Args:
            h: ``(M, node_dim)`` node features (rows and columns index the same nodes).
            row_ptr: ``(M + 1,)`` int64 CSR row pointer; col: ``(E,)`` int64/int32 in ``[0, M)``.
            e: ``(E, edge_dim)`` edge features, in CSR edge order (``None`` when ``edge_dim=0``).
            edge_weights: optional ``(E,)`` weights; the aggregation is then ``sum_e w_e e'_e``
                whatever ``reduction`` says (pass per-row normalised quadrature weights for a
                quadrature-weighted mean).

        Returns:
            ``(h', e')`` of shapes ``(M, node_dim)`` and ``(E, edge_dim)`` (``e'`` is None when ``edge_dim=0``).
        """
        self._check(h, row_ptr, col, e)
        if edge_weights is not None and edge_weights.shape != col.shape:
            raise ValueError(f"edge_weights must have shape ({col.shape[0]},), got {tuple(edge_weights.shape)}")
        if self.edge_dim == 0:
            return self._forward_node_only(h, row_ptr, col, edge_weights), None
        M, E = h.shape[0], col.shape[0]
        rows = row_index(row_ptr, E)
        first = self.edge_mlp[0]
        n = self.node_dim
        w_i, w_j, w_e = first.weight[:, :n], first.weight[:, n : 2 * n], first.weight[:, 2 * n :]
        # Node blocks once per node, then one gather per edge.
        pre = torch.nn.functional.linear(e, w_e, first.bias)
        pre = pre + (h @ w_i.t()).index_select(0, rows) + (h @ w_j.t()).index_select(0, col.long())
        e_new = e + self.edge_mlp[1:](pre)
        if edge_weights is None:
            agg = segment_reduce(e_new, row_ptr, self.reduction)
        else:
            agg = segment_reduce(e_new * edge_weights.to(e_new.dtype).unsqueeze(1), row_ptr, "sum")
        h_new = h + self.node_mlp(torch.cat([h, agg], dim=1))
        return h_new, e_new

    def _forward_node_only(self, h, row_ptr, col, edge_weights=None):
        linears = list(self.edge_mlp)[0::2]
        reduction = self.reduction if edge_weights is None else "sum"
        if self.fused:
            agg = gno_integral(h, h, row_ptr, col, None, None, [m.weight for m in linears], [m.bias for m in linears],
                               self.activation, "linear_kernelonly", reduction, edge_weights=edge_weights)  # fmt: skip
        else:
            rows = row_index(row_ptr, col.shape[0])
            msg = self.edge_mlp(torch.cat([h.index_select(0, rows), h.index_select(0, col.long())], dim=1))
            if edge_weights is not None:
                msg = msg * edge_weights.to(msg.dtype).unsqueeze(1)
            agg = segment_reduce(msg, row_ptr, reduction)
        return h + self.node_mlp(torch.cat([h, agg], dim=1))

    def _check(self, h, row_ptr, col, e):
        if self.edge_dim == 0:
            if e is not None:
                raise ValueError("this block has edge_dim=0 (no edge features); pass e=None")
            e = h.new_empty((col.shape[0] if isinstance(col, Tensor) and col.dim() == 1 else 0, 0))
        for name, t in (("h", h), ("row_ptr", row_ptr), ("col", col), ("e", e)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if h.dim() != 2 or h.shape[1] != self.node_dim:
            raise ValueError(f"h must have shape (M, {self.node_dim}), got {tuple(h.shape)}")
        if row_ptr.dim() != 1 or row_ptr.shape[0] != h.shape[0] + 1:
            raise ValueError(f"row_ptr must have shape ({h.shape[0] + 1},) (one row per node + 1), got {tuple(row_ptr.shape)}")
        if col.dim() != 1:
            raise ValueError(f"col must be 1-D, got shape {tuple(col.shape)}")
        if e.dim() != 2 or e.shape != (col.shape[0], self.edge_dim):
            raise ValueError(f"e must have shape (E={col.shape[0]}, {self.edge_dim}), got {tuple(e.shape)}")
        if col.dtype not in (torch.int32, torch.int64) or row_ptr.dtype != torch.int64:
            raise TypeError(f"row_ptr must be int64 and col int64/int32, got {row_ptr.dtype} and {col.dtype}")
        if col.numel():
            lo, hi = torch.aminmax(col)
            if int(lo) < 0 or int(hi) >= h.shape[0]:
                raise ValueError(f"col has entries outside [0, {h.shape[0]}) (the number of nodes)")
        if int(row_ptr[0]) != 0 or int(row_ptr[-1]) != col.shape[0]:
            raise ValueError(f"row_ptr must start at 0 and end at the number of edges ({col.shape[0]})")
        if bool((row_ptr[1:] < row_ptr[:-1]).any()):
            raise ValueError("row_ptr must be non-decreasing (a CSR row pointer sorted by row)")
