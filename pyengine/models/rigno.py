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
from ..nn.transformer import AdaptiveLayerNorm, sinusoidal_embedding
from ..ops import index_to_row_ptr, knn, radius_search, row_index
from ._box import points_box
from ._quadrature import default_weights, mean_edge_weights, quadrature_graph
from .base import OperatorModel
from ..nn.mlp import mlp
from .registry import register

__all__ = ["RIGNO", "RIGNOConfig"]


@dataclass
class RIGNOConfig:
    """RIGNO settings, and where pyengine's RIGNO follows or departs from the paper.

    Paper: Mousavi et al., "RIGNO: A Graph-based framework for robust and accurate operator
    learning for PDEs on arbitrary domains" (2025).

    ======================  ==============================================  ===========================================
    part                    paper                                           pyengine
    ======================  ==============================================  ===========================================
    regional nodes          a random subsample of the physical nodes        follows (seeded per geometry,
                                                                            ``regional_ratio``)
    support radii           from a Delaunay triangulation of the regional   ``support="delaunay"`` follows
                            nodes: the longest edge at each node, times     (``radius_factor`` = the overlap factor);
                            an overlap factor                               ``"knn"`` (default) uses the distance to
                                                                            the ``density_k``-th nearest regional node,
                                                                            cheaper and defined for any point count
    multi-scale regional    a hierarchy of coarser subsamples; edges of     departs: all scales on the same node set,
    edges                   every level, so information travels far in      radii ``processor_scales`` x the support
                            few steps                                       radius, merged in one graph with the scale
                                                                            as an edge feature (the hierarchy is not
                                                                            implemented)
    processor depth         deep (of the order of 18 message-passing        ``processor_steps`` (default 4, sized for
                            steps)                                          the 2-core demo); set 18 for the paper's
    edge masking            random edges of the regional graph dropped      ``edge_drop``: the fraction of processor
                            during training (regularisation)                edges dropped per training step (default
                                                                            0: off)
    time conditioning       lead time through conditional normalisation    ``time_conditioning="embedding"`` (default)
                            of the MLPs; time as an input                   departs: a sinusoidal embedding of time
                                                                            and lead time added to the regional nodes;
                                                                            ``"norm"`` follows: time is an input
                                                                            feature and each processor step ends in a
                                                                            LayerNorm whose scale and shift are linear
                                                                            in the lead time (identity at init)
    ======================  ==============================================  ===========================================

    Attributes:
        hidden: node width; edge_dim: edge feature width.
        regional_ratio: fraction of physical points kept as regional nodes.
        support: ``"knn"`` or ``"delaunay"`` (see the table).
        density_k: neighbor rank that measures the local spacing of regional nodes (``"knn"``).
        radius_factor: support radius = radius_factor * local spacing (Delaunay: longest edge).
        processor_scales: multiples of the support radius for the processor graph.
        processor_steps: message-passing steps on the regional graph.
        edge_drop: fraction of processor edges dropped at random in each training forward.
        max_neighbors: neighbor cap (nearest kept) of the wider processor scales and the decoder graph.
        seed: seeds the regional subsample (fixed per geometry).
        time_conditioned: the model takes ``time`` and ``lead_time`` (see ``time_conditioning``).
        time_conditioning: how a time-conditioned RIGNO uses them: ``"embedding"`` (a sinusoidal
            embedding of both added to the regional nodes) or ``"norm"`` (the paper's: ``time``
            appended to the input features, the lead time through conditional normalisation,
            ``LN(h) (1 + a tau) + b tau``, after the encoder and every processor step).
        quadrature: discretization-convergent RIGNO (issue 17; not in the paper). The regional
            nodes are no longer a fraction of the points (their number and positions would follow
            the mesh) but one point per cell of a grid of ``regional_cell`` times the largest
            extent (the point nearest the cell centre), so they converge to fixed positions under
            refinement; their support radii follow from those nodes; the encoder's mean over the
            physical points in a support becomes the quadrature-weighted mean (``w``: the
            points' weights from ``forward(..., weights=)`` or k-nearest-neighbour density
            estimates), with ``max_neighbors`` thinning over-full supports to a spatially uniform
            subset of the same weight. Processor and decoder act on the regional nodes only.
            False: the default (and older checkpoints).
        regional_cell: with ``quadrature``, the regional grid's cell size as a fraction of the
            points' largest bounding-box extent.
    """

    hidden: int = 64
    edge_dim: int = 32
    regional_ratio: float = 0.25
    support: str = "knn"
    density_k: int = 6
    radius_factor: float = 1.5
    processor_scales: tuple[float, ...] = (1.0, 2.0)
    processor_steps: int = 4
    edge_drop: float = 0.0
    max_neighbors: int | None = 48
    seed: int = 0
    time_conditioned: bool = False
    quadrature: bool = False
    regional_cell: float = 0.06
    time_conditioning: str = "embedding"

    def __post_init__(self) -> None:
        if not 0 < self.regional_ratio <= 1:
            raise ValueError(f"regional_ratio must be in (0, 1], got {self.regional_ratio}")
        if self.density_k < 1 or not self.radius_factor > 0 or not self.processor_scales:
            raise ValueError("density_k >= 1, radius_factor > 0 and at least one processor scale are required")
        if self.support not in ("knn", "delaunay"):
            raise ValueError(f"support must be 'knn' or 'delaunay', got {self.support!r}")
        if not 0 < self.regional_cell <= 1:
            raise ValueError(f"regional_cell must be in (0, 1], got {self.regional_cell}")
        if not 0 <= self.edge_drop < 1:
            raise ValueError(f"edge_drop must be in [0, 1), got {self.edge_drop}")
        if self.time_conditioning not in ("embedding", "norm"):
            raise ValueError(f"time_conditioning must be 'embedding' or 'norm', got {self.time_conditioning!r}")


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
        norm_cond = c.time_conditioned and c.time_conditioning == "norm"
        self.lift = mlp([in_channels + coord_dim + int(norm_cond), c.hidden, c.hidden])
        self.node_embed = mlp([coord_dim, c.hidden, c.hidden])
        self.enc_edges = mlp([n_edge_in, c.edge_dim, c.edge_dim])
        self.proc_edges = mlp([n_edge_in + len(c.processor_scales), c.edge_dim, c.edge_dim])
        self.dec_edges = mlp([n_edge_in, c.edge_dim, c.edge_dim])
        self.encoder = MessagePassing(c.hidden, c.edge_dim, c.hidden, reduction="mean")
        self.processor = nn.ModuleList(MessagePassing(c.hidden, c.edge_dim, c.hidden, reduction="mean")
                                       for _ in range(c.processor_steps))
        self.decoder = MessagePassing(c.hidden, c.edge_dim, c.hidden, reduction="mean")
        self.project = mlp([c.hidden, c.hidden, out_channels])
        self.time_embed = mlp([64, c.hidden, c.hidden]) if c.time_conditioned and not norm_cond else None
        # the paper's conditional normalisation on the lead time: after the encoder and each processor step
        self.cond_norms = (nn.ModuleList(AdaptiveLayerNorm(c.hidden, 1) for _ in range(c.processor_steps + 1))
                           if norm_cond else None)

    def _regional(self, points: Tensor, weights: Tensor | None = None):
        """Regional subsample, its density radii, encoder and processor graphs (cached per geometry).

        The encoder graph is ``(row_ptr, col)``, or ``(row_ptr, col, edge_weights)`` with quadrature."""
        c = self.config
        if c.quadrature:
            return self.graphs.get("rigno-regional-quadrature", (points, weights),
                                   (c.regional_cell, c.support, c.density_k, c.radius_factor, c.processor_scales,
                                    c.max_neighbors), lambda: self._regional_quadrature(points, weights))

        def compute():
            mesh = regional_mesh(points, c.regional_ratio, seed=c.seed, k=c.density_k, factor=c.radius_factor)
            # a node with more than density_k coincident neighbours gets radius 0; its edge features
            # divide by the radius, so floor it far below any real spacing
            lo, hi = points_box(points)
            floor = 1e-6 * float((hi - lo).max())
            r_reg, encoder, first = mesh.radius.clamp_min(floor), mesh.encoder, mesh.edges
            if c.support == "delaunay":
                r_reg = (c.radius_factor * _delaunay_radius(mesh.nodes)).clamp_min(floor)
                encoder = radius_search(points, mesh.nodes, r_reg)
                first = radius_search(mesh.nodes, mesh.nodes, r_reg)
            graphs = [first if s == 1.0 else
                      radius_search(mesh.nodes, mesh.nodes, s * r_reg, max_neighbors=c.max_neighbors)
                      for s in c.processor_scales]
            return mesh.index, r_reg, encoder, _merge_scales(graphs, mesh.num_nodes)

        return self.graphs.get("rigno-regional", (points,), (c.regional_ratio, c.support, c.density_k,
                                                             c.radius_factor, c.processor_scales, c.max_neighbors,
                                                             c.seed), compute)

    @torch.no_grad()
    def _regional_quadrature(self, points: Tensor, weights: Tensor):
        """Grid-cell regional nodes, their radii, the weighted encoder graph and the processor graph."""
        c = self.config
        lo, hi = points_box(points)
        extent = float((hi - lo).max())
        index = _cell_representatives(points, c.regional_cell * extent)
        if index.numel() < c.density_k + 1:  # a tiny geometry: fall back to the densest grid that works
            index = _cell_representatives(points, extent / max(points.shape[0], 1))
        nodes = points[index]
        floor = 1e-6 * extent
        k = min(c.density_k, nodes.shape[0] - 1)
        if c.support == "delaunay":
            r_reg = (c.radius_factor * _delaunay_radius(nodes)).clamp_min(floor)
        else:
            r_reg = (c.radius_factor * knn(nodes, nodes, k + 1)[0][:, -1]).clamp_min(floor)
        rp, col, ew = quadrature_graph(points, nodes, r_reg, weights, c.max_neighbors)
        encoder = (rp, col, mean_edge_weights(rp, ew))
        graphs = [radius_search(nodes, nodes, s * r_reg, max_neighbors=None if s == 1.0 else c.max_neighbors)
                  for s in c.processor_scales]
        return index, r_reg, encoder, _merge_scales(graphs, nodes.shape[0])

    def _decoder_graph(self, regional: Tensor, queries: Tensor):
        c = self.config

        def compute():
            k = min(c.density_k, regional.shape[0])
            r_q = c.radius_factor * knn(regional, queries, k)[0][:, -1].clamp_min(1e-12)
            return r_q, radius_search(regional, queries, r_q, max_neighbors=c.max_neighbors)

        return self.graphs.get("rigno-decoder", (regional, queries), (c.density_k, c.radius_factor, c.max_neighbors),
                               compute)

    def encode(self, points: Tensor, features: Tensor, time=None, lead_time=None, weights: Tensor | None = None):
        # the unit box of the points: node embeddings see scale-free coordinates
        c = self.config
        if points.shape[0] < c.density_k + 1:
            raise ValueError(f"RIGNO needs at least density_k + 1 = {c.density_k + 1} input points, got "
                             f"{points.shape[0]}; lower density_k for smaller point sets")
        if c.quadrature and weights is None:
            weights = self.graphs.get("density-weights", (points,), (), lambda: default_weights(points))
        reg_idx, r_reg, enc_graph, (p_ptr, p_col, p_scale) = self._regional(points, weights)
        e_ptr, e_col = enc_graph[0], enc_graph[1]
        e_w = enc_graph[2] if len(enc_graph) > 2 else None
        lo, hi = points_box(points)  # zero-extent axes (plates, lines) widened: no 0/0 below
        unit = lambda p: 2 * (p - lo) / (hi - lo) - 1  # noqa: E731
        regional = points[reg_idx]
        n_reg, n = regional.shape[0], points.shape[0]
        tau = None
        if self.cond_norms is not None:
            if time is None or lead_time is None:
                raise ValueError("this RIGNO is time-conditioned: pass time= and lead_time=")
            features = torch.cat([features, features.new_full((n, 1), float(time))], dim=1)
            tau = features.new_full((1, 1), float(lead_time))
        h_phys = self.lift(torch.cat([features, unit(points)], dim=1))
        h_reg = self.node_embed(unit(regional))
        if self.time_embed is not None:
            if time is None or lead_time is None:
                raise ValueError("this RIGNO is time-conditioned: pass time= and lead_time=")
            t = torch.tensor([float(time), float(lead_time)], dtype=h_reg.dtype, device=h_reg.device)
            h_reg = h_reg + self.time_embed(sinusoidal_embedding(t * 1000, 32).reshape(1, 64))
        elif tau is None and (time is not None or lead_time is not None):
            raise ValueError("time/lead_time given to a RIGNO built with time_conditioned=False")
        # encoder: regional nodes (receivers) and physical nodes (senders) in one graph
        e = self.enc_edges(_edge_features(regional, points, e_ptr, e_col, r_reg))
        rp, col = _union_edges(e_ptr, e_col, n_reg, n, n_reg)
        h = self.encoder(torch.cat([h_reg, h_phys]), rp, col, e, edge_weights=e_w)[0][:n_reg]
        # processor: multiscale regional graph, edge state carried through the steps
        if self.training and c.edge_drop > 0:  # edge masking: a fresh random subset of edges each step
            keep = torch.rand(p_col.shape[0], device=p_col.device) >= c.edge_drop
            rows = row_index(p_ptr, p_col.shape[0])[keep]
            p_ptr, p_col, p_scale = index_to_row_ptr(rows, n_reg), p_col[keep], p_scale[keep]
        onehot = torch.nn.functional.one_hot(p_scale, len(c.processor_scales)).to(h.dtype)
        e = self.proc_edges(_edge_features(regional, regional, p_ptr, p_col, r_reg, onehot))
        if tau is not None:
            h = self.cond_norms[0](h.unsqueeze(0), tau).squeeze(0)
        for k, step in enumerate(self.processor):
            h, e = step(h, p_ptr, p_col, e)
            if tau is not None:
                h = self.cond_norms[k + 1](h.unsqueeze(0), tau).squeeze(0)
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


def _cell_representatives(points: Tensor, cell: float) -> Tensor:
    """Sorted indices of one point per occupied cell of a grid of size ``cell`` (the point nearest
    the cell centre, lowest index on ties): a subsample whose positions converge under refinement."""
    lo = points.min(0).values
    cells = torch.floor((points - lo) / cell).long()
    n_ax = int(cells.max()) + 1
    key = cells[:, 0]
    for a in range(1, cells.shape[1]):
        key = key * n_ax + cells[:, a]
    dist = (points - (lo + (cells.to(points.dtype) + 0.5) * cell)).norm(dim=1)
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(key[order], stable=True)]
    k = key[order]
    first = torch.ones_like(k, dtype=torch.bool)
    first[1:] = k[1:] != k[:-1]
    return order[first].sort().values


def _delaunay_radius(nodes: Tensor) -> Tensor:
    """Per node, the longest edge of the Delaunay triangulation of ``nodes`` that touches it.

    Degenerate sets (fewer than d + 2 nodes, or all on a line / plane) have no full-dimensional
    triangulation; their nodes fall back to the distance to the farthest of their 2 nearest nodes.
    """
    import numpy as np
    from scipy.spatial import Delaunay, QhullError

    pts = nodes.detach().cpu().double().numpy()
    n, d = pts.shape
    radius = np.zeros(n)
    try:
        if n < d + 2:
            raise QhullError("too few nodes")
        simplices = Delaunay(pts).simplices
        for a in range(d + 1):
            for b in range(a + 1, d + 1):
                i, j = simplices[:, a], simplices[:, b]
                length = np.linalg.norm(pts[i] - pts[j], axis=1)
                np.maximum.at(radius, i, length)
                np.maximum.at(radius, j, length)
    except QhullError:
        pass
    out = torch.as_tensor(radius, dtype=nodes.dtype, device=nodes.device)
    missing = out <= 0
    if bool(missing.any()) and n > 1:
        dist = knn(nodes, nodes[missing], min(3, n))[0][:, -1]
        out[missing] = dist
    return out.clamp_min(1e-12)


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
