"""Plain PyTorch references (gather -> compute -> scatter) for the fused attention
and local-integral ops, written independently of pyengine's kernels."""

from __future__ import annotations

import torch


def edge_rows(row_ptr: torch.Tensor) -> torch.Tensor:
    """Row index of every edge (E,)."""
    M = row_ptr.numel() - 1
    return torch.repeat_interleave(torch.arange(M, device=row_ptr.device), row_ptr.diff())


def segment_softmax_ref(s: torch.Tensor, row: torch.Tensor, M: int) -> torch.Tensor:
    """Softmax of scores s (E, H) within rows; rows of only -inf give 0."""
    E, H = s.shape
    idx = row[:, None].expand(E, H)
    m = torch.full((M, H), -torch.inf, dtype=s.dtype, device=s.device)
    m = m.scatter_reduce(0, idx, s.detach(), "amax", include_self=True)  # a constant shift: no gradient needed
    m_e = m[row]
    m_e = torch.where(torch.isfinite(m_e), m_e, torch.zeros_like(m_e))
    p = torch.exp(s - m_e)
    z = torch.zeros((M, H), dtype=s.dtype, device=s.device).index_add(0, row, p)
    z_e = z[row]
    return torch.where(z_e > 0, p / torch.where(z_e > 0, z_e, torch.ones_like(z_e)), torch.zeros_like(p))


def attention_ref(q, k, v, row_ptr, col, bias=None, scale=None):
    """out (M, H, Dv) of softmax attention over CSR rows, per-source keys/values."""
    M, H, Dk = q.shape
    scale = Dk**-0.5 if scale is None else scale
    row, col = edge_rows(row_ptr), col.long()
    s = (q[row] * k[col]).sum(-1) * scale
    if bias is not None:
        s = s + bias
    a = segment_softmax_ref(s, row, M)
    out = torch.zeros((M, H, v.shape[2]), dtype=v.dtype, device=v.device)
    return out.index_add(0, row, a.unsqueeze(-1) * v[col])


def lse_ref(q, k, row_ptr, col, bias=None, scale=None):
    """Per-row log-sum-exp of the scores (M, H); -inf for empty rows."""
    M, H, Dk = q.shape
    scale = Dk**-0.5 if scale is None else scale
    row, col = edge_rows(row_ptr), col.long()
    s = (q[row] * k[col]).sum(-1) * scale
    if bias is not None:
        s = s + bias
    out = torch.full((M, H), -torch.inf, dtype=q.dtype)
    for i in range(M):
        b, e = int(row_ptr[i]), int(row_ptr[i + 1])
        if e > b:
            out[i] = torch.logsumexp(s[b:e], 0)
    return out


def local_aggregate_ref(psi, f, row_ptr, col, weights=None):
    """a (M, B, C) = sum over each row's edges of psi[e, b] * w[col_e] * f[col_e]."""
    M = row_ptr.numel() - 1
    row, col = edge_rows(row_ptr), col.long()
    fw = f[col] if weights is None else f[col] * weights[col].unsqueeze(1)
    msg = psi.unsqueeze(2) * fw.unsqueeze(1)  # (E, B, C)
    out = torch.zeros((M, psi.shape[1], f.shape[1]), dtype=f.dtype, device=f.device)
    return out.index_add(0, row, msg)
