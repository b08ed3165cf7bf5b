"""The input-checks switch is thread-local, and never turns a bad index into a segfault (issue 14, finding 3).

On main, ``input_checks(False)`` in one thread switched validation off for every thread, and
another thread's ``spmm`` with an out-of-range ``col`` then segfaulted. The call runs in a
subprocess, so the old crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_checks_off_in_one_thread_do_not_affect_another():
    code = textwrap.dedent("""
        import threading
        import torch
        import pyengine
        from pyengine import ops
        x = torch.randn(4, 3)
        rp = torch.tensor([0, 2, 4])
        bad_cols = [torch.tensor([0, 1, 10**9, 3]), torch.tensor([0, -(2**40), 1, 2]), torch.tensor([0, 1, 2, 4])]
        entered, leave = threading.Event(), threading.Event()
        seen = {}

        def other():
            with ops.input_checks(False):
                seen["other"] = pyengine._C.input_checks_enabled()
                entered.set()
                leave.wait()

        t = threading.Thread(target=other)
        t.start()
        entered.wait()
        assert seen["other"] is False and pyengine._C.input_checks_enabled() is True  # thread-local
        for col in bad_cols:
            for c in (col, col.int() if col.abs().max() < 2**31 else col):
                try:
                    ops.spmm(rp, c, None, x)
                except ValueError:
                    pass
                else:
                    raise SystemExit(f"bad col {c.tolist()} accepted")
        # and in the thread that switched them off: the CPU kernels are still guarded
        with ops.input_checks(False):
            for col in bad_cols:
                try:
                    ops.spmm(rp, col, None, x)
                except ValueError:
                    pass
                else:
                    raise SystemExit(f"bad col {col.tolist()} accepted with checks off")
        leave.set()
        t.join()
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, f"rc {r.returncode}: {r.stderr[-2000:]}"
