"""Rollout error against steps on the advection-diffusion trajectories: MP-PDE, GAOT, RIGNO (issue 20).

Generates (or loads from the dataset cache) ``--train`` + ``--test`` trajectories of
:func:`pyengine.data.physics.advection_diffusion2d` and trains, on the same trajectories,
with the pushforward trick (:func:`pyengine.models.mppde.fit_rollout`, same steps, draws
and learning rate):

* ``mppde``: MP-PDE (K = 1), the velocity and scaled diffusivity as PDE parameters, with the
  stencil decoder, no normalisation and no absolute positions by default (``--mppde-decoder``,
  ``--mppde-norm``, ``--mppde-positions``; the paper's configuration did not beat the decay-only
  oracle, see bench/RESULTS.md, 2026-12-06);
* ``gaot``: a time-conditioned GAOT (``time_conditioned=True``: time and lead time as
  inputs, the lead time through the processor's conditional normalisation, as in the
  paper), stepped by :class:`pyengine.models.mppde.TimeStepper` (``u + dt * out``);
* ``rigno``: a time-conditioned RIGNO with the paper's conditioning
  (``time_conditioning="norm"``: time as input, lead time through conditional
  normalisation), stepped the same way.

Each is rolled out autoregressively from the first frame of every test trajectory. The
table gives the mean relative L2 error of the predicted frame against the solver's at
each horizon, next to persistence (repeating the initial frame) and the "decay only" oracle
(the best multiple of the initial frame), and the training times; the header lines give each
model's one-step error of the frame change on training and test trajectories (1 = persistence).
The velocity is passed in units of the mean stream speed (``B_UNIT``), so every input is O(1).

Examples::

    python -m bench.rollout --quick --markdown
    python -m bench.rollout --train 32 --steps 3000 --horizon 40
    python -m bench.rollout --models mppde --quick
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


B_UNIT = 0.35  # the mean stream speed of advection_diffusion2d's SPEED_RANGE: velocities are passed in this unit


def one_step_error(model, trajectories) -> float:
    """Mean over trajectories and frames of ``|step(u_t) - u_{t+1}| / |u_{t+1} - u_t|`` (1 = persistence).

    The error of the predicted one-frame change relative to the true change, from true frames (no rollout).
    """
    errs = []
    was = model.training
    model.eval()
    with torch.no_grad():
        for pts, frames, params in trajectories:
            for t in range(frames.shape[0] - 1):
                kw = {"time": t * model.dt} if hasattr(model, "stepping") else {}
                pred = model.step(pts, frames[t], params, **kw)
                errs.append(float((pred - frames[t + 1]).norm() / (frames[t + 1] - frames[t]).norm()))
    model.train(was)
    return sum(errs) / len(errs)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=24, help="training trajectories (default 24; 12 with --quick)")
    p.add_argument("--test", type=int, default=4, help="test trajectories")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 2000; 400 with --quick)")
    p.add_argument("--horizon", type=int, default=None, help="rollout model calls (default 40; 20 with --quick)")
    p.add_argument("--h", type=float, default=0.08, help="mesh size")
    p.add_argument("--max-unroll", type=int, default=2, help="pushforward: most unrolled steps without gradient")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--no-rescale", action="store_true", help="train without the rescale options (MP-PDE, TimeStepper)")
    p.add_argument("--mppde-decoder", choices=("stencil", "mlp", "cnn"), default="stencil",
                   help="MP-PDE decoder (default 'stencil': learned stencils on the last frame; 'mlp' was the "
                        "default before 2026-12-06 and did not beat the decay-only oracle)")
    p.add_argument("--mppde-norm", choices=("none", "layer", "instance"), default="none",
                   help="MP-PDE normalisation (default 'none'; 'instance', the paper's, normalises over each graph's "
                        "nodes, which erases per-trajectory information)")
    p.add_argument("--mppde-positions", action="store_true",
                   help="feed MP-PDE's encoder the absolute positions (the paper's; off by default: they let the "
                        "model memorise the training geometries)")
    p.add_argument("--loss", choices=("relative", "mse"), default="relative",
                   help="fit_rollout loss: 'relative' (default: MSE over persistence's MSE on each draw) or 'mse'")
    p.add_argument("--models", default="mppde,gaot,rigno", help="comma list of mppde, gaot, rigno")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pyengine.data.physics import build_advection_diffusion_dataset, trajectory
    from pyengine.models import build
    from pyengine.models.mppde import TimeStepper, fit_rollout

    names = [m for m in args.models.split(",") if m]
    bad = sorted(set(names) - {"mppde", "gaot", "rigno"})
    if bad or not names:
        p.error(f"--models takes mppde, gaot and rigno; got {args.models!r}")

    n_train = 12 if args.quick and args.train == 24 else args.train
    steps = args.steps or (400 if args.quick else 2000)
    horizon = args.horizon or (20 if args.quick else 40)
    n_frames = horizon + 1 + 4
    kw = dict(h=args.h, n_frames=max(n_frames, 2 * (args.max_unroll + 2)), n_holes=(1, 3), workers=0, progress=False)
    t0 = time.perf_counter()
    # the velocity (0.09 to 0.7) is divided by the mean stream speed so that every input is O(1)
    b_scale = torch.tensor([1 / B_UNIT, 1 / B_UNIT, 1.0])
    train = [(x, f, q * b_scale) for x, f, q in
             (trajectory(s) for s in build_advection_diffusion_dataset(n_train, args.seed, **kw))]
    test = [(x, f, q * b_scale) for x, f, q in
            (trajectory(s) for s in build_advection_diffusion_dataset(args.test, args.seed + 1, **kw))]
    t_data = time.perf_counter() - t0
    dt = 0.02  # the dataset's frame spacing (advection_diffusion2d's default)

    def make(name):
        torch.manual_seed(args.seed)
        if name == "mppde":
            return build("mppde", 1 + 3, 1, 2, hidden=args.hidden, layers=args.layers, radius=1.6 * args.h,
                         max_neighbors=12, dt=dt, rescale=not args.no_rescale, decoder=args.mppde_decoder,
                         norm=args.mppde_norm, positions=args.mppde_positions)
        if name == "gaot":
            m = build("gaot", 1 + 3, 1, 2, time_conditioned=True, hidden=args.hidden, grid=(16, 16),
                      radii_cells=(1.0, 2.0), encoder_kernel_hidden=(args.hidden,), decoder_kernel_hidden=(args.hidden,),
                      dim=2 * args.hidden, depth=max(2, args.layers - 1), vit_heads=4, patch=2,
                      projection_hidden=args.hidden)
        else:
            m = build("rigno", 1 + 3, 1, 2, time_conditioned=True, time_conditioning="norm", hidden=args.hidden,
                      edge_dim=args.hidden // 2, regional_ratio=0.25, processor_steps=args.layers, max_neighbors=24)
        return TimeStepper(m, dt, "derivative", rescale=not args.no_rescale)

    frames_first = None
    header = ["rollout steps (frames)"]
    errs, info = [], []
    for name in names:
        model = make(name)
        t0 = time.perf_counter()
        losses = fit_rollout(model, train, steps=steps, lr=2e-3, max_unroll=args.max_unroll, seed=args.seed,
                             loss=args.loss)
        t_train = time.perf_counter() - t0
        one_train, one_test = one_step_error(model, train[:8]), one_step_error(model, test)
        err = torch.zeros(horizon)
        persist = torch.zeros(horizon)
        decay = torch.zeros(horizon)
        for pts, frames, params in test:
            pred = model.rollout(pts, frames[0], horizon, params=params)
            true = frames[1:horizon + 1]
            err += (pred - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1) / len(test)
            persist += (frames[:1] - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1) / len(test)
            # oracle: the best multiple c_k u_0 of the initial frame (c_k fitted to the truth): what a model
            # that learns only the decay of the amplitude, and no transport, could reach at best
            u0, tr = frames[0].flatten(), true.flatten(1)
            fit = (tr @ u0 / (u0 @ u0).clamp_min(1e-30))[:, None] * u0
            decay += (fit - tr).norm(dim=1) / tr.norm(dim=1) / len(test)
        errs.append(err)
        frames_first = persist
        decay_first = decay
        header.append(f"{name} rel L2")
        info.append(f"{name}: training {t_train:.0f} s, final loss {sum(losses[-50:]) / len(losses[-50:]):.2e}, "
                    f"{sum(q.numel() for q in model.parameters()) / 1e3:.0f}k parameters, one-step error of the "
                    f"change (1 = persistence) train {one_train:.3f} / test {one_test:.3f}")
        print(f"# done: {info[-1]}; rel L2 at 1/5/10/20 frames " + " / ".join(  # progress, for long runs
            f"{float(err[k - 1]):.3f}" for k in (1, 5, 10, 20) if k <= horizon), file=sys.stderr, flush=True)
    nodes = sum(t[0].shape[0] for t in train) / len(train)
    print(f"# rollout, {n_train} training / {len(test)} test trajectories (h = {args.h}, ~{nodes:.0f} nodes), "
          f"{steps} steps each (pushforward up to {args.max_unroll}), hidden {args.hidden}, {args.layers} layers, "
          f"MP-PDE rescale {not args.no_rescale}, loss {args.loss}; data {t_data:.0f} s")
    for line in info:
        print(f"#   {line}")
    header += ["persistence rel L2", "best c_k u_0 (oracle) rel L2"]
    sep = "|" if args.markdown else " "
    print(("| " if args.markdown else "") + f" {sep} ".join(header) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "|".join("---" for _ in header) + "|")
    for k in sorted({1, 5, 10, 20, 30, 40, horizon} & set(range(1, horizon + 1))):
        row = ([str(k)] + [f"{float(e[k - 1]):.3f}" for e in errs] + [f"{float(frames_first[k - 1]):.3f}"]
               + [f"{float(decay_first[k - 1]):.3f}"])
        print(("| " if args.markdown else "") + f" {sep} ".join(row) + (" |" if args.markdown else ""))


if __name__ == "__main__":
    main()
