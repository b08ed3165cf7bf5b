"""Neural-operator layers built on :mod:`pyengine.ops` and torch."""

from .spectral import SpectralConvPoints
