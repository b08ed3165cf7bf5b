"""Neural-operator layers built on :mod:`pyengine.ops` and torch."""

from .attention import AttentionAggregation
from .fno import FNOBlock, SpectralConvGrid
from .gno import GNOIntegral
from .local import LocalBasis, LocalIntegral
from .magno import MAGNOIntegral, StatisticalEmbedding
from .message_passing import MessagePassing
from .spectral import SpectralConvPoints
from .norms import RMSNorm
from .transformer import ViTProcessor
from .uvit import GAOTProcessor

__all__ = [
    "AttentionAggregation", "FNOBlock", "GAOTProcessor", "GNOIntegral", "LocalBasis", "LocalIntegral",
    "MAGNOIntegral", "MessagePassing", "RMSNorm", "SpectralConvGrid", "SpectralConvPoints", "StatisticalEmbedding",
    "ViTProcessor",
]
