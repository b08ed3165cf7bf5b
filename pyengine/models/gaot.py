"""GAOT, the Geometry Aware Operator Transformer, as published (``build("gaot", ...)``).

    points --MAGNO encoder--> latent tokens --U-ViT processor--> tokens --MAGNO decoder--> queries

Wen et al., "Geometry Aware Operator Transformer as an Efficient and Accurate Neural
Surrogate for PDEs on Arbitrary Domains" (arXiv:2505.18781), with the semantics of
the official code (camlab-ethz/GAOT, ``src/model``); :func:`from_official` loads its
trained weights. :class:`GAOTConfig` lists each part with the paper's section.

What pyengine adds is speed, not architecture: the MAGNO integrals run in the fused
GNO kernel with the cosine-softmax weights as per-edge weights (no ``E x hidden``
tensor, backward recomputes); the scales, whose kernel MLP is shared, are integrated
in one pass over the largest ball's edges split into shells (kernel evaluated once per
edge, not once per edge and scale; see :func:`pyengine.nn.magno.nested_scales`); and
everything that depends on the geometry only (radius graphs, shells, attention weights,
geometry statistics) is computed once per geometry and cached (the reference
formulation in the tests computes them in every forward); the outputs are the same.
The faster but non-faithful variant is ``build("gaot_fast")`` (:mod:`pyengine.models.gaot_fast`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..geometry import latent_grid
from ..nn.magno import (MAGNOIntegral, StatisticalEmbedding, nested_scales, neighborhood_statistics,
                        standardize_columns)
from ..nn.mlp import mlp
from ..nn.uvit import GAOTProcessor
import torch.nn.functional as F

from ..ops import radius_search, sddmm
from ..geometry.quadrature import intrinsic_dimension
from ._quadrature import default_weights, quadrature_graph, sink_normalize, smooth_ball, window_mass
from .base import OperatorModel
from .gaot_official import from_official  # noqa: F401  (re-exported: pyengine.models.gaot.from_official)
from .registry import register

__all__ = ["GAOT", "GAOTConfig", "from_official"]

#: With quadrature on, the encoder's normalisations get this fraction of a flat ball's windowed
#: measure as extra mass (see :func:`pyengine.models._quadrature.sink_normalize`).
QUADRATURE_SINK = 0.25


@dataclass
class GAOTConfig:
    """GAOT settings; each with the paper's section (arXiv:2505.18781, v1 numbering) or the official code.

    Coordinates and tokens (paper §2, "Encoder"; official: data scaled to ``[-1, 1]``):
        padding: the token box is the geometry's bounding box padded by this fraction of its
            largest extent (or ``domain``). Coordinates are mapped so that the box is
            ``[-1, 1]^d``; the cosine attention and the scale weights see these coordinates.
        coord_scaling: ``"per_dim"`` (each axis to ``[-1, 1]``, the official default) or
            ``"global"`` (one scale for all axes, keeping aspect ratios).
        domain: fixed ``(lower, upper)`` corners of the token box instead of the padded
            bounding box; ``((-1,)*d, (1,)*d)`` runs on coordinates already in the official frame.
        grid: latent tokens per axis (official ``latent_tokens_size``), a regular grid
            ``linspace(-1, 1, n)`` per axis, row-major; each axis >= 2 and divisible by ``patch``.

    Encoder, MAGNO (paper §2, "Encoder": multiscale attentional GNO):
        hidden: token width ``C`` (official ``lifting_channels``); the input features are
            lifted to ``C`` by one linear map.
        radii_cells: the radius of each scale in token spacings (``2 / (n - 1)`` in the unit
            frame, largest over the axes). Paper: ``r_m = alpha_m r_0``; official:
            ``radius * scales``.
        encoder_kernel_hidden / decoder_kernel_hidden: hidden widths of the kernel MLP
            ``k(x, y)`` (GELU), one MLP shared by all scales of the encoder (decoder).
        transform: ``"linear"`` (``k(x, y) f(y)``, the paper's) or ``"nonlinear"`` (``k(x, y, f) f``).
        attention: ``"cosine"``: each edge weighted by a per-row softmax of the cosine
            similarity of query and source coordinates (the official ``attention_type``);
            ``"none"``: a plain mean over the ball (a GNO).
        max_neighbors: per-row cap of the radius graphs, a memory guard only (None: the
            complete balls, as the paper's integrals).

    Geometry embedding (paper §2, "Geometry embeddings", statistical variant):
        geometry_embedding / decoder_geometry_embedding: per scale, the statistics of each
            ball (count, mean and variance of the distances, centroid offset, covariance
            eigenvalues), standardised over the tokens (queries), mapped by an MLP
            (``embedding_hidden``, ReLU) to ``C``, *concatenated* with the MAGNO output
            and mapped back to ``C`` by a linear recovery layer.
        embedding_final_relu: the embedding MLP ends with a ReLU, as in the official code
            (camlab-ethz/GAOT); False for checkpoints of the separate GAOT-3D code, which drops it.
        decoder_embedding_norm: over which points the decoder's statistics are
            standardised: ``"queries"`` (the official code: the queries of the call) or
            ``"points"`` (the geometry's input points as queries; equal to the official
            when the queries are the input points, the usual case, and makes decoding in
            chunks give the same result as one pass).

    Multiscale fusion (paper §2, "Encoder": multiscale):
        scale_weights: weight the scales by a softmax of an MLP of the token (query)
            position, ``Linear(d, scale_weight_hidden) -> ReLU -> Linear(., S)``.
        scale_reduce: without scale weights, ``"sum"`` (official ``src``) or ``"mean"``.

    Processor (paper §2, "Processor"; :class:`pyengine.nn.uvit.GAOTProcessor`):
        patch: patch edge in tokens; dim: transformer width; depth: blocks;
        vit_heads / kv_heads: attention heads (grouped-query when fewer kv heads);
        ffn_multiplier: SwiGLU hidden = ``dim * ffn_multiplier``; norm_eps: RMSNorm epsilon;
        positional: ``"rope"`` or ``"absolute"``; long_range_skip: the U-shaped skips;
        attn_dropout: attention dropout while training.

    Decoder (paper §2, "Decoder": the multiscale MAGNO from tokens to any query):
        projection_hidden: the final map from ``C`` to the outputs: a GELU MLP with this
            hidden width (official ``src``: 256), or one linear layer when None.

    Time-dependent problems (paper §2, "Time-dependent problems"):
        time_conditioned: ``time`` and ``lead_time`` are appended to the input features and
            the lead time scales the processor's attention inputs and feed-forward outputs
            (``x (1 + c a(c)) + c b(c)``, the official conditional normalisation).

    Discretization convergence (issue 17; not in the paper):
        quadrature: the encoder integrates instead of averaging over points: the cosine
            softmax weights each source by its quadrature weight ``w_j`` (``alpha ~ w_j e^s``;
            the plain mean becomes ``sum w_j k f / sum w_j``), the geometry embedding's
            statistics are weighted (the count becomes the ball's measure), the decoder
            statistics are standardised with weights over the points, and ``max_neighbors``
            thins over-full balls to a spatially uniform subset carrying the same weight.
            ``w`` comes from ``forward(..., weights=)`` (vertex areas, dual volumes) or, when
            absent, from k-nearest-neighbour density estimates. Departures from the paper
            (quadrature only): every encoder ball is windowed, ``w_j psi(|y - x| / r)`` with
            ``psi(q) = (1 - q^2)^2``, and every normalisation (softmax, statistics' means) gets an
            extra sink mass (``QUADRATURE_SINK`` of a flat ball's windowed measure), so grazed
            balls fade out instead of jumping; the decoder's statistics are windowed too and
            standardised over the token grid (not the points or queries). Caps stay first-order:
            use ``max_neighbors=None`` (the paper's default) for convergence. The processor and decoder act
            on the fixed token grid, so with this option all of GAOT is
            discretization-convergent. False: the published model (and older checkpoints);
            weights passed explicitly still weight the encoder's softmax.
    """

    hidden: int = 64
    grid: tuple[int, ...] = (8, 8, 8)
    radii_cells: tuple[float, ...] = (1.0, 2.0)
    encoder_kernel_hidden: tuple[int, ...] = (64, 64, 64)
    decoder_kernel_hidden: tuple[int, ...] = (64, 64)
    transform: str = "linear"
    attention: str = "cosine"
    geometry_embedding: bool = True
    decoder_geometry_embedding: bool = True
    embedding_hidden: int = 64
    embedding_final_relu: bool = True
    decoder_embedding_norm: str = "points"
    scale_weights: bool = True
    scale_weight_hidden: int = 16
    scale_reduce: str = "sum"
    projection_hidden: int | None = 256
    dim: int = 256
    depth: int = 5
    vit_heads: int = 8
    kv_heads: int | None = None
    patch: int = 2
    ffn_multiplier: int = 4
    positional: str = "rope"
    long_range_skip: bool = True
    norm_eps: float = 1e-6
    attn_dropout: float = 0.0
    padding: float = 0.05
    coord_scaling: str = "per_dim"
    domain: tuple | None = None
    max_neighbors: int | None = None
    time_conditioned: bool = False
    quadrature: bool = False

    def __post_init__(self) -> None:
        if not self.radii_cells or min(self.radii_cells) <= 0:
            raise ValueError(f"radii_cells must be positive, got {self.radii_cells}")
        if min(self.grid) < 2:
            raise ValueError(f"grid needs at least 2 tokens per axis, got {self.grid}")
        for name, val, allowed in (("transform", self.transform, ("linear", "nonlinear")),
                                   ("attention", self.attention, ("cosine", "none")),
                                   ("scale_reduce", self.scale_reduce, ("sum", "mean")),
                                   ("positional", self.positional, ("rope", "absolute")),
                                   ("coord_scaling", self.coord_scaling, ("per_dim", "global")),
                                   ("decoder_embedding_norm", self.decoder_embedding_norm, ("points", "queries"))):
            if val not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {val!r}")
        if self.domain is not None:
            lo, hi = (tuple(float(v) for v in c) for c in self.domain)
            if len(lo) != len(self.grid) or len(hi) != len(lo) or any(b <= a for a, b in zip(lo, hi)):
                raise ValueError(f"domain must be (lower, upper) with {len(self.grid)} entries each and "
                                 f"lower < upper, got {self.domain}")
            self.domain = (lo, hi)


class _MAGNO(nn.Module):
    """One side (encoder or decoder) of MAGNO: the shared integral, geometry embedding and scale fusion.

    The kernel MLP is shared by the scales (paper and official code), so when the balls are
    nested and the weights factorise (the published model: uncapped radius graphs, cosine or
    mean weights) the scales are integrated in one fused pass over the largest ball's edges,
    split into shells (:func:`pyengine.nn.magno.nested_scales`): the same outputs, with the
    kernel evaluated once per edge instead of once per edge and scale. ``nested_scales =
    False`` integrates each scale on its own (the reference the tests compare with).
    """

    nested_scales = True

    def __init__(self, channels: int, coord_dim: int, kernel_hidden, geo: bool, c: GAOTConfig) -> None:
        super().__init__()
        self.magno = MAGNOIntegral(channels, coord_dim, hidden=kernel_hidden, transform=c.transform,
                                   attention=c.attention)
        self.geoembed = (StatisticalEmbedding(coord_dim, channels, c.embedding_hidden, c.embedding_final_relu)
                         if geo else None)
        self.recovery = nn.Linear(2 * channels, channels) if geo else None
        n = len(c.radii_cells)
        self.scale_weighting = (nn.Sequential(nn.Linear(coord_dim, c.scale_weight_hidden), nn.ReLU(),
                                              nn.Linear(c.scale_weight_hidden, n))
                                if c.scale_weights and n > 1 else None)
        self.scale_reduce = c.scale_reduce

    def forward(self, sources: Tensor, targets: Tensor, f: Tensor, graphs, alphas, stats, shells=None) -> Tensor:
        if shells is not None and self.nested_scales:
            per_scale = shells.combine(self.magno(sources, targets.repeat_interleave(len(graphs), 0), shells.row_ptr,
                                                  shells.col, f, alpha=shells.u))
        else:
            per_scale = [self.magno(sources, targets, rp, col, f, alpha=a) for (rp, col), a in zip(graphs, alphas)]
        scales = []
        for m, h in enumerate(per_scale):
            if self.geoembed is not None:
                h = self.recovery(torch.cat([h, self.geoembed(stats[m].to(h.dtype))], dim=1))
            scales.append(h)
        if len(scales) == 1:
            return scales[0]
        if self.scale_weighting is not None:
            w = torch.softmax(self.scale_weighting(targets), dim=-1)  # (M, S)
            return sum(w[:, m:m + 1] * h for m, h in enumerate(scales))
        out = sum(scales)
        return out / len(scales) if self.scale_reduce == "mean" else out


class _Encoder(_MAGNO):
    def __init__(self, in_channels: int, coord_dim: int, c: GAOTConfig) -> None:
        super().__init__(c.hidden, coord_dim, c.encoder_kernel_hidden, c.geometry_embedding, c)
        self.lifting = nn.Linear(in_channels, c.hidden)


class _Decoder(_MAGNO):
    def __init__(self, out_channels: int, coord_dim: int, c: GAOTConfig) -> None:
        super().__init__(c.hidden, coord_dim, c.decoder_kernel_hidden, c.decoder_geometry_embedding, c)
        self.projection = (mlp([c.hidden, c.projection_hidden, out_channels]) if c.projection_hidden
                           else nn.Linear(c.hidden, out_channels))


@register("gaot", GAOTConfig)
class GAOT(OperatorModel):
    """The published GAOT (see the module docstring and :class:`GAOTConfig`).

    ``forward(points (N, d), features (N, C_in), queries (M, d), weights=None)``: optional
    ``weights`` (N,) are quadrature weights of the input points (vertex areas, cell
    volumes); the encoder's attention then integrates ``w_j exp(s_ij)`` instead of
    counting points. Time-conditioned models also take ``time`` and ``lead_time``.
    """

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: GAOTConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        if len(c.grid) != coord_dim:
            raise ValueError(f"grid {c.grid} must have coord_dim={coord_dim} axes")
        if c.domain is not None and len(c.domain[0]) != coord_dim:
            raise ValueError(f"domain {c.domain} must have coord_dim={coord_dim} entries per corner")
        extra = 2 if c.time_conditioned else 0
        self.encoder = _Encoder(in_channels + extra, coord_dim, c)
        self.processor = GAOTProcessor(c.grid, c.hidden, width=c.dim, depth=c.depth, heads=c.vit_heads,
                                       kv_heads=c.kv_heads, patch=c.patch, ffn_multiplier=c.ffn_multiplier,
                                       positional=c.positional, norm_eps=c.norm_eps, dropout=c.attn_dropout,
                                       cond_dim=1 if c.time_conditioned else None)
        self.decoder = _Decoder(out_channels, coord_dim, c)

    # ------------------------------------------------------------------ geometry (cached)

    def _frame(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Centre and half-extent per axis of the token box: ``unit = (p - centre) / half``."""
        c = self.config
        if c.domain is not None:
            lo = torch.tensor(c.domain[0], dtype=points.dtype, device=points.device)
            hi = torch.tensor(c.domain[1], dtype=points.dtype, device=points.device)
        else:
            lo, hi = points.min(0).values, points.max(0).values
            margin = c.padding * (hi - lo).max()
            lo, hi = lo - margin, hi + margin
        half = (hi - lo) / 2
        if c.coord_scaling == "global":
            half = half.max().expand_as(half)
        half = torch.where(half > 0, half, torch.ones_like(half))  # one point / identical points: any scale
        return (lo + hi) / 2, half

    def _radii(self, tokens_grid) -> list[float]:
        spacing = float(tokens_grid.spacing.max())
        return [r * spacing for r in self.config.radii_cells]

    def _side(self, sources: Tensor, targets: Tensor, radii, geo: bool, weights: Tensor | None = None,
              half: Tensor | None = None):
        """Graphs, attention weights and raw statistics of one side, for every scale."""
        c = self.config
        if c.quadrature and weights is not None:
            # weights are measures in the units of the caller's points; the balls live in the token
            # frame, (points - centre) / half: a ball of radius r covers about (r g)^m of measure
            dim = intrinsic_dimension(sources)
            g = float(torch.exp(torch.log(half).mean())) if half is not None else 1.0
            graphs, alphas, stats = [], [], []
            for r in radii:
                rp, col, ew = quadrature_graph(sources, targets, r, weights, c.max_neighbors)
                graphs.append((rp, col))
                ew = smooth_ball(sources, targets, rp, col, ew, r)
                sink = QUADRATURE_SINK * window_mass(r * g, dim)
                if c.attention == "cosine":  # w psi e^s / (sum w psi e^s + sink); s <= 1
                    score = sddmm(rp, col, F.normalize(targets, dim=1), F.normalize(sources, dim=1))
                    alphas.append(sink_normalize(rp, ew * torch.exp(score - 1), sink))
                else:
                    alphas.append(sink_normalize(rp, ew, sink))
                if geo:  # statistics of the complete, weighted balls (geometry only: no memory issue)
                    full_rp, full_col = radius_search(sources, targets, r) if c.max_neighbors else (rp, col)
                    full_w = smooth_ball(sources, targets, full_rp, full_col,
                                         weights.index_select(0, full_col.long()), r) if c.max_neighbors else ew
                    stats.append(neighborhood_statistics(sources, targets, full_rp, full_col, edge_weights=full_w,
                                                         sink=sink))
            return graphs, alphas, (stats if geo else None)
        graphs = [radius_search(sources, targets, r, max_neighbors=c.max_neighbors) for r in radii]
        alphas = [self.encoder.magno.edge_weights(sources, targets, rp, col, weights) for rp, col in graphs]
        stats = [neighborhood_statistics(sources, targets, rp, col) for rp, col in graphs] if geo else None
        return graphs, alphas, stats

    @staticmethod
    def _shells(graphs, alphas, radii):
        """The scales as shells of the largest ball (None when they do not nest), see :class:`_MAGNO`."""
        return nested_scales(graphs, alphas, radii)

    @staticmethod
    def _token_statistics(tokens: Tensor, queries: Tensor, radii) -> list[Tensor]:
        """Quadrature: the decoder's statistics of the token balls, windowed (see :meth:`_side`).

        The published statistics of the tokens within ``r`` of a query jump whenever a token
        crosses the radius as the query moves; with the window ``psi(|t - x| / r)`` on each
        token they vary continuously with the query. They are standardised over the token grid
        itself (the statistics at the tokens, a fixed reference for a given grid and radii)
        instead of over the input points or the queries: an average over the input points is a
        quadrature of a function that varies on the token spacing, which the training mesh
        (about one point per token spacing) does not resolve, and it moved the predictions by
        3-4 % between h and h/2 on the demo bodies.
        """
        out = []
        for r in radii:
            rp, col = radius_search(tokens, queries, r)
            ew = smooth_ball(tokens, queries, rp, col, tokens.new_ones(col.shape[0]), r)
            out.append(neighborhood_statistics(tokens, queries, rp, col, edge_weights=ew))
        return out

    def _geometry(self, points: Tensor, weights: Tensor | None):
        """Everything that depends on the input points only (cached per geometry)."""
        c = self.config

        def compute():
            with torch.no_grad():
                centre, half = self._frame(points)
                lo = -torch.ones(self.coord_dim, dtype=points.dtype)
                grid = latent_grid(lo.unsqueeze(0), c.grid, padding=0.0, bounds=(lo, -lo))  # linspace(-1, 1, n)
                tokens = grid.points.to(points)
                radii = self._radii(grid)
                pts = (points - centre) / half
                graphs, alphas, stats = self._side(pts, tokens, radii, c.geometry_embedding, weights, half)
                stats = [standardize_columns(s) for s in stats] if stats else None
                dec_ref = None
                if c.decoder_geometry_embedding and c.quadrature:  # see _token_statistics
                    dec_ref = self._token_statistics(tokens, tokens, radii)
                elif c.decoder_geometry_embedding and c.decoder_embedding_norm == "points":
                    dec_ref = [neighborhood_statistics(tokens, pts, *radius_search(tokens, pts, r,
                                                                                   max_neighbors=c.max_neighbors))
                               for r in radii]
                shells = self._shells(graphs, alphas, radii)
            return dict(centre=centre, half=half, tokens=tokens, radii=radii, pts=pts, graphs=graphs,
                        alphas=alphas, stats=stats, dec_ref=dec_ref, shells=shells,
                        ref_weights=weights if c.quadrature else None)

        key = (points,) if weights is None else (points, weights)
        return self.graphs.get("gaot-geometry", key, (c.grid, c.radii_cells, c.padding, c.coord_scaling, c.domain,
                                                      c.max_neighbors, c.attention, c.geometry_embedding,
                                                      c.decoder_geometry_embedding, c.decoder_embedding_norm,
                                                      c.quadrature), compute)

    def _queries(self, geo: dict, queries: Tensor):
        """The decoder's graphs, weights and standardised statistics for these queries (cached)."""
        c = self.config

        def compute():
            with torch.no_grad():
                q = (queries - geo["centre"]) / geo["half"]
                graphs, alphas, stats = self._side(geo["tokens"], q, geo["radii"], c.decoder_geometry_embedding)
                if stats is not None and c.quadrature:
                    stats = self._token_statistics(geo["tokens"], q, geo["radii"])
                if stats is not None:
                    refs = geo["dec_ref"] or [None] * len(stats)
                    stats = [standardize_columns(s, r) for s, r in zip(stats, refs)]
                shells = self._shells(graphs, alphas, geo["radii"])
            return q, graphs, alphas, stats, shells

        key = (geo["tokens"], geo["pts"], queries)
        if geo["ref_weights"] is not None:
            key = key + (geo["ref_weights"],)
        return self.graphs.get("gaot-queries", key,
                               (c.radii_cells, c.max_neighbors, c.attention, c.decoder_geometry_embedding,
                                c.decoder_embedding_norm, c.quadrature), compute)

    # ------------------------------------------------------------------ forward

    def _condition(self, features: Tensor, time, lead_time):
        if not self.config.time_conditioned:
            if time is not None or lead_time is not None:
                raise ValueError("time/lead_time given to a GAOT built with time_conditioned=False")
            return features, None
        if time is None or lead_time is None:
            raise ValueError("this GAOT is time-conditioned: pass time= and lead_time=")
        t = torch.as_tensor(time, dtype=features.dtype, device=features.device).reshape(1, 1)
        lt = torch.as_tensor(lead_time, dtype=features.dtype, device=features.device).reshape(1, 1)
        feats = torch.cat([features, t.expand(features.shape[0], 1), lt.expand(features.shape[0], 1)], dim=1)
        return feats, lt

    def encode(self, points: Tensor, features: Tensor, time=None, lead_time=None, weights: Tensor | None = None):
        if weights is not None:
            if not isinstance(weights, Tensor) or weights.shape != (points.shape[0],):
                raise ValueError(f"weights must be a ({points.shape[0]},) tensor of quadrature weights")
            weights = weights.to(points.dtype)
        elif self.config.quadrature:
            weights = self.graphs.get("density-weights", (points,), (), lambda: default_weights(points))
        geo = self._geometry(points, weights)
        feats, cond = self._condition(features, time, lead_time)
        f = self.encoder.lifting(feats)
        z = self.encoder(geo["pts"], geo["tokens"], f, geo["graphs"], geo["alphas"], geo["stats"], geo["shells"])
        z = self.processor(z.unsqueeze(0), cond).squeeze(0)
        return geo, z

    def decode(self, state, queries: Tensor) -> Tensor:
        geo, z = state
        q, graphs, alphas, stats, shells = self._queries(geo, queries)
        u = self.decoder(geo["tokens"], q, z, graphs, alphas, stats, shells)
        return self.decoder.projection(u)

    @torch.no_grad()
    def rollout(self, points: Tensor, state: Tensor, steps: int, lead_time: float, *, static: Tensor | None = None,
                time: float = 0.0) -> list[Tensor]:
        """Autoregressive prediction ``state_{k+1} = model([state_k, static], time_k, lead_time)``.

        Requires a time-conditioned model with ``out_channels == in_channels - static channels``.
        Returns the ``steps`` predicted states, each (N, out_channels).
        """
        states, t = [], float(time)
        for _ in range(steps):
            feats = state if static is None else torch.cat([state, static], dim=1)
            state = self(points, feats, points, time=t, lead_time=lead_time)
            states.append(state)
            t += lead_time
        return states
