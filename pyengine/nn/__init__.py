"""Neural-operator layers built on :mod:`pyengine.ops` and torch."""

from .integral import GNOIntegral
from .message_passing import MessagePassing

__all__ = ["GNOIntegral", "MessagePassing"]
