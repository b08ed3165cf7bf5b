"""CSR-graph inputs shared by the fuzz properties of the graph ops (attention, gno, local).

``csr_graphs(...)`` draws a valid CSR graph (empty rows, no edges, repeated columns allowed);
``bad_csr(...)`` gives the variants of one structural corruption of such a graph (a column
past the end or negative, a row pointer that decreases or whose end overshoots the edge
count): the first invalid index and far values that wrap when truncated to int32, at fixed
and drawn positions. ``expect_rejected`` runs an op with the validation switch on or off
(off only skips device-sync checks; a bad index must still be a clean error on CPU).
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

import fuzz_harness as fh

from pyengine import ops

CSR_CORRUPTIONS = ("col_high", "col_negative", "rp_decreasing", "rp_last")


@st.composite
def csr_graphs(draw, max_row_len: int = 6, max_rows: int = 10, max_cols: int = 12):
    """(row_ptr, col, N): up to max_rows rows of 0..max_row_len edges into N in 1..max_cols columns."""
    lens = draw(st.lists(st.integers(0, max_row_len), max_size=max_rows))
    N = draw(st.integers(1, max_cols))
    row_ptr = torch.zeros(len(lens) + 1, dtype=torch.long)
    if lens:
        row_ptr[1:] = torch.cumsum(torch.tensor(lens), 0)
    E = int(row_ptr[-1])
    col = torch.tensor(draw(st.lists(st.integers(0, N - 1), min_size=E, max_size=E)), dtype=torch.long)
    return row_ptr, col, N


@st.composite
def bad_csr(draw, graph, kind: str):
    """(kind, [(row_ptr, col), ...]): graph with the corruption kind (one of CSR_CORRUPTIONS), in
    every variant: each bad value below at the first, middle, last and one drawn position.

    Bad columns: N (the first invalid one), N + 1, N + 3, 2**31 and N + 2**32 (which wrap to
    negative or in-range values in int32), and -1, -7, -2**31, -2**33. Bad row pointers: row 1
    (decreasing) or the end (overshooting the edge count) at E + 1, 2, 3, 5 and 2**32.
    A kind that the graph cannot carry (a bad column without edges, a decreasing pointer with
    fewer than two rows) becomes "rp_last", which every graph can carry."""
    row_ptr, col, N = graph
    E = col.numel()
    if kind in ("col_high", "col_negative") and E == 0 or kind == "rp_decreasing" and row_ptr.numel() < 3:
        kind = "rp_last"
    variants = []
    if kind in ("col_high", "col_negative"):
        values = [N, N + 1, N + 3, 2**31, N + 2**32] if kind == "col_high" else [-1, -7, -(2**31), -(2**33)]
        for at in sorted({0, E // 2, E - 1, draw(st.integers(0, E - 1))}):
            for v in values:
                bad = col.clone()
                bad[at] = v
                variants.append((row_ptr, bad))
    else:
        for excess in (1, 2, 3, 5, 2**32):
            bad = row_ptr.clone()
            bad[1 if kind == "rp_decreasing" else -1] = E + excess
            variants.append((bad, col))
    return kind, variants


def expect_rejected(kind: str, checks_off: bool, op, *args) -> None:
    """op(*args) must raise a clean ValueError/TypeError, with input checks on or switched off."""
    with ops.input_checks(not checks_off):
        r = fh.expect_clean_error(lambda: op(*args))
    assert isinstance(r, (ValueError, TypeError)), f"{kind}: accepted"
