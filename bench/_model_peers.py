"""Side by side with the peers (``python -m bench.models --peers``): one process, interleaved steps.

* **GNO layer** vs neuraloperator's ``IntegralTransform`` (PyPI ``neuraloperator``): the same
  trained weights (``GNOIntegral.from_neuralop``), the same CSR graph; forward and
  forward+backward time (median of interleaved repeats) and peak extra memory.
* **GAOT** (``build("gaot")``, fused kernels, cached geometry) vs the official GAOT code
  when ``--official-gaot PATH`` points at a checkout of camlab-ethz/GAOT (``new_src``
  layout), and always vs the plain-PyTorch formulation of the official forward
  (``tests/models/official_gaot_reference.py``: same module tree and arithmetic as the
  official code, per-edge ``E x hidden`` tensors, graphs precomputed): the same initial
  weights (``from_official``), the same samples in the same order, one training step of
  each in turn; step time (median), peak extra memory of a step, and test relative L2
  after ``--steps`` steps.

Peers that are not importable are reported as absent, never replaced silently.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

GAOT_PEER_CONFIG = dict(hidden=32, grid=(16, 8, 8), radius=0.15, scales=(1.0, 2.0), enc_hidden=(64, 64, 64),
                        dec_hidden=(64, 64), patch=2, width=128, layers=3, heads=4, kv_heads=4)


def _median_interleaved(fns: dict, repeat: int) -> dict:
    """Median seconds of each callable, called in turn ``repeat`` times (after one warm-up each)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


# --------------------------------------------------------------------------- GNO layer vs neuralop


def _scatter_stand_in(src, indptr, reduction, use_scatter=True):
    """What ``torch_scatter.segment_csr`` computes, vectorised with ``index_add_`` (neuralop's own
    fallback without torch-scatter loops over the rows in Python, which would not be a fair peer)."""
    lens = indptr[..., 1:] - indptr[..., :-1]
    if src.dim() == 3:  # batched: (B, E, C) with per-batch splits
        return torch.stack([_scatter_stand_in(s, indptr.reshape(-1, indptr.shape[-1])[0], reduction) for s in src])
    rows = torch.repeat_interleave(torch.arange(lens.numel(), device=src.device), lens)
    out = torch.zeros((lens.numel(),) + src.shape[1:], dtype=src.dtype, device=src.device).index_add_(0, rows, src)
    if reduction == "mean":
        out = out / lens.clamp_min(1).to(src.dtype).view(-1, *([1] * (src.dim() - 1)))
    return out


def gno_layer_peers(n_points: int, channels: int, repeat: int, peak_extra, seed: int = 0):
    try:
        import neuralop.layers.integral_transform as nit
        from neuralop.layers.integral_transform import IntegralTransform
    except ImportError as e:
        return None, f"neuralop not importable ({e.__class__.__name__}: {e}); GNO peer skipped"
    try:
        import torch_scatter  # noqa: F401
    except ImportError:
        nit.segment_csr = _scatter_stand_in
    from pyengine.nn import GNOIntegral
    from pyengine.ops import radius_search

    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n_points, 3, generator=g)
    radius = (30 * 3 / (4 * math.pi * n_points)) ** (1 / 3)  # ~30 neighbours per point in the unit cube
    row_ptr, col = radius_search(y, y, radius)
    f = torch.randn(n_points, channels, generator=g)
    torch.manual_seed(seed)
    peer = IntegralTransform(channel_mlp_layers=[6, 64, 64, channels], transform_type="linear",
                             use_torch_scatter=False)
    ours = GNOIntegral.from_neuralop(peer, 3, reduction="sum")
    nbrs = {"neighbors_index": col, "neighbors_row_splits": row_ptr}
    with torch.no_grad():
        a, b = ours(y, y, row_ptr, col, f), peer(y, nbrs, y, f)
    diff = float((a - b).norm() / b.norm())
    fr = f.clone().requires_grad_(True)
    calls = {
        "pyengine forward": lambda: ours(y, y, row_ptr, col, f).sum(),
        "neuralop forward": lambda: peer(y, nbrs, y, f).sum(),
        "pyengine forward+backward": lambda: ours(y, y, row_ptr, col, fr).sum().backward(),
        "neuralop forward+backward": lambda: peer(y, nbrs, y, fr).sum().backward(),
    }
    with torch.no_grad():
        t_fwd = _median_interleaved({k: v for k, v in calls.items() if k.endswith("forward")}, repeat)
    t_bwd = _median_interleaved({k: v for k, v in calls.items() if k.endswith("backward")}, repeat)
    mem = {k: peak_extra(v) for k, v in calls.items() if k.endswith("backward")}
    info = dict(points=n_points, edges=int(col.shape[0]), channels=channels, rel_diff=diff, **t_fwd, **t_bwd,
                **{"mem " + k: v for k, v in mem.items()})
    return info, None


# --------------------------------------------------------------------------- GAOT vs official


def _reference_module():
    here = Path(__file__).resolve().parents[1] / "tests" / "models"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import official_gaot_reference as ref  # noqa: E402

    return ref


def _official_module(path: str | None):
    if not path:
        return None, "no --official-gaot PATH given"
    sys.path.insert(0, str(Path(path).resolve()))
    try:
        from new_src.model.gaot import GAOT  # noqa: E402
    except Exception as e:  # noqa: BLE001  (any import failure: report it)
        return None, f"official GAOT not importable from {path} ({e.__class__.__name__}: {e})"
    return GAOT, None


def _official_config(c, in_ch):
    """The official (new_src) config namespace of GAOT_PEER_CONFIG."""
    magno = SimpleNamespace(coord_dim=3, radius=c["radius"], hidden_size=64, mlp_layers=3, lifting_channels=c["hidden"],
                            scales=list(c["scales"]), use_scale_weights=True, use_attention=True,
                            attention_type="cosine", use_geoembed=True, embedding_method="statistical",
                            pooling="max", transform_type="linear", sampling_strategy=None, max_neighbors=None,
                            sample_ratio=None, node_embedding=False, neighbor_search_method="native",
                            use_torch_scatter=False, neighbor_strategy="radius", precompute_edges=True)
    attn = SimpleNamespace(num_heads=c["heads"], num_kv_heads=c["kv_heads"], use_conditional_norm=False,
                           cond_norm_hidden_size=4, atten_dropout=0.0)
    tr = SimpleNamespace(patch_size=c["patch"], hidden_size=c["width"], use_attn_norm=True, use_ffn_norm=True,
                         norm_eps=1e-6, num_layers=c["layers"], positional_embedding="rope", use_long_range_skip=True,
                         ffn_multiplier=4, attn_config=attn)
    return SimpleNamespace(args=SimpleNamespace(magno=magno, transformer=tr), latent_tokens_size=list(c["grid"]))


def chunked_radius_graph(sources, queries, radius, budget: int = 1 << 24):
    """CSR (row_ptr, col) of ``|s - q| <= radius`` by brute force in float64, rows = queries, columns
    ascending: the tests' ``brute_force_radius_graph`` in query chunks of ``budget`` distances, so
    100k x 16k pairs fit in memory. Independent of pyengine's neighbour search."""
    step = max(1, budget // max(1, sources.shape[0]))
    src = sources.double()
    counts, cols = [], []
    for a in range(0, queries.shape[0], step):
        mask = torch.cdist(queries[a:a + step].double(), src) <= radius
        counts.append(mask.sum(1))
        cols.append(mask.nonzero()[:, 1])
    row_ptr = torch.zeros(queries.shape[0] + 1, dtype=torch.long)
    row_ptr[1:] = torch.cumsum(torch.cat(counts), 0)
    return row_ptr, torch.cat(cols)


def gaot3d_like_samples(n_points: int, count: int, seed: int = 0):
    """``count`` GAOT-3D-like samples of ``n_points`` surface points each, in the official ``[-1, 1]`` frame.

    Each is an area-weighted sample of a capsule-like body (long axis along x) stretched by random per-axis factors
    in ``[0.6, 1]`` (so the geometries differ), with the outward normals as input features and a
    smooth surface field as the target, ``sin(3 x) n_x + 0.5 z^2 - 0.3 y n_z``."""
    from .models import surface_cloud

    g = torch.Generator().manual_seed(seed + 12345)
    out = []
    for i in range(count):
        p, nrm = surface_cloud(n_points, seed + i)
        p, nrm = p[:, [2, 1, 0]], nrm[:, [2, 1, 0]]  # long axis first, as a car along x on a 2:2:1 grid
        s = 0.6 + 0.4 * torch.rand(3, generator=g)
        p = (p * s).clamp(-1, 1)
        nrm = nrm / s
        nrm = nrm / nrm.norm(dim=1, keepdim=True)
        y = torch.sin(3 * p[:, :1]) * nrm[:, :1] + 0.5 * p[:, 2:3] ** 2 - 0.3 * p[:, 1:2] * nrm[:, 2:3]
        out.append((p.contiguous(), nrm.contiguous(), y.contiguous()))
    return out


def gaot_peers(train, test, steps: int, official_path: str | None, peak_extra, seed: int = 0, config=None,
               device="cpu", per_scale: bool = False):
    """``train``/``test``: lists of (points (N, 3) in [-1, 1], features (N, C), target (N, 1)).

    ``per_scale``: also time pyengine with MAGNO's scales integrated one by one (no shared
    shells, ``_MAGNO.nested_scales = False``), from the same weights, interleaved with the others.

    On CUDA every step is synchronised before its clock stops; the graphs are built on the CPU
    (float64 brute force) and moved, as precomputed official graphs would be."""
    device = torch.device(device)
    train = [tuple(t.to(device) for t in s) for s in train]
    test = [tuple(t.to(device) for t in s) for s in test]
    from pyengine.models import GAOTConfig, from_official
    from pyengine.models.gaot_official import official_radii_cells, official_tokens

    ref = _reference_module()
    c = dict(GAOT_PEER_CONFIG, **(config or {}))
    in_ch = train[0][1].shape[1]
    torch.manual_seed(seed)
    standin = ref.OfficialStyleGAOT(in_ch, 1, c["grid"], channels=c["hidden"], enc_hidden=c["enc_hidden"],
                                    dec_hidden=c["dec_hidden"], n_scales=len(c["scales"]), patch=c["patch"],
                                    hidden=c["width"], layers=c["layers"], heads=c["heads"], kv_heads=c["kv_heads"])
    cfg = GAOTConfig(hidden=c["hidden"], grid=c["grid"], radii_cells=official_radii_cells(c["radius"], c["scales"],
                                                                                          c["grid"]),
                     encoder_kernel_hidden=c["enc_hidden"], decoder_kernel_hidden=c["dec_hidden"], dim=c["width"],
                     depth=c["layers"], vit_heads=c["heads"], kv_heads=c["kv_heads"], patch=c["patch"],
                     domain=((-1.0,) * 3, (1.0,) * 3), projection_hidden=256)
    standin = standin.to(device)
    models = {"pyengine gaot": from_official(standin.state_dict(), cfg).to(device).train(),
              "official semantics, plain PyTorch": standin.train()}
    if per_scale:
        one_by_one = from_official(standin.state_dict(), cfg).to(device).train()
        one_by_one.encoder.nested_scales = one_by_one.decoder.nested_scales = False
        models["pyengine gaot, scales one by one"] = one_by_one
    notes = []
    Official, why = _official_module(official_path)
    tokens = official_tokens(c["grid"]).to(device)
    graphs = {}

    def graphs_of(i, pts):  # precomputed once per sample, as the official precompute_edges=True
        if i not in graphs:
            on = lambda g: tuple(t.to(device) for t in g)  # noqa: E731
            p, t = pts.cpu(), tokens.cpu()
            graphs[i] = ([on(chunked_radius_graph(p, t, c["radius"] * s)) for s in c["scales"]],
                         [on(chunked_radius_graph(t, p, c["radius"] * s)) for s in c["scales"]])
        return graphs[i]

    runners = {
        "pyengine gaot": lambda m, i, p, f: m(p, f),
        "pyengine gaot, scales one by one": lambda m, i, p, f: m(p, f),
        "official semantics, plain PyTorch": lambda m, i, p, f: m(tokens, p, f, p, *graphs_of(i, p)),
    }
    if Official is not None:
        try:
            off = Official(in_ch, 1, _official_config(c, in_ch)).to(device)
            models["pyengine gaot"] = from_official(off.state_dict(), cfg).to(device).train()  # the same start
            if per_scale:
                models["pyengine gaot, scales one by one"].load_state_dict(models["pyengine gaot"].state_dict())
            models["official GAOT"] = off.train()

            def run_official(m, i, p, f):
                enc, dec = graphs_of(i, p)
                as_nbrs = lambda gs: [{"neighbors_index": col, "neighbors_row_splits": rp} for rp, col in gs]  # noqa
                return m(tokens, p, f[None], p, as_nbrs(enc), as_nbrs(dec))[0]

            runners["official GAOT"] = run_official
        except Exception as e:  # noqa: BLE001
            notes.append(f"official GAOT failed to build/run: {e.__class__.__name__}: {e}")
    else:
        notes.append(why)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}

    def step(k, i):
        p, f, y = train[i % len(train)]
        opts[k].zero_grad(set_to_none=True)
        loss = (runners[k](models[k], i % len(train), p, f) - y).square().mean()
        loss.backward()
        opts[k].step()

    for i in range(len(train)):  # warm-up: every sample's graphs and caches built, excluded from timing
        for k in models:
            step(k, i)
    times = {k: [] for k in models}
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)  # noqa: E731
    for i in range(steps):
        for k in models:
            sync()
            t = time.perf_counter()
            step(k, i)
            sync()
            times[k].append(time.perf_counter() - t)
    mem = {k: peak_extra(lambda k=k: step(k, 0)) for k in models}
    errs = {}
    for k, m in models.items():
        m.eval()
        with torch.no_grad():
            num = den = 0.0
            for j, (p, f, y) in enumerate(test):
                pred = runners[k](m, 10_000 + j, p, f)
                num += float((pred - y).square().sum())
                den += float(y.square().sum())
        errs[k] = math.sqrt(num / den)
    enc, dec = graphs_of(0, train[0][0])
    notes.append(f"edges of the first training sample, all scales: encoder {sum(int(g[1].numel()) for g in enc):,}, "
                 f"decoder {sum(int(g[1].numel()) for g in dec):,}")
    gc.collect()
    return {k: dict(step_s=statistics.median(times[k]), mem=mem[k], test_rel_l2=errs[k]) for k in models}, notes
