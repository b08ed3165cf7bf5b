"""pyengine's benchmarks, one module per op family plus model and dataset benchmarks.

Run from a source checkout as ``python -m bench.<name>`` (e.g. ``python -m bench.neighbors
--device cpu --markdown``), or all of them through ``pyengine bench``. Each prints ratios
against the peer measured in the same run; recorded results are in ``bench/RESULTS.md``.
"""
