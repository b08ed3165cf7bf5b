"""Where the Trainer's batches come from when it trains on a file cache instead of in-memory Samples.

``Trainer(model, train, ...)`` accepts a list of :class:`~pyengine.data.Sample` (prepared
once, kept on the device) or a :class:`~pyengine.data.files.CachedSamples` (memory-mapped
arrays on disk). For the latter, :class:`StreamSource` runs a ``torch.utils.data.DataLoader``
with worker processes and a rank-sharded batch sampler: each step loads this rank's
geometries (random point subsets when configured) and moves them to the device.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["StreamSource", "is_stream"]


def is_stream(train) -> bool:
    """Whether ``train`` is a file-cache dataset (rather than a sequence of Samples)."""
    from ..data.files import CachedSamples

    return isinstance(train, CachedSamples)


class StreamSource:
    """Training batches of a :class:`CachedSamples` for a Trainer (its device, ranks, seed and batch size)."""

    def __init__(self, data, trainer) -> None:
        from ..data.files import make_loader

        if list(data.fields) != list(trainer.fields):
            raise ValueError(f"fields {trainer.fields} must be the cache's fields in its order: {list(data.fields)}")
        self.data, self.trainer, self.device, self.model = data, trainer, trainer.device, trainer.model
        self.loader = make_loader(data, trainer.config.batch_size, rank=trainer.rank, world=trainer.world,
                                  seed=trainer.config.seed, workers=data.workers)

    def __len__(self) -> int:
        """Optimizer steps per epoch."""
        return len(self.loader)

    def batches(self, epoch: int) -> Iterator[list]:
        """This rank's share of each global batch of ``epoch``, on the training device."""
        # the trainer's statistics (a resumed run replaces them before its first epoch, and the
        # loader's workers start with the first epoch, so they always see the final ones)
        self.data.set_normalizer(self.trainer.normalizer)
        self.loader.batch_sampler.set_epoch(epoch)
        graphs = getattr(self.model, "graphs", None)
        for items in self.loader:
            if self.data.subsampled and graphs is not None:
                graphs.clear()  # every step draws new points: cached graphs would only pile up
            yield [item.to(self.device) for item in items]
