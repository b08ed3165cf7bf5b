"""The Trainer: AdamW + schedule + clipping, per-field normalisation, metrics, logs, checkpoints, DDP.

Data parallelism: when ``torch.distributed`` is initialised (``torchrun``), the
model is wrapped in ``DistributedDataParallel`` and every global batch of
``batch_size`` geometries is split evenly across ranks. Each rank averages its
share's loss and DDP averages gradients, so a step equals the single-process
step on the same global batch (the DDP test checks this with 2 gloo ranks).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._atomic import atomic_write_text, clean_stale_temp_files
from ..data import Sample
from ..models.thinning import Thinning
from .checkpoint import load_checkpoint, load_weights, save_checkpoint
from .config import TrainConfig
from .metrics import field_errors
from .validate import ensure_output_dir

__all__ = ["Trainer"]


@dataclass
class _Prepared:
    """A sample on the training device with normalised inputs and targets."""

    points: Tensor
    features: Tensor | None
    queries: Tensor
    target: Tensor | None
    weights: Tensor | None = None
    query_features: Tensor | None = None  # the inputs at the queries (Sample.features_at_queries), normalised
    thinning: Thinning | None = None  # set by resampling: these points are a subset of another _Prepared's


class _SampleForward(nn.Module):
    """Runs the model over a list of geometries in one ``forward`` (one DDP forward per step)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, samples: list[_Prepared]) -> list[Tensor]:
        return [_call(self.model, s.points, s.features, s.queries, getattr(s, "weights", None),
                      getattr(s, "query_features", None), getattr(s, "thinning", None)) for s in samples]


def _call(model: nn.Module, points, features, queries, weights, query_features=None, thinning=None) -> Tensor:
    """``model(points, features, queries)``, with the quadrature weights, the features at the
    queries and the resampling's thinning when there are any and the model is a pyengine family
    (which accepts them, and ignores them unless its configuration uses them)."""
    from ..models.base import OperatorModel

    if not isinstance(model, OperatorModel):
        return model(points, features, queries)
    kwargs = {}
    if weights is not None:
        kwargs["weights"] = weights
    if query_features is not None:
        kwargs["query_features"] = query_features
    if thinning is not None:
        kwargs["thinning"] = thinning
    return model(points, features, queries, **kwargs)


def normalize_features(normalizer, features: Tensor) -> Tensor:
    """Input features standardised with the normaliser's statistics (unchanged if it has none)."""
    from ..data.normalize import FEATURES

    return normalizer.normalize_field(FEATURES, features) if FEATURES in normalizer.mean else features


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    """Fits a :mod:`pyengine.models` model to samples with target fields.

    Args:
        model: a model family instance (``model(points, features, queries) -> (M, C_out)``).
        train: training samples (each with every field in ``fields``), or a
            :class:`~pyengine.data.files.CachedSamples` (a file cache, streamed through a DataLoader;
            see :mod:`pyengine.pipeline.data_source`).
        fields: predicted field names in output-channel order; each is (M,) or (M, k) in the samples.
        val: validation samples evaluated during and after training, or None.
        config: :class:`TrainConfig`.
        normalizer: a fitted :class:`~pyengine.data.Normalizer` (fitted on ``train``'s fields and features when None).
        out_dir: where ``log.csv``, ``history.json`` and ``model.pt`` go (nothing written when None).
        device: training device.
    """

    def __init__(self, model: nn.Module, train: Sequence[Sample], *, fields: Sequence[str],
                 val: Sequence[Sample] | None = None, config: TrainConfig | None = None, normalizer=None,
                 out_dir: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        from ..data.normalize import Normalizer
        from .data_source import StreamSource, is_stream

        stream = train if is_stream(train) else None
        self.config = config or TrainConfig()
        self.device = torch.device(device)
        self.model = model.to(self.device)
        if not train:
            raise ValueError("no training samples")
        self.fields = list(fields)
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ValueError(f"fields must be distinct names, got {self.fields}")
        self.widths = dict(stream.fields) if stream is not None else self._field_widths(train[0])
        if sum(self.widths.values()) != model.out_channels:
            raise ValueError(f"fields {self.widths} have {sum(self.widths.values())} channels but the model "
                             f"predicts {model.out_channels}")
        if normalizer is None:
            normalizer = stream.normalizer() if stream is not None else Normalizer().fit(train, fields=self.fields)
        self.normalizer = normalizer
        self.train_samples, self.val_samples = ([] if stream is not None else list(train)), list(val or [])
        self._train = [self._prepare(s) for s in self.train_samples]
        # points per unit measure (frame units) of the training geometries: predict notes inputs far outside
        dens = [s.num_points / float(s.weights.sum()) for s in self.train_samples if s.weights is not None]
        self.point_density = (min(dens), max(dens)) if dens else None
        self.rank, self.world = _rank_world()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is not None and self.rank == 0:  # a bad location fails now, not after an epoch
            ensure_output_dir(self.out_dir, ("model.pt", "log.csv", "history.json"))
            clean_stale_temp_files(self.out_dir)  # left by a run killed while writing
        self._stream = None if stream is None else StreamSource(stream, self)
        if self.config.batch_size % self.world:
            raise ValueError(f"batch_size {self.config.batch_size} must be divisible by the {self.world} ranks")
        fwd = _SampleForward(self.model)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            fwd = nn.parallel.DistributedDataParallel(fwd, device_ids=ids)
        self._forward = fwd
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)
        self.steps_per_epoch = len(self._stream) if self._stream is not None else \
            math.ceil(len(self._train) / self.config.batch_size)
        self.scheduler = self._make_scheduler(self.config.epochs * self.steps_per_epoch)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []

    # -- data ---------------------------------------------------------------------------------
    def _field_widths(self, sample: Sample) -> dict[str, int]:
        widths = {}
        for name in self.fields:
            if name not in sample.fields:
                raise ValueError(f"sample has no field {name!r} (it has {sorted(sample.fields)})")
            v = sample.fields[name]
            widths[name] = 1 if v.dim() == 1 else int(v.shape[1])
        return widths

    def _prepare(self, s: Sample) -> _Prepared:
        feats = None if s.features is None else normalize_features(self.normalizer, s.features)
        at_q = s.features_at_queries
        # kept beside the inputs: resampling thins the points, and the queries keep these exact values
        qfeats = None if at_q is None else (feats if at_q is s.features else normalize_features(self.normalizer, at_q))
        target = None
        if all(f in s.fields for f in self.fields):
            cols = [self.normalizer.normalize_field(f, s.fields[f]) for f in self.fields]
            target = torch.cat([c[:, None] if c.dim() == 1 else c for c in cols], dim=1)
        dev = self.device
        return _Prepared(s.points.to(dev), None if feats is None else feats.to(dev), s.query_points.to(dev),
                         None if target is None else target.to(dev),
                         None if s.weights is None else s.weights.to(dev),
                         None if qfeats is None else qfeats.to(dev))

    def _resampled(self, batch: list[_Prepared], step: int) -> list[_Prepared]:
        """``TrainConfig.resample``: each sample's inputs thinned at random (uniformly or graded
        along a random direction), weights divided by the keep probability; queries and targets kept.
        Each thinned sample records its parent (:class:`~pyengine.models.thinning.Thinning`), so a
        family that supports it filters cached structures instead of rebuilding them every step."""
        c = self.config
        g = torch.Generator().manual_seed(c.seed * 7_919 + self.epoch * 100_003 + step)
        out = []
        for s in batch:
            n, d = s.points.shape
            f = c.resample_min + (1 - c.resample_min) * float(torch.rand((), generator=g))
            pts = s.points.detach().cpu()
            if float(torch.rand((), generator=g)) < 0.5:
                p = torch.full((n,), f, dtype=pts.dtype)
            else:
                u = torch.nn.functional.normalize(torch.randn(d, generator=g, dtype=pts.dtype), dim=0)
                t = pts @ u
                t = (t - t.min()) / (t.max() - t.min()).clamp_min(1e-12)
                p = f + (1 - f) * t
            keep = torch.rand(n, generator=g, dtype=pts.dtype) < p
            if int(keep.sum()) < max(16, n // 20):  # never train on a handful of points
                out.append(s)
                continue
            idx = torch.nonzero(keep)[:, 0].to(s.points.device)
            inv = (1 / p.index_select(0, idx.cpu())).to(s.points)
            thinning = Thinning(s.points, s.weights, idx, inv)
            # no weights: None, so the model estimates the thinned points' density itself (counting
            # each kept point as 1 / p would be a different quadrature from the one it sees unthinned)
            w = None if s.weights is None else thinning.kept_weights(s.weights)
            out.append(_Prepared(s.points.index_select(0, idx),
                                 None if s.features is None else s.features.index_select(0, idx),
                                 s.queries, s.target, w, s.query_features, thinning))
        return out

    def _split(self, pred: Tensor) -> dict[str, Tensor]:
        out, start = {}, 0
        for name, w in self.widths.items():
            block = pred[:, start:start + w]
            out[name] = self.normalizer.denormalize_field(name, block[:, 0] if w == 1 else block)
            start += w
        return out

    # -- optimisation ---------------------------------------------------------------------------
    def _make_scheduler(self, total_steps: int):
        c = self.config
        if c.schedule == "onecycle":
            return torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=c.lr, total_steps=max(total_steps, 2))
        if c.schedule == "cosine":
            def factor(step: int) -> float:
                t = min(step / max(total_steps, 1), 1.0)
                return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
            return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: 1.0)

    def _amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self._amp())

    @contextlib.contextmanager
    def _tf32(self):
        """With amp, what stays float32 (matmuls, the fused GNO kernels) may use TF32 tensor cores too."""
        if not self._amp():
            yield
            return
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old

    def step(self, batch: list[_Prepared]) -> float:
        """One optimizer step on this rank's share of a global batch; returns the global mean loss."""
        if self.config.resample:  # seeded by the global step, which a resumed run restores
            batch = self._resampled(batch, int(self.scheduler.last_epoch))
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._tf32():
            with self._autocast():
                preds = self._forward(batch)
            losses = [F.mse_loss(p.float(), s.target.float()) for p, s in zip(preds, batch)]
            loss = torch.stack(losses).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at epoch {self.epoch}; "
                                         f"lower the learning rate or check the inputs")
            loss.backward()
        if self.config.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        value = loss.detach()
        if self.world > 1:
            dist.all_reduce(value)
            value /= self.world
        return float(value)

    def _epoch_batches(self) -> list[list[_Prepared]]:
        if self._stream is not None:
            return self._stream.batches(self.epoch)
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self._train), generator=g).tolist()
        b = self.config.batch_size
        batches = []
        for i in range(0, len(order), b):
            ids = order[i:i + b]
            if len(ids) % self.world:  # keep shards equal so every rank steps together
                ids = ids[: len(ids) - len(ids) % self.world]
            if ids:
                batches.append([self._train[j] for j in ids[self.rank::self.world]])
        return batches

    def fit(self, resume: str | Path | None = None) -> list[dict[str, Any]]:
        """Train for ``config.epochs`` epochs.

        ``resume``: a checkpoint of an interrupted run of the same setup. Its weights, optimizer and
        schedule state, epoch count, history and normaliser statistics replace this trainer's (the
        statistics are not refitted: the weights were fitted to the checkpoint's), so the remaining
        epochs give bitwise the parameters of an uninterrupted run.
        """
        if resume is not None:
            self._resume(resume)
        c = self.config
        bar = tqdm(range(self.epoch, c.epochs), desc="train", disable=not c.progress or self.rank != 0,
                   initial=self.epoch, total=c.epochs)
        for _ in bar:
            t0 = time.perf_counter()
            losses = [self.step(batch) for batch in self._epoch_batches()]
            self.epoch += 1
            row: dict[str, Any] = {"epoch": self.epoch, "loss": sum(losses) / max(len(losses), 1),
                                   "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
            last = self.epoch == c.epochs
            if self.val_samples and (last or (c.eval_every and self.epoch % c.eval_every == 0)):
                metrics = self.evaluate(self.val_samples)
                row.update({f"val_{f}_{k}": v for f, m in metrics.items() for k, v in m.items()})
            self.history.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4g}")
            if self.rank == 0 and self.out_dir is not None:
                self._write_logs()
                if last or (c.checkpoint_every and self.epoch % c.checkpoint_every == 0):
                    self.save(self.out_dir / "model.pt")
        return self.history

    # -- evaluation, persistence --------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, sample: Sample) -> dict[str, Tensor]:
        """Fields predicted at ``sample.query_points``, in physical units."""
        self.model.eval()
        p = self._prepare(sample)
        with self._tf32(), self._autocast():
            pred = _call(self.model, p.points, p.features, p.queries, p.weights, p.query_features).float()
        return {k: v.cpu() for k, v in self._split(pred).items()}

    def evaluate(self, samples: Sequence[Sample]) -> dict[str, dict[str, float]]:
        """Mean relative L2 / L1 and worst max error per field over ``samples`` (physical units)."""
        sums: dict[str, dict[str, float]] = {f: {"rel_l2": 0.0, "rel_l1": 0.0, "max_err": 0.0} for f in self.fields}
        for s in samples:
            pred = self.predict(s)
            for f in self.fields:
                e = field_errors(pred[f], s.fields[f].to(pred[f].dtype))
                sums[f]["rel_l2"] += e["rel_l2"] / len(samples)
                sums[f]["rel_l1"] += e["rel_l1"] / len(samples)
                sums[f]["max_err"] = max(sums[f]["max_err"], e["max_err"])
        return sums

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the checkpoint (model, normaliser, fields, optimizer state); ``extra`` is
        JSON-friendly context for prediction (feature recipe, frame statistics, metrics)."""
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "epoch": self.epoch, "config": asdict(self.config), "history": self.history}
        if self.point_density is not None and "point_density" not in (extra or {}):
            extra = {**(extra or {}), "point_density": list(self.point_density)}
        return save_checkpoint(path, self.model, normalizer=self.normalizer, fields=self.widths, train_state=state,
                               extra=extra)

    def _resume(self, path: str | Path) -> None:
        payload = load_checkpoint(path)
        where = f"checkpoint {path}"
        if payload["family"] != self.model.family:
            raise ValueError(f"{where} holds a {payload['family']} model, not {self.model.family}")
        state = payload.get("train_state") or {}
        if not isinstance(state, dict):
            raise ValueError(f"{where}: entry 'train_state' has type {type(state).__name__}")
        self._check_resumable(state, where)
        if payload["fields"] and list(payload["fields"].items()) != list(self.widths.items()):  # order = channels
            raise ValueError(f"{where} predicts fields {dict(payload['fields'])}, this run {self.widths}")
        load_weights(self.model, payload["state_dict"], where)
        if payload["normalizer"] is not None:
            # the weights were fitted to the checkpoint's statistics: keep them, never refit on resume
            from ..data.normalize import Normalizer

            self.normalizer = Normalizer.from_state_dict(payload["normalizer"])
            self._train = [self._prepare(s) for s in self.train_samples]
        if "optimizer" in state:
            try:
                self.optimizer.load_state_dict(state["optimizer"])
                self.scheduler.load_state_dict(state["scheduler"])
            except (KeyError, ValueError, TypeError, IndexError) as e:
                raise ValueError(f"{where}: its optimizer or scheduler state does not fit this run "
                                 f"({type(e).__name__}: {e})") from None
        self.epoch = int(state.get("epoch", 0))
        self.history = list(state.get("history", []))

    def _check_resumable(self, state: dict[str, Any], where: str) -> None:
        """Refuse, in one line, a resume whose schedule state cannot continue in this run."""
        saved = state.get("config") or {}
        schedule = saved.get("schedule")
        if schedule is not None and schedule != self.config.schedule:
            raise ValueError(f"{where} was trained with schedule {schedule!r}; resume it with the same schedule "
                             f"(this run has {self.config.schedule!r})")
        sched = state.get("scheduler") or {}
        total = sched.get("total_steps") if isinstance(sched, dict) else None
        ours = getattr(self.scheduler, "total_steps", None)
        if total is not None and ours is not None and total != ours:
            raise ValueError(f"{where} holds a onecycle schedule of {total} steps but this run has {ours} "
                             f"(epochs x steps per epoch); resume with the epochs and batch_size it was trained with")
        epoch = state.get("epoch", 0)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"{where}: train_state epoch must be an integer >= 0, got {epoch!r}")

    def _write_logs(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        keys = sorted({k for row in self.history for k in row}, key=lambda k: (k != "epoch", k))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(self.history)
        atomic_write_text(self.out_dir / "log.csv", buf.getvalue())
        atomic_write_text(self.out_dir / "history.json", json.dumps(self.history, indent=1))
