"""GAOT-fast: pyengine's faster GAOT variant (``build("gaot_fast", ...)``), not the published model.

    points --attention encoder--> latent tokens --ViT processor--> tokens --attention decoder--> queries

The paper-faithful GAOT is :mod:`pyengine.models.gaot` (``build("gaot", ...)``). This
variant keeps GAOT's encode-process-decode layout on a token grid but changes the
parts below. It is kept because on the demo data (potential-flow Cp on CAD bodies)
it reached a lower test error than the official GAOT after the same number of
steps (issue 19's side-by-side: relative L2 0.266 against 0.351 after 300 steps)
and is cheaper per edge; both variants are measured in bench/RESULTS.md:

* Encoder/decoder: learned multi-head softmax attention over ``[y - x, f]``
  (:class:`pyengine.nn.AttentionAggregation`, fused CSR attention) instead of the
  paper's kernel MLP ``k(x, y) f(y)`` weighted by a cosine softmax. Keys and values
  are linear in the relative position, so they fold into per-source tensors and the
  fused attention op never forms per-edge features: cheaper per edge than a kernel MLP.
* Geometry embedding: neighborhood statistics (:func:`pyengine.geometry.geometry_embedding`,
  13 columns incl. a local normal) mapped by an MLP and *added* to each scale's
  output, instead of concatenated and recovered by a linear map.
* Scale fusion: a per-token softmax computed from the scales' outputs (content-dependent),
  instead of the paper's softmax of an MLP of the token position.
* Processor: pre-norm ViT with LayerNorm, a GELU MLP, biased projections and
  learned positions, plus a residual around the processor
  (:class:`pyengine.nn.transformer.ViTProcessor`), instead of RMSNorm, SwiGLU,
  bias-free projections, U-shaped skips and RoPE.
* Decoder: single scale, the radius widened per query to reach its nearest token,
  and a local skip (inverse-distance mean of the lifted inputs at the 3 nearest
  input points) so fine surface detail reaches the output at full resolution.
* Coordinates are lifted together with the features (``lift([f, x])``).

Radii are given in token spacings (the distance between neighbouring grid nodes,
``extent / (n - 1)``, the convention of :func:`pyengine.geometry.latent_grid`), so
one configuration serves geometries of any size. Graphs and neighborhood embeddings
are cached per geometry; under the Trainer's resampling (with ``quadrature``) they are built
once from the full-resolution parent and the encoder balls filtered to each step's thinned
points (:class:`pyengine.models.thinning.Thinning`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..geometry import EMBEDDING_NAMES, geometry_embedding
from ..nn import AttentionAggregation
from ..nn.transformer import ViTProcessor, sinusoidal_embedding
from ..ops import knn, radius_search
from ._box import box_grid
from ..geometry.quadrature import intrinsic_dimension
from ..ops import row_index, segment_reduce
from ._quadrature import default_weights, smooth_ball, window_mass
from .gaot import QUADRATURE_SINK
from .base import OperatorModel
from ..nn.mlp import mlp
from .registry import register
from .thinning import Thinning, filter_csr

__all__ = ["GAOTFast", "GAOTFastConfig"]


@torch.no_grad()
def _windowed_mean_graph(points: Tensor, queries: Tensor, weights: Tensor, r: float):
    """Each query's windowed quadrature mean over ``B(q, r)`` as edges: ``(rows, col, ew, covered)``
    with ``ew`` the normalised ``w_j psi(|x_j - q| / r)`` and ``covered`` (M,) the rows with mass."""
    rp, col = radius_search(points, queries, r)
    w = smooth_ball(points, queries, rp, col, weights.index_select(0, col.long()), r)
    total = segment_reduce(w, rp, "sum")
    rows = row_index(rp, col.shape[0])
    return rows, col.long(), w / total.index_select(0, rows).clamp_min(torch.finfo(w.dtype).tiny), total > 0


@dataclass
class GAOTFastConfig:
    """GAOT-fast settings (see the module docstring for how it differs from the paper's GAOT).

    Attributes:
        hidden: token width.
        grid: latent token grid (coord_dim entries, each divisible by ``patch``).
        radii_cells: encoder radius scales, in token spacings (the largest of ``extent / (n - 1)``
            over the axes: ``radii_cells=1`` reaches exactly the neighbouring tokens).
        decoder_radius_cells: decoder radius in grid spacings (widened per query to reach its nearest token).
        heads: attention heads of the encoder and decoder.
        max_neighbors: per-token neighbor cap per scale (nearest kept; None: all); unused with quadrature.
        geometry_embedding: add neighborhood-geometry statistics to each token.
        dim, depth, vit_heads, patch: transformer width, blocks, heads and patch size.
        padding: bounding-box padding as a fraction of the extent.
        skip_neighbors: local skip: each query also receives the lifted input features of its
            ``skip_neighbors`` nearest input points (inverse-distance weights), so fine surface detail
            (e.g. the local normal) reaches the decoder at full resolution while the tokens carry the
            global context. 0 disables it (pure token decoding, as in the original GAOT).
        time_conditioned: condition the processor on ``time`` and ``lead_time`` (adaptive LayerNorm).
        quadrature: discretization convergence (issue 17); all of GAOT-fast then converges under
            refinement and resampling. Encoder and decoder use the complete balls (``max_neighbors``
            is then unused: a cap is a first-order quadrature; it moved predictions ~10 %), each source weighted by its quadrature
            weight times the window ``psi(q) = (1 - q^2)^2`` of its distance over the radius
            (``a ~ w_j psi_j exp(s)``), and each row's aggregate scaled by ``W / (W + sink)`` (``W``
            the ball's windowed measure, ``sink`` = ``QUADRATURE_SINK`` of a flat ball's), so a grazed
            ball fades out. The geometry embedding uses the same weights and sink; its count is ``W``
            relative to a flat ball's and its normal the sign-free ``n (n . u)``, faded where the
            PCA is degenerate. The token box comes from the points' weighted moments
            (:func:`pyengine.models._box.moment_box`), not their extremes; the decoder weights the
            tokens by the window over a radius continuous in the query; the local skip weights its
            ``k`` nearest by ``1/d - 1/d_(k+1)``. Weights come from ``forward(..., weights=)`` (vertex
            areas) or k-nearest-neighbour density estimates. False: the default (and older checkpoints).
        score_bound: with ``quadrature`` only (ignored without it): bound the encoder attention scores
            by ``score_bound`` (:class:`pyengine.nn.AttentionAggregation` ``score_bound``: cosine scores
            times a learned per-head temperature ``<= score_bound``). A departure from GAOT's and from
            plain GAOT-fast's unbounded dot-product scores: trained without it, the encoder softmax
            ``w psi exp(s)`` sharpens until the ~10 sources of a ball at the training resolution no
            longer resolve it, and the prediction moved 5-9 % under refinement after 50 epochs
            (bench/RESULTS.md, issue 17). None: unbounded (the default, and older checkpoints).
        feature_smoothing: with ``quadrature`` only (ignored without it): a radius ``rho`` in token
            spacings; the encoder (not the local skip) then lifts the input features averaged over
            ``B(x_i, rho)`` with the quadrature weights and the window, ``sum_j w_j psi_ij f_j /
            sum_j w_j psi_ij``, instead of the raw per-point features. A departure from GAOT and plain
            GAOT-fast: per-vertex inputs such as vertex normals are not a convergent field (on a refined
            polyhedron they sample its face normals, at h they are averages over the faces around each
            vertex), and a trained, nonlinear lift of them integrated over a ball moved 10-16 % between
            h and h/4, while the same trained encoder on a smooth stand-in field moved ~1 %
            (bench/RESULTS.md, issue 17). Averaging linearly at a fixed length scale first makes the
            lifted field converge. None: raw features (the default, and older checkpoints).
        skip_radius_cells: with ``quadrature`` only (ignored without it): the local skip becomes the
            windowed quadrature mean of the lifted inputs over ``B(q, r)``, ``r`` in token spacings,
            ``sum_j w_j psi_qj f_j / sum_j w_j psi_qj``, instead of the ``skip_neighbors`` nearest
            points' inverse-distance mean (a query with no input point in its ball keeps that one).
            A departure from GAOT-fast's nearest-point skip: that one takes the value at a query that
            is an input point and interpolates between scattered ones otherwise, so a query off the
            input points (a jittered or resampled mesh) saw a different skip (4-8 % of the prediction
            under a tangential jitter, bench/RESULTS.md, issue 17); the windowed mean is continuous
            in the query and the points and converges under refinement. It smooths over ``r``: pair
            it with mesh-independent inputs (the ``smooth_normals`` recipe). None: the nearest-point
            skip (the default, and older checkpoints).
        skip_at_query: with ``quadrature`` only (ignored without it): the local skip interpolates the
            input *features* to the query (the same ``skip_neighbors`` weights) and lifts them together
            with the query's own coordinates, ``lift([sum_k w_k x_k, q])``, instead of interpolating
            the lifted features ``sum_k w_k lift([x_k, y_k])``. Identical where the query is an input
            point; elsewhere (a jittered or resampled mesh queried at other points) the position
            enters exactly, and only the features, smooth with the ``smooth_normals`` recipe, are
            interpolated. The trained lift varies sharply with position (it carries the pressure
            peaks), so interpolating it between points 0.25 edges away moved predictions 4-8 %
            (bench/RESULTS.md, issue 17); unlike ``skip_radius_cells`` nothing is smoothed. Where the
            inputs at the queries are known (``forward(..., query_features=)``, which
            :func:`~pyengine.pipeline.prepare.prepare_sample` computes for ``smooth_normals``), they
            are used instead of the interpolation, so nothing is interpolated at all. Takes
            second place to ``skip_radius_cells``' ball mean where both are set. False: the
            default (and older checkpoints).
    """

    hidden: int = 64
    grid: tuple[int, ...] = (8, 8, 8)
    radii_cells: tuple[float, ...] = (1.0, 2.0)
    decoder_radius_cells: float = 1.5
    heads: int = 4
    max_neighbors: int | None = 64
    geometry_embedding: bool = True
    dim: int = 128
    depth: int = 4
    vit_heads: int = 4
    patch: int = 2
    padding: float = 0.05
    skip_neighbors: int = 3
    time_conditioned: bool = False
    quadrature: bool = False
    score_bound: float | None = None
    feature_smoothing: float | None = None
    skip_radius_cells: float | None = None
    skip_at_query: bool = False

    def __post_init__(self) -> None:
        if not self.radii_cells or min(self.radii_cells) <= 0:
            raise ValueError(f"radii_cells must be positive scales, got {self.radii_cells}")
        if self.skip_neighbors < 0:
            raise ValueError(f"skip_neighbors must be >= 0, got {self.skip_neighbors}")
        for name in ("score_bound", "feature_smoothing", "skip_radius_cells"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v < float("inf")):
                raise ValueError(f"{name} must be a positive number or None, got {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")


class _Encoder(nn.Module):
    """Multiscale attentional GNO from points to tokens."""

    def __init__(self, in_channels: int, hidden: int, coord_dim: int, c: GAOTFastConfig) -> None:
        super().__init__()
        bound = c.score_bound if c.quadrature else None
        self.attn = nn.ModuleList(AttentionAggregation(in_channels, hidden, coord_dim, heads=c.heads,
                                                       score_bound=bound)
                                  for _ in c.radii_cells)
        geo = len(EMBEDDING_NAMES) if c.geometry_embedding else 0
        self.geo = nn.ModuleList(mlp([geo, hidden, hidden]) for _ in c.radii_cells) if geo else None
        self.fuse = mlp([hidden * len(c.radii_cells), hidden, len(c.radii_cells)]) if len(c.radii_cells) > 1 else None

    def forward(self, points: Tensor, f: Tensor, tokens: Tensor, graphs: list, embeddings: list) -> Tensor:
        scales = []
        for s, (attn, graph) in enumerate(zip(self.attn, graphs)):
            row_ptr, col = graph[0], graph[1]
            h = attn(points, tokens, row_ptr, col, f, edge_weights=graph[2] if len(graph) > 2 else None,
                     row_scale=graph[3] if len(graph) > 3 else None)
            if self.geo is not None:
                h = h + self.geo[s](embeddings[s])
            scales.append(h)
        if self.fuse is None:
            return scales[0]
        w = torch.softmax(self.fuse(torch.cat(scales, dim=1)), dim=1)  # (T, S)
        return torch.einsum("ts,stc->tc", w, torch.stack(scales))


@register("gaot_fast", GAOTFastConfig)
class GAOTFast(OperatorModel):
    """pyengine's fast GAOT variant; see the module docstring."""

    def __init__(self, in_channels: int, out_channels: int, coord_dim: int, config: GAOTFastConfig) -> None:
        super().__init__(in_channels, out_channels, coord_dim, config)
        c = config
        if len(c.grid) != coord_dim:
            raise ValueError(f"grid {c.grid} must have coord_dim={coord_dim} axes")
        self.lift = mlp([in_channels + coord_dim, c.hidden, c.hidden])
        self.encoder = _Encoder(c.hidden, c.hidden, coord_dim, c)
        cond = c.dim if c.time_conditioned else None
        self.processor = ViTProcessor(c.grid, c.hidden, dim=c.dim, depth=c.depth, heads=c.vit_heads, patch=c.patch,
                                      cond_dim=cond)
        self.time_embed = mlp([2 * 32, c.dim, c.dim]) if c.time_conditioned else None
        self.decoder = AttentionAggregation(c.hidden, c.hidden, coord_dim, heads=c.heads)
        skip = c.hidden if c.skip_neighbors else 0
        self.project = mlp([c.hidden + coord_dim + skip, c.hidden, out_channels])

    def _tokens(self, points: Tensor, weights: Tensor | None = None):
        """Token grid over the padded box of the points, encoder graphs and embeddings (cached):
        ``(tokens, graphs, embeddings, spacing, lo, hi, sinks)``.

        With quadrature, each encoder graph is ``(row_ptr, col, edge_weights, row_scale)`` over the
        complete, windowed balls (:meth:`_quadrature_balls`) and ``sinks`` holds each scale's sink
        (None without quadrature)."""
        c = self.config

        def compute():
            # never a zero-extent box (plates, coincident points); with quadrature from the weighted
            # moments, not the extreme points (jittering a mesh moved every token with the bounding box)
            grid = box_grid(points, c.grid, c.padding, weights if c.quadrature else None)
            tokens, lo, hi = grid.points.to(points), grid.lower.to(points), grid.upper.to(points)
            spacing = float(grid.spacing.max())  # the real distance between neighbouring tokens
            radii = [r * spacing for r in c.radii_cells]
            if c.quadrature:
                enc, emb, sinks = self._quadrature_balls(points, tokens, radii, weights)
                return tokens, enc, emb, spacing, lo, hi, sinks
            enc = [radius_search(points, tokens, r, max_neighbors=c.max_neighbors) for r in radii]
            emb = []
            if c.geometry_embedding:
                for r, graph in zip(radii, enc):
                    e = geometry_embedding(points, tokens, r, graph=graph[:2])
                    # counts grow with the sampling density: log scale keeps them O(1) across resolutions
                    emb.append(torch.cat([torch.log1p(e[:, :1]), e[:, 1:]], dim=1))
            return tokens, enc, emb, spacing, lo, hi, None

        key = (points,) if weights is None or not c.quadrature else (points, weights)
        return self.graphs.get("gaot-fast-tokens", key, (c.grid, c.radii_cells, c.max_neighbors, c.padding,
                                                         c.geometry_embedding, c.quadrature), compute)

    @torch.no_grad()
    def _quadrature_balls(self, points: Tensor, tokens: Tensor, radii, weights: Tensor):
        """Quadrature: the encoder's complete, windowed balls and their geometry embeddings.

        Each graph is ``(row_ptr, col, edge_w, row_scale)``: ``edge_w = w_j psi(|y_j - t| / r)`` (the
        source's quadrature weight times the window ``psi(q) = (1 - q^2)^2``) and ``row_scale =
        W / (W + sink)`` with ``W`` the ball's windowed measure and ``sink`` = ``QUADRATURE_SINK`` of a
        flat ball's (:func:`pyengine.models._quadrature.window_mass`): a source entering the ball under
        refinement enters with zero weight, and a grazed ball fades out instead of jumping. The
        embedding's statistics use the same weights and sink; its count column is ``W`` in units of a
        flat ball's windowed measure (``log1p``), and its normal columns become the sign-free
        ``n (n . u)`` (``u = (1, 1, 1) / sqrt(3)``) faded by the eigen-gap and ``W / (W + sink)``.
        Returns ``(graphs, embeddings, sinks)``.
        """
        c = self.config
        dim = intrinsic_dimension(points)
        tiny = torch.finfo(weights.dtype).tiny
        enc, emb, sinks = [], [], []
        for r in radii:
            rp, col = radius_search(points, tokens, r)  # complete balls: a cap is a first-order quadrature
            w = smooth_ball(points, tokens, rp, col, weights.index_select(0, col.long()), r)
            flat = window_mass(r, dim)
            sink = QUADRATURE_SINK * flat
            mass = segment_reduce(w, rp, "sum")
            scale = mass / (mass + sink)
            enc.append((rp, col, w.clamp_min(tiny), scale))
            sinks.append(sink)
            if c.geometry_embedding:
                e = geometry_embedding(points, tokens, r, graph=(rp, col), edge_weights=w, sink=sink)
                # the PCA normal's sign (canonical by its largest component) and, where two eigenvalues
                # tie, its direction jump with the mesh: use n (n . u), u = (1, 1, 1) / sqrt(3) (sign-free,
                # continuous in n n^T), faded by the eigen-gap (l2 - l3) / l2 and the ball's W / (W + sink)
                n, ev = e[:, 10:], e[:, 7:10]
                gap = (ev[:, 1] - ev[:, 2]) / (ev[:, 1] + 1e-3 * ev[:, 0]).clamp_min(torch.finfo(e.dtype).tiny)
                fade = (gap.clamp(0, 1) * scale.to(e.dtype)).unsqueeze(1)
                axial = n * (n.sum(dim=1, keepdim=True) / 3 ** 0.5) * fade
                e = torch.cat([torch.log1p(mass / flat).unsqueeze(1).to(e.dtype), e[:, 1:10], axial], dim=1)
                emb.append(e)
        return enc, emb, sinks

    @staticmethod
    @torch.no_grad()
    def _thinned_balls(enc: list, sinks: list, thinning: Thinning) -> list:
        """The parent's encoder balls restricted to the kept points: exactly the balls of the thinned
        points around the same tokens, each kept source's window weight times ``inverse_keep``, and
        ``row_scale`` recomputed from the kept mass."""
        new_index = thinning.new_index()
        out = []
        for (rp, col, w, _), sink in zip(enc, sinks):
            rp2, col2, kept = filter_csr(rp, col, new_index)
            w2 = w.index_select(0, kept) * thinning.inverse_keep.to(w.dtype).index_select(0, col2.long())
            mass = segment_reduce(w2, rp2, "sum")
            out.append((rp2, col2, w2, mass / (mass + sink)))
        return out

    def _decoder_graph(self, tokens: Tensor, queries: Tensor, spacing: float):
        """Each query's ball over the tokens: the decoder radius, widened where a query lies
        outside the token box so that it still reaches its nearest token.

        With quadrature, ``(row_ptr, col, edge_w)``: the radius is ``max(r, 2 d_1)`` (``d_1`` the
        nearest token's distance, continuous in the query) and each token is weighted by the window
        ``psi(|t - x| / r_i)``, so a token crossing the radius (the token box is an integral of the
        geometry and moves slightly between meshes) enters with zero weight."""
        c = self.config

        def compute():
            nearest = knn(tokens, queries, 1)[0][:, 0]
            if c.quadrature:
                r = torch.clamp(2 * nearest, min=c.decoder_radius_cells * spacing)
                rp, col = radius_search(tokens, queries, r)
                w = smooth_ball(tokens, queries, rp, col, tokens.new_ones(col.shape[0]), r)
                return rp, col, w.clamp_min(torch.finfo(w.dtype).tiny)
            r = torch.clamp(nearest * 1.001, min=c.decoder_radius_cells * spacing)
            return radius_search(tokens, queries, r, max_neighbors=c.max_neighbors)

        return self.graphs.get("gaot-fast-decoder", (tokens, queries),
                               (c.decoder_radius_cells, spacing, c.max_neighbors, c.quadrature), compute)

    def _condition(self, time, lead_time, dtype, device) -> Tensor | None:
        if self.time_embed is None:
            if time is not None or lead_time is not None:
                raise ValueError("time/lead_time given to a GAOT-fast built with time_conditioned=False")
            return None
        if time is None or lead_time is None:
            raise ValueError("this GAOT-fast is time-conditioned: pass time= and lead_time=")
        t = torch.as_tensor(time, dtype=dtype, device=device).reshape(1)
        lt = torch.as_tensor(lead_time, dtype=dtype, device=device).reshape(1)
        emb = torch.cat([sinusoidal_embedding(t * 1000, 32), sinusoidal_embedding(lt * 1000, 32)], dim=-1)
        return self.time_embed(emb.to(dtype))

    def encode(self, points: Tensor, features: Tensor, time=None, lead_time=None, weights: Tensor | None = None,
               thinning: Thinning | None = None):
        """Latent tokens of one geometry. ``thinning`` (with quadrature; ignored without): the points are
        a random subset of ``thinning.points`` (the Trainer's ``resample``). The token box, the encoder
        balls and the geometry embeddings then come from the parent, built once and cached, and each
        step filters the balls to the kept points (exact, see :meth:`_thinned_balls`); the embeddings
        and the box stay the parent's, the discretization that a thinned subset estimates."""
        transient = self.config.quadrature and thinning is not None
        if transient:
            parent = thinning.points.to(points.dtype)
            parent_w = thinning.weights
            if parent_w is None:
                parent_w = self.graphs.get("density-weights", (parent,), (), lambda: default_weights(parent))
            parent_w = parent_w.to(points.dtype)
            if weights is None:
                weights = thinning.kept_weights(parent_w)
            tokens, enc, emb, spacing, lo, hi, sinks = self._tokens(parent, parent_w)
            enc = self._thinned_balls(enc, sinks, thinning)
        else:
            if self.config.quadrature and weights is None:
                weights = self.graphs.get("density-weights", (points,), (), lambda: default_weights(points))
            tokens, enc, emb, spacing, lo, hi, _ = self._tokens(points, weights)
        # coordinates enter the layers normalised to the token box, so weights transfer across sizes
        unit = lambda p: 2 * (p - lo) / (hi - lo) - 1  # noqa: E731
        f = self.lift(torch.cat([features, unit(points)], dim=1))
        f_enc = f
        if self.config.quadrature and self.config.feature_smoothing and features.shape[1]:
            rows, col, ew = self._smoothing_graph(points, weights, spacing, cache=not transient)
            smooth = torch.zeros_like(features).index_add_(0, rows, features.index_select(0, col) * ew.unsqueeze(1))
            f_enc = self.lift(torch.cat([smooth, unit(points)], dim=1))
        z = self.encoder(unit(points), f_enc, unit(tokens), enc, emb)
        cond = self._condition(time, lead_time, z.dtype, z.device)
        z = self.processor(z.unsqueeze(0), cond).squeeze(0)
        return tokens, z, spacing, lo, hi, points, f, weights, features, transient

    def _cached(self, cache: bool, kind: str, tensors: tuple, params: tuple, compute):
        """``self.graphs.get`` unless ``cache`` is False: a thinned training step's structures are used
        once, and storing them would push the geometries' own structures out of the LRU."""
        return self.graphs.get(kind, tensors, params, compute) if cache else compute()

    def _smoothing_graph(self, points: Tensor, weights: Tensor, spacing: float, cache: bool = True):
        """``feature_smoothing``'s averaging (cached): per edge (row i, source j) the normalised
        ``w_j psi(|x_j - x_i| / rho)``, ``rho = feature_smoothing * spacing``; returns ``(rows, col, ew)``
        (every row holds at least its own point, with ``psi = 1``)."""
        c = self.config
        rho = c.feature_smoothing * spacing

        return self._cached(cache, "gaot-fast-smoothing", (points, weights), (c.feature_smoothing, spacing),
                            lambda: _windowed_mean_graph(points, points, weights, rho)[:3])

    def _skip_weights(self, points: Tensor, queries: Tensor, spacing: float, cache: bool = True):
        """Nearest input points of each query and normalised inverse-distance weights (cached).

        With quadrature, ``k + 1`` neighbours are found and weighted ``1/d_j - 1/d_(k+1)``: the
        point about to enter or leave the ``k`` nearest has zero weight, so the interpolation is
        continuous in the points (a plain ``k``-nearest inverse-distance mean jumps when the set
        changes, e.g. on a jittered or resampled mesh)."""
        c = self.config
        k = min(c.skip_neighbors, points.shape[0])
        smooth = c.quadrature and points.shape[0] > k

        def compute():
            dist, idx = knn(points, queries, k + 1 if smooth else k)
            w = 1.0 / (dist + 1e-6 * spacing)
            if smooth:
                w = (w[:, :k] - w[:, k:]).clamp_min(0)
                idx = idx[:, :k]
                tied = w.sum(dim=1, keepdim=True) <= 0  # k-th and (k+1)-th at the same distance as all others
                w = torch.where(tied, torch.ones_like(w), w)
            return idx, w / w.sum(dim=1, keepdim=True)

        return self._cached(cache, "gaot-fast-skip", (points, queries), (k, spacing, smooth), compute)

    def _skip_ball(self, points: Tensor, queries: Tensor, spacing: float, weights: Tensor, cache: bool = True):
        """``skip_radius_cells``' windowed mean (cached): per edge (query row, source col) the normalised
        ``w_j psi(|x_j - q| / r)``; returns ``(rows, col, ew, covered)``, ``covered`` (M,) the queries
        whose ball holds quadrature mass (the others keep the nearest-point skip)."""
        r = self.config.skip_radius_cells * spacing
        return self._cached(cache, "gaot-fast-skip-ball", (points, queries, weights), (r,),
                            lambda: _windowed_mean_graph(points, queries, weights, r))

    def decode(self, state, queries: Tensor, query_features: Tensor | None = None) -> Tensor:
        """``(M, out)`` at ``queries (M, d)``. ``query_features (M, C_in)``: the inputs evaluated at the
        queries, used by ``skip_at_query`` in place of their interpolation (ignored otherwise)."""
        tokens, z, spacing, lo, hi, points, f, *rest = state  # (weights, features, transient) since issue 17
        weights, features, transient = (rest + [None, None, False])[:3]
        graph = self._decoder_graph(tokens, queries, spacing)
        unit = lambda p: 2 * (p - lo) / (hi - lo) - 1  # noqa: E731
        u = self.decoder(unit(tokens), unit(queries), graph[0], graph[1], z,
                         edge_weights=graph[2] if len(graph) > 2 else None)
        parts = [u, unit(queries)]
        if self.config.skip_neighbors:
            if self.config.quadrature and self.config.skip_at_query and features is not None:
                # the (smooth) inputs at the query, exact when given, else interpolated, lifted with the
                # query's own coordinates: identical to the plain skip where the query is an input point
                if query_features is not None:
                    at_q = query_features
                else:
                    idx, w = self._skip_weights(points, queries, spacing, cache=not transient)
                    at_q = (features[idx] * w.unsqueeze(2).to(features.dtype)).sum(dim=1)
                skip = self.lift(torch.cat([at_q, unit(queries)], dim=1))
            else:
                idx, w = self._skip_weights(points, queries, spacing, cache=not transient)
                skip = (f[idx] * w.unsqueeze(2).to(f.dtype)).sum(dim=1)
            if self.config.quadrature and self.config.skip_radius_cells and weights is not None:
                rows, col, ew, covered = self._skip_ball(points, queries, spacing, weights, cache=not transient)
                ball = torch.zeros_like(skip).index_add_(0, rows, f.index_select(0, col) * ew.unsqueeze(1).to(f.dtype))
                skip = torch.where(covered.unsqueeze(1), ball, skip)
            parts.append(skip)
        return self.project(torch.cat(parts, dim=1))

    @torch.no_grad()
    def rollout(self, points: Tensor, state: Tensor, steps: int, lead_time: float, *, static: Tensor | None = None,
                time: float = 0.0) -> list[Tensor]:
        """Autoregressive prediction: ``state_{k+1} = model([state_k, static], time_k, lead_time)``.

        Requires ``out_channels == in_channels - static channels`` and queries = points.
        Returns the ``steps`` predicted states, each (N, out_channels).
        """
        states, t = [], float(time)
        for _ in range(steps):
            feats = state if static is None else torch.cat([state, static], dim=1)
            state = self(points, feats, points, time=t, lead_time=lead_time)
            states.append(state)
            t += lead_time
        return states
