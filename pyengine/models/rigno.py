"""RIGNO: region-interaction graph neural operator.

    physical nodes --encoder MP--> regional nodes --multiscale MP processor--> --decoder MP--> queries

* Regional nodes are a seeded random subsample (``regional_ratio``) of the
  physical points. Each regional node's support radius follows the local
  sampling density: ``radius_factor`` times the distance to its
  ``density_k``-th nearest regional neighbor, so dense fillets get small
  regions and flat panels large ones.
* Encoder: each regional node receives messages from the physical points in
  its support; processor: message passing on the regional graph at several
  radius scales (edges of all scales in one graph, the scale as an edge
  feature); decoder: each query receives from the regional nodes whose support
  covers it (its own density radius from the ``density_k`` nearest).
* Edge features are relative positions and distances, scaled by the radius.

The bipartite steps reuse :class:`pyengine.nn.MessagePassing` on the union of
the two node sets (receivers first), so one fused-aggregation block serves all
three stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..geometry import regional_mesh
from ..nn import MessagePassing
from ..nn.transformer import sinusoidal_embedding
from ..ops import index_to_row_ptr, knn, radius_search, row_index
from ._box import points_box
from .base import OperatorModel
from ..nn.mlp import mlp
from .registry import register

__all__ = ["RIGNO", "RIGNOConfig"]


@dataclass
class RIGNOConfig:
    """RIGNO settings.

    Attributes:
        hidden: node width; edge_dim: edge feature width.
        regional_ratio: fraction of physical points kept as regional nodes.
        density_k: neighbor rank that measures the local spacing of regional nodes.
        radius_factor: support radius = radius_factor * local spacing.
        processor_scales: multiples of the support radius for the processor graph.
        processor_steps: message-passing steps on the regional graph.
        max_neighbors: neighbor cap (nearest kept) of the wider processor scales and the decoder graph.
        seed: seeds the regional subsample (fixed per geometry).
        time_conditioned: add a time/lead-time embedding to the regional nodes.
    """

    hidden: int = 64
    edge_dim: int = 32
    regional_ratio: float = 0.25
    density_k: int = 6
    radius_factor: float = 1.5
    processor_scales: tuple[float, ...] = (1.0, 2.0)
    processor_steps: int = 4
    max_neighbors: int | None = 48
    seed: int = 0
    time_conditioned: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.regional_ratio <= 1:
            raise ValueError(f"regional_ratio must be in (0, 1], got {self.regional_ratio}")
        if self.density_k < 1 or not self.radius_factor > 0 or not self.processor_scales:
            raise ValueError("density_k >= 1, radius_factor > 0 and at least one processor scale are required")


def _union_edges(row_ptr: Tensor, col: Tensor, n_receivers: int, n_senders: int, shift: int) -> tuple[Tensor, Tensor]:
    """Receivers' CSR extended with empty rows for the senders, columns shifted to the sender block."""
    pad = row_ptr[-1].expand(n_senders)
    return torch.cat([row_ptr, pad]), col + shift


def _edge_features(recv: Tensor, send: Tensor, row_ptr: Tensor, col: Tensor, radius: Tensor,
                   extra: Tensor | None = None) -> Tensor:
    """``[(send - recv) / r, |send - recv| / r(, extra)]`` per CSR edge; ``radius`` per receiver."""
    rows = row_index(row_ptr, col.shape[0])
    rel = (send[col] - recv[rows]) / radius[rows, None]
    parts = [rel, rel.norm(dim=1, keepdim=True)]
    if extra is not None:
        parts.append(extra)
    return torch.cat(parts, dim=1)


@register("rigno", RIGNOConfig)
class RIGNO(OperatorModel):
    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: RIGNOConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        n_edge_in = coord_dim + 1
        self.lift = mlp([in_channels + coord_dim, c.hidden, c.hidden])
        self.node_embed = mlp([coord_dim, c.hidden, c.hidden])
        self.enc_edges = mlp([n_edge_in, c.edge_dim, c.edge_dim])
        self.proc_edges = mlp([n_edge_in + len(c.processor_scales), c.edge_dim, c.edge_dim])
        self.dec_edges = mlp([n_edge_in, c.edge_dim, c.edge_dim])
        self.encoder = MessagePassing(c.hidden, c.edge_dim, c.hidden, reduction="mean")
        self.processor = nn.ModuleList(MessagePassing(c.hidden, c.edge_dim, c.hidden, reduction="mean")
                                       for _ in range(c.processor_steps))
        self.decoder = MessagePassing(c.hidden, c.edge_dim, c.hidden, reduction="mean")
        self.project = mlp([c.hidden, c.hidden, out_channels])
        self.time_embed = mlp([64, c.hidden, c.hidden]) if c.time_conditioned else None

    def _regional(self, points: Tensor):
        """Regional subsample, its density radii, encoder and processor graphs (cached per geometry)."""
        c = self.config

        def compute():
            mesh = regional_mesh(points, c.regional_ratio, seed=c.seed, k=c.density_k, factor=c.radius_factor)
            # a node with more than density_k coincident neighbours gets radius 0; its edge features
            # divide by the radius, so floor it far below any real spacing
            lo, hi = points_box(points)
            r_reg = mesh.radius.clamp_min(1e-6 * float((hi - lo).max()))
            graphs = [mesh.edges if s == 1.0 else
                      radius_search(mesh.nodes, mesh.nodes, s * r_reg, max_neighbors=c.max_neighbors)
                      for s in c.processor_scales]
            return mesh.index, r_reg, mesh.encoder, _merge_scales(graphs, mesh.num_nodes)

        return self.graphs.get("rigno-regional", (points,), (c.regional_ratio, c.density_k, c.radius_factor,
                                                             c.processor_scales, c.max_neighbors, c.seed), compute)

    def _decoder_graph(self, regional: Tensor, queries: Tensor):
        c = self.config

        def compute():
            k = min(c.density_k, regional.shape[0])
            r_q = c.radius_factor * knn(regional, queries, k)[0][:, -1].clamp_min(1e-12)
            return r_q, radius_search(regional, queries, r_q, max_neighbors=c.max_neighbors)

        return self.graphs.get("rigno-decoder", (regional, queries), (c.density_k, c.radius_factor, c.max_neighbors),
                               compute)

    def encode(self, points: Tensor, features: Tensor, time=None, lead_time=None):
        # the unit box of the points: node embeddings see scale-free coordinates
        c = self.config
        if points.shape[0] < c.density_k + 1:
            raise ValueError(f"RIGNO needs at least density_k + 1 = {c.density_k + 1} input points, got "
                             f"{points.shape[0]}; lower density_k for smaller point sets")
        reg_idx, r_reg, (e_ptr, e_col), (p_ptr, p_col, p_scale) = self._regional(points)
        lo, hi = points_box(points)  # zero-extent axes (plates, lines) widened: no 0/0 below
        unit = lambda p: 2 * (p - lo) / (hi - lo) - 1  # noqa: E731
        regional = points[reg_idx]
        n_reg, n = regional.shape[0], points.shape[0]
        h_phys = self.lift(torch.cat([features, unit(points)], dim=1))
        h_reg = self.node_embed(unit(regional))
        if self.time_embed is not None:
            if time is None or lead_time is None:
                raise ValueError("this RIGNO is time-conditioned: pass time= and lead_time=")
            t = torch.tensor([float(time), float(lead_time)], dtype=h_reg.dtype, device=h_reg.device)
            h_reg = h_reg + self.time_embed(sinusoidal_embedding(t * 1000, 32).reshape(1, 64))
        elif time is not None or lead_time is not None:
            raise ValueError("time/lead_time given to a RIGNO built with time_conditioned=False")
        # encoder: regional nodes (receivers) and physical nodes (senders) in one graph
        e = self.enc_edges(_edge_features(regional, points, e_ptr, e_col, r_reg))
        rp, col = _union_edges(e_ptr, e_col, n_reg, n, n_reg)
        h = self.encoder(torch.cat([h_reg, h_phys]), rp, col, e)[0][:n_reg]
        # processor: multiscale regional graph, edge state carried through the steps
        onehot = torch.nn.functional.one_hot(p_scale, len(c.processor_scales)).to(h.dtype)
        e = self.proc_edges(_edge_features(regional, regional, p_ptr, p_col, r_reg, onehot))
        for step in self.processor:
            h, e = step(h, p_ptr, p_col, e)
        return regional, h, lo, hi

    def decode(self, state, queries: Tensor) -> Tensor:
        regional, h, lo, hi = state
        r_q, (d_ptr, d_col) = self._decoder_graph(regional, queries)
        unit = lambda p: 2 * (p - lo) / (hi - lo) - 1  # noqa: E731
        m, n_reg = queries.shape[0], regional.shape[0]
        e = self.dec_edges(_edge_features(queries, regional, d_ptr, d_col, r_q))
        rp, col = _union_edges(d_ptr, d_col, m, n_reg, m)
        hq = self.decoder(torch.cat([self.node_embed(unit(queries)), h]), rp, col, e)[0][:m]
        return self.project(hq)


def _merge_scales(graphs: list[tuple[Tensor, Tensor]], n_rows: int) -> tuple[Tensor, Tensor, Tensor]:
    """One CSR holding the edges of every scale (row-sorted), with each edge's scale index.

    An edge present at several scales is kept once per scale, so the scale
    feature tells the model which rings a neighbor lies in.
    """
    rows, cols, scales = [], [], []
    for s, (row_ptr, col) in enumerate(graphs):
        rows.append(row_index(row_ptr, col.shape[0]))
        cols.append(col)
        scales.append(torch.full_like(col, s))
    row, col, scale = torch.cat(rows), torch.cat(cols), torch.cat(scales)
    order = torch.argsort(row * len(graphs) + scale, stable=True)
    row, col, scale = row[order], col[order], scale[order]
    return index_to_row_ptr(row, n_rows), col, scale
