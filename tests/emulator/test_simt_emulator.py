"""The SIMT emulator (tests/simt) checked on its own: what it computes and what it catches.

The emulated CUDA tests (test_emulated_*.py) are only as good as the emulator, so
these tests pin down both halves: shuffles, votes, atomics and WMMA TF32 products
give what a GPU gives, and the bugs the emulator claims to expose (a missing
``__syncwarp``, a barrier naming an exited lane, a deadlock, a shared-memory
overrun, a misaligned WMMA pointer, launch-limit violations) are exposed.
"""

from __future__ import annotations

import pathlib

import pytest
import torch


pytestmark = pytest.mark.emulated


@pytest.fixture
def emu(_emu_ops):
    """The emulator without the suite-wide forward/reverse lane-order parametrisation:
    these tests choose the order themselves where it matters."""
    return _emu_ops


def test_every_cuda_source_is_emulated():
    """Each csrc/<family>/*_cuda.cu is built by exactly one emulation back end (the SIMT fiber
    emulator, or the Thrust host build for Thrust-written sources), so a new kernel file cannot
    be left without emulated coverage by a forgotten list entry; each back end also builds the
    argument checks of every family it holds, and each Thrust source has an emulated test module."""
    import cuda_emulation as ce

    simt_be, thrust_be = ce._simt_backend(), ce._thrust_backend(ce.ROOT)
    simt = set(simt_be.sources) - set(ce.SELFTEST_SOURCES)
    thrust = set(thrust_be.sources) - set(ce.THRUST_SELFTEST_SOURCES)
    assert set(ce.ALL_CUDA_SOURCES) == simt | thrust and not simt & thrust
    assert {"csrc/segment/segment_cuda.cu", "csrc/nufft/spread_cuda.cu", "csrc/gno/gno_tc_cuda.cu"} <= simt
    assert "csrc/neighbors/kdtree_cuda.cu" in thrust
    assert all((ce.ROOT / f).exists() for f in (*simt, *thrust, *simt_be.host_sources, *thrust_be.host_sources))
    for be, cus in ((simt_be, simt), (thrust_be, thrust)):
        families = {pathlib.Path(f).parent.name for f in cus}
        args = {f for f in be.host_sources if f.endswith("_args.cpp")}
        assert {pathlib.Path(f).parent.name for f in args} <= families, be.name
        assert {f for f in (f"csrc/{fam}/{fam}_args.cpp" for fam in families) if (ce.ROOT / f).exists()} <= args
    tests = "\n".join(p.read_text() for p in (ce.ROOT / "tests").glob("*/test_*_emulated.py"))
    assert 'EMULATION_BACKEND = "thrust_host"' in tests


def run(emu, name, a=None, b=None):
    empty = torch.zeros(0)
    return emu.simt_selftest(name, empty if a is None else a, empty if b is None else b)


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_shuffles_and_ballot(emu, monkeypatch, order):
    monkeypatch.setenv("PYE_SIMT_ORDER", order)
    out = run(emu, "shuffles")
    lane = torch.arange(32, dtype=torch.int32)
    assert (out[:, 0] == 496).all()  # xor butterfly: every lane holds the sum 0 + ... + 31
    assert (out[:, 1] == 50).all()  # broadcast from lane 5
    assert torch.equal(out[:, 2], torch.where(lane + 3 < 32, lane + 3, lane))  # down: out of range keeps its own
    assert torch.equal(out[:, 3], torch.where(lane >= 2, lane - 2, lane))
    ballot = sum(1 << k for k in range(0, 32, 3))
    assert (out[:, 4] == torch.tensor(ballot, dtype=torch.int64).to(torch.int32)).all()


def test_atomics_count_every_thread(emu):
    assert run(emu, "atomics").item() == 3 * 64


def test_missing_syncwarp_is_exposed(emu):
    good = run(emu, "neighbour_read_synced")
    assert torch.equal(good, (torch.arange(32, dtype=torch.int32) + 1) % 32)
    bad = run(emu, "neighbour_read_unsynced")
    assert not torch.equal(bad, good), "a read of another lane's unsynchronised write must see stale data"
    assert (bad == -1).any()  # shared memory starts as 0xFF bytes


@pytest.mark.parametrize(
    "name,message",
    [
        ("exited_lane", "exited"),
        ("deadlock", "deadlock"),
        ("overrun", "past the end of dynamic shared memory"),
        ("empty_grid", "empty grid"),
        ("big_smem_without_optin", "without cudaFuncAttributeMaxDynamicSharedMemorySize"),
        ("wmma_misaligned", "256-bit aligned"),
    ],
)
def test_misuse_raises(emu, name, message):
    with pytest.raises(RuntimeError, match=message):
        run(emu, name)


def test_big_smem_with_optin_runs(emu):
    run(emu, "big_smem_with_optin")


def _tf32_truncate(t):
    return (t.contiguous().view(torch.int32) & ~0x1FFF).view(torch.float32)


def _tf32_round(t):
    # round to nearest, ties away from zero, 10 mantissa bits (cvt.rna.tf32.f32)
    return ((t.contiguous().view(torch.int32) + 0x1000) & ~0x1FFF).view(torch.float32)


def test_wmma_tf32_product(emu):
    g = torch.Generator().manual_seed(0)
    A, B, C = torch.randn(16, 8, generator=g), torch.randn(8, 16, generator=g), torch.randn(16, 16, generator=g)
    D = run(emu, "wmma", A, torch.cat([B.reshape(-1), C.reshape(-1)]))
    # the kernel rounds its inputs to TF32; the product of TF32 numbers is exact in float64
    ref = (_tf32_truncate(_tf32_round(A)).double() @ _tf32_truncate(_tf32_round(B)).double() + C.double()).float()
    torch.testing.assert_close(D, ref, atol=1e-5, rtol=1e-5)
    full = A.double() @ B.double() + C.double()
    assert (D.double() - full).abs().max() > 1e-5, "TF32 products must differ from float32 ones"


def test_wmma_store_needs_a_barrier(emu):
    d = run(emu, "wmma_unsynced")
    assert torch.isnan(d).any(), "reading a stored tile without __syncwarp must see other lanes' shares missing"
