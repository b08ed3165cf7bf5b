"""Graph layouts and tolerances shared by the emulated CUDA tests of the attention and local families.

The layouts exist to cut rows and columns into several ``kChunk`` (1024-edge) pieces on the CUDA side,
partial last piece included, while staying small enough for the emulator (tests/simt).
"""

from __future__ import annotations

import torch

f64, f32, f16, bf16 = torch.float64, torch.float32, torch.float16, torch.bfloat16
i64, i32 = torch.int64, torch.int32
TOL = {f64: dict(atol=1e-11, rtol=1e-10), f32: dict(atol=2e-5, rtol=2e-4),
       f16: dict(atol=1e-2, rtol=1e-2), bf16: dict(atol=1e-2, rtol=1e-2)}
N_SRC = 100
HUGE_COL = 7  # the source point that most edges of the "huge_col" layout point to


def make_layout(make_csr, name: str, g: torch.Generator):
    """(row_ptr, col int64) of a named layout over N_SRC source points."""
    if name == "random":  # short rows, some empty
        row_ptr = make_csr(M=16, max_deg=40, empty_frac=0.2)
    elif name == "one_huge":  # a 2500-edge row: pieces of 1024, 1024, 452
        row_ptr = make_csr(M=12, pattern="one_huge", max_deg=40, huge=2500)
    elif name == "two_huge":  # rows of 1500 and 1527 edges, empty rows at both ends
        row_ptr = make_csr(M=12, pattern="two_huge", max_deg=40, huge=1500)
    elif name == "huge_col":  # short rows, but ~2400 of their edges share one source point
        row_ptr = make_csr(lens=[40] * 70)
    elif name == "no_edges":
        row_ptr = make_csr(lens=[0, 0, 0, 0])
    else:
        raise ValueError(name)
    E = int(row_ptr[-1])
    col = torch.randint(0, N_SRC, (E,), generator=g)
    if name == "huge_col":
        col[torch.rand(E, generator=g) < 0.85] = HUGE_COL
    # These layouts exist to cut rows / columns into several kChunk pieces, partial last one included.
    if name in ("one_huge", "two_huge"):
        assert int((row_ptr[1:] - row_ptr[:-1]).max()) > 1024
    if name == "huge_col":
        assert int((col == HUGE_COL).sum()) > 2048
    return row_ptr, col
