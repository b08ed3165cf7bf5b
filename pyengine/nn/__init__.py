"""Neural-operator layers built on :mod:`pyengine.ops` and torch."""

from .attention import AttentionAggregation
from .fno import FNOBlock, SpectralConvGrid
from .gno import GNOIntegral
from .local import LocalBasis, LocalIntegral
from .message_passing import MessagePassing
from .spectral import SpectralConvPoints
from .transformer import ViTProcessor

__all__ = [
    "AttentionAggregation", "FNOBlock", "GNOIntegral", "LocalBasis", "LocalIntegral", "MessagePassing",
    "SpectralConvGrid", "SpectralConvPoints", "ViTProcessor",
]
