"""Loading trained weights of the official GAOT code (camlab-ethz/GAOT) into :class:`pyengine.models.GAOT`.

The official model's state dict is read by parameter name; nothing of the official
code is imported or needed. Both layouts of the official repository are understood:
``src/model`` (the encoder/decoder integral under ``gno``, a two-layer projection) and
the later ``new_src/model`` (under ``agno``). What pyengine stores differently:

* the kernel MLP input is ``[x, y]`` here and ``[y, x]`` there (first layer's
  coordinate columns swapped);
* the official ``ChannelMLP`` layers are 1x1 ``Conv1d`` (weights ``(out, in, 1)``),
  here ``Linear``;
* the processor's blocks sit under ``processor.transformer`` and its patch map under
  ``processor.patch_linear``;
* the rotary embedding's fixed frequencies (``rotary_emb.freqs``) are recomputed,
  not stored (they are checked against the checkpoint's).

The hyperparameters are not in a state dict: describe the official model with a
:class:`~pyengine.models.gaot.GAOTConfig` (``radii_cells`` from the official radius and
scales via :func:`official_radii_cells`, ``domain`` for coordinates already scaled
to ``[-1, 1]`` as the official data pipeline does).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch
from torch import Tensor, nn

__all__ = ["from_official", "official_radii_cells", "official_tokens"]


def official_radii_cells(radius: float, scales, grid) -> tuple[float, ...]:
    """``radii_cells`` of the official ``radius`` and ``scales`` for tokens ``linspace(-1, 1, n)`` per axis."""
    spacing = max(2.0 / (int(n) - 1) for n in grid)
    return tuple(float(radius) * float(s) / spacing for s in scales)


def _linear(w: Tensor) -> Tensor:
    return w.squeeze(-1) if w.dim() == 3 else w  # Conv1d (out, in, 1) -> Linear (out, in)


def from_official(official: nn.Module | Mapping[str, Tensor], config: Any, *, in_channels: int | None = None,
                  out_channels: int | None = None):
    """A :class:`~pyengine.models.gaot.GAOT` with the weights of an official GAOT model.

    Args:
        official: the official ``GAOT`` module, or its ``state_dict`` (a ``module.`` prefix,
            as DDP writes it, is removed).
        config: a :class:`~pyengine.models.gaot.GAOTConfig` describing the official model
            (token grid, radii, kernel widths, transformer sizes, ...).
        in_channels, out_channels: default to the sizes found in the weights.

    Returns:
        the pyengine model in eval mode, float32. On the same points, features, queries and
        (uncapped) radius graphs its outputs equal the official model's.

    Raises:
        ValueError naming the parameter when the weights do not fit ``config``.
    """
    from .gaot import GAOT, GAOTConfig

    if not isinstance(config, GAOTConfig):
        raise TypeError(f"config must be a GAOTConfig, got {type(config).__name__}")
    sd = official.state_dict() if isinstance(official, nn.Module) else dict(official)
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    integral = next((name for name in ("gno", "agno") if f"encoder.{name}.channel_mlp.fcs.0.weight" in sd), None)
    if integral is None:
        raise ValueError("not an official GAOT state dict: no encoder.gno/agno.channel_mlp.fcs.0.weight")
    first = sd[f"encoder.{integral}.channel_mlp.fcs.0.weight"]
    coord_dim = len(config.grid)
    lift_key = next(k for k in ("encoder.lifting.fcs.0.weight", "encoder.lifting.weight") if k in sd)
    if in_channels is None:
        in_channels = sd[lift_key].shape[1] - (2 if config.time_conditioned else 0)
    proj = sorted(k for k in sd if re.fullmatch(r"decoder\.projection\.fcs\.\d+\.weight", k))
    if out_channels is None:
        out_channels = sd[proj[-1]].shape[0]
    if first.shape[1] != 2 * coord_dim + (config.hidden if config.transform == "nonlinear" else 0):
        raise ValueError(f"the official encoder kernel takes {first.shape[1]} inputs; config describes coord_dim="
                         f"{coord_dim}, hidden={config.hidden}, transform={config.transform!r}")
    model = GAOT(in_channels, out_channels, coord_dim, config)

    new: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, fn=lambda t: t) -> None:
        if src not in sd:
            raise ValueError(f"the official weights have no {src!r}, which config implies (for {dst!r})")
        new[dst] = fn(sd[src])
        used.add(src)

    def swap_xy(w: Tensor) -> Tensor:  # official input [y, x, (f)] -> pyengine [x, y, (f)]
        d = coord_dim
        return torch.cat([w[:, d:2 * d], w[:, :d], w[:, 2 * d:]], dim=1)

    for side in ("encoder", "decoder"):
        mod = getattr(model, side)
        kernel = [m for m in mod.magno.integral.kernel if isinstance(m, nn.Linear)]
        for i in range(len(kernel)):
            src = f"{side}.{integral}.channel_mlp.fcs.{i}"
            take(f"{src}.weight", f"{side}.magno.integral.kernel.{2 * i}.weight", swap_xy if i == 0 else _linear)
            take(f"{src}.bias", f"{side}.magno.integral.kernel.{2 * i}.bias")
        if mod.geoembed is not None:
            for i in (0, 2):
                take(f"{side}.geoembed.mlp.{i}.weight", f"{side}.geoembed.mlp.{i}.weight")
                take(f"{side}.geoembed.mlp.{i}.bias", f"{side}.geoembed.mlp.{i}.bias")
            rec = next(k for k in (f"{side}.recovery.fcs.0", f"{side}.recovery") if f"{k}.weight" in sd)
            take(f"{rec}.weight", f"{side}.recovery.weight", _linear)
            take(f"{rec}.bias", f"{side}.recovery.bias")
        if mod.scale_weighting is not None:
            for i in (0, 2):
                take(f"{side}.scale_weighting.{i}.weight", f"{side}.scale_weighting.{i}.weight")
                take(f"{side}.scale_weighting.{i}.bias", f"{side}.scale_weighting.{i}.bias")
    lift = lift_key[: -len(".weight")]
    take(f"{lift}.weight", "encoder.lifting.weight", _linear)
    take(f"{lift}.bias", "encoder.lifting.bias")
    dst_proj = [k for k in model.state_dict() if k.startswith("decoder.projection") and k.endswith("weight")]
    if len(proj) != len(dst_proj):
        raise ValueError(f"the official projection has {len(proj)} layers, config.projection_hidden="
                         f"{config.projection_hidden} gives {len(dst_proj)}")
    for src_w, dst_w in zip(proj, sorted(dst_proj)):
        take(src_w, dst_w, _linear)
        take(src_w[: -len("weight")] + "bias", dst_w[: -len("weight")] + "bias")
    take("patch_linear.weight", "processor.patch_linear.weight")
    take("patch_linear.bias", "processor.patch_linear.bias")
    for key in model.state_dict():
        if not key.startswith("processor.transformer."):
            continue
        src = "processor." + key[len("processor.transformer."):]
        src = src.replace(".correction.scale.", ".correction.mlp_scale.layers.0.")
        src = src.replace(".correction.shift.", ".correction.mlp_bias.layers.0.")
        take(src, key)
    for k, v in sd.items():
        if k.endswith("rotary_emb.freqs"):
            used.add(k)
            dim = 2 * v.numel()
            expect = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
            if v.shape != expect.shape or not torch.allclose(v.float().cpu(), expect, rtol=1e-6):
                raise ValueError(f"{k}: learned or non-default rotary frequencies are not supported")
    left = sorted(set(sd) - used)
    if left:
        raise ValueError(f"official weights not used by this config (wrong config?): {left[:8]}"
                         + (" ..." if len(left) > 8 else ""))
    try:
        model.load_state_dict({k: v.float() for k, v in new.items()}, strict=True)
    except RuntimeError as e:
        raise ValueError(f"the official weights do not fit this config: {str(e).splitlines()[0]} "
                         f"{' '.join(str(e).split())[:400]}") from None
    return model.float().eval()


def official_tokens(grid) -> Tensor:
    """The official latent token coordinates: ``linspace(-1, 1, n)`` per axis, ``ij`` order, ``(prod(grid), d)``."""
    axes = [torch.linspace(-1.0, 1.0, int(n)) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(math.prod(int(n) for n in grid), -1)
