"""Neural-operator layers built on :mod:`pyengine.ops` and torch."""

from .attention import AttentionAggregation
from .local import LocalBasis, LocalIntegral
