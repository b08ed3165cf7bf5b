"""torch.compile(fullgraph=True) against eager: nufft1/nufft2 with the FINUFFT options, NUFFTPlan and NUFFT3Plan."""

from __future__ import annotations

import math

import torch

from pyengine.ops import NUFFT3Plan, NUFFTPlan, nufft1, nufft2


def test_options_and_plans_compile_fullgraph():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 2, generator=g, dtype=torch.float64) * 2 * math.pi
    s = torch.randn(20, 2, generator=g, dtype=torch.float64) * 5
    c = torch.randn(2, 30, generator=g, dtype=torch.complex128)
    plan = NUFFTPlan(x, (6, 5), eps=1e-9, dtype=torch.complex128, modeord=1, upsampfac=1.25)
    plan3 = NUFFT3Plan(x, s, eps=1e-9, dtype=torch.complex128)

    def fn(x, c):
        f = nufft1(x, c, (4, 7), eps=1e-9, modeord=1, upsampfac=1.25)
        return nufft2(x, f, eps=1e-9), plan.type2(plan.type1(c)), plan3.execute(c)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    cr = c.clone().requires_grad_()
    out = compiled(x, cr)
    ce = c.clone().requires_grad_()
    ref = fn(x, ce)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b)
    sum(o.abs().sum() for o in out).backward()
    sum(o.abs().sum() for o in ref).backward()
    torch.testing.assert_close(cr.grad, ce.grad)
