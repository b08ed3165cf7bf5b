"""Prediction on new geometries, in bounded memory for large meshes.

A model's latent state depends on the input points only; decoding is
independent per query. Large query sets are therefore decoded in spatially
coherent chunks (the leaves of a k-d partition, :func:`pyengine.ops.kd_partition`),
so the per-chunk neighbor graphs and activations stay small, and the result is
the same as one unchunked pass.
"""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..ops import kd_partition

__all__ = ["predict_chunked"]


@torch.no_grad()
def predict_chunked(model, points: Tensor, features: Tensor | None, queries: Tensor | None = None, *,
                    chunk_size: int = 200_000, progress: bool = False, **kwargs) -> Tensor:
    """``model(points, features, queries)`` computed chunk by chunk over the queries.

    Args:
        model: a :mod:`pyengine.models` model (eval mode recommended).
        points, features: (N, d), (N, C_in) inputs of one geometry.
        queries: (M, d) output locations (default: ``points``).
        chunk_size: most queries decoded at once (memory bound of the decoder).
        progress: show a progress bar over the chunks.
        **kwargs: conditioning passed to the encoder (``time``, ``lead_time``).

    Returns: (M, C_out), rows in the order of ``queries``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    queries = points if queries is None else queries
    state = model.latent(points, features, **kwargs)
    m = queries.shape[0]
    if m <= chunk_size:
        return model.predict_at(state, queries)
    part = kd_partition(queries, max_leaf_points=chunk_size)
    out = None
    for i in tqdm(range(part.num_leaves), desc="predict", disable=not progress):
        idx = part.leaf(i)
        if idx.numel() == 0:
            continue
        pred = model.predict_at(state, queries[idx])
        if out is None:
            out = pred.new_empty(m, pred.shape[1])
        out[idx] = pred
    return out
