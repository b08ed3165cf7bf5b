"""MP-PDE rollout error against steps on the advection-diffusion trajectories (issue 20).

Generates (or loads from the dataset cache) ``--train`` + ``--test`` trajectories of
:func:`pyengine.data.physics.advection_diffusion2d`, trains an MP-PDE with the
pushforward trick (:func:`pyengine.models.mppde.fit_rollout`), and rolls it out
autoregressively from the first frame of every test trajectory. The table gives the
mean relative L2 error of the predicted frame against the solver's at each horizon,
next to persistence (repeating the initial frame), and the training time.

Examples::

    python -m bench.rollout --quick --markdown
    python -m bench.rollout --train 32 --steps 3000 --horizon 40
"""

from __future__ import annotations

import argparse
import time

import torch


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
    p.add_argument("--no-rescale", action="store_true", help="train without MP-PDE's rescale option")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from pyengine.data.physics import build_advection_diffusion_dataset, trajectory
    from pyengine.models import build
    from pyengine.models.mppde import fit_rollout

    n_train = 12 if args.quick and args.train == 24 else args.train
    steps = args.steps or (400 if args.quick else 2000)
    horizon = args.horizon or (20 if args.quick else 40)
    n_frames = horizon + 1 + 4
    kw = dict(h=args.h, n_frames=max(n_frames, 2 * (args.max_unroll + 2)), n_holes=(1, 3), workers=0, progress=False)
    t0 = time.perf_counter()
    train = [trajectory(s) for s in build_advection_diffusion_dataset(n_train, args.seed, **kw)]
    test = [trajectory(s) for s in build_advection_diffusion_dataset(args.test, args.seed + 1, **kw)]
    t_data = time.perf_counter() - t0
    torch.manual_seed(args.seed)
    model = build("mppde", 1 + 3, 1, 2, hidden=args.hidden, layers=args.layers, radius=1.6 * args.h,
                  max_neighbors=12, dt=0.02, rescale=not args.no_rescale)
    t0 = time.perf_counter()
    losses = fit_rollout(model, train, steps=steps, lr=2e-3, max_unroll=args.max_unroll, seed=args.seed)
    t_train = time.perf_counter() - t0
    err = torch.zeros(horizon)
    persist = torch.zeros(horizon)
    for pts, frames, params in test:
        pred = model.rollout(pts, frames[0], horizon, params=params)
        true = frames[1:horizon + 1]
        err += (pred - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1) / len(test)
        persist += (frames[:1] - true).flatten(1).norm(dim=1) / true.flatten(1).norm(dim=1) / len(test)
    nodes = sum(t[0].shape[0] for t in train) / len(train)
    print(f"# MP-PDE rollout, {n_train} training / {len(test)} test trajectories (h = {args.h}, ~{nodes:.0f} nodes), "
          f"{steps} steps (pushforward up to {args.max_unroll}), hidden {args.hidden}, {args.layers} layers, "
          f"rescale {not args.no_rescale}; data {t_data:.0f} s, training {t_train:.0f} s, "
          f"final loss {sum(losses[-50:]) / len(losses[-50:]):.2e}")
    header = ("rollout steps (frames)", "MP-PDE rel L2", "persistence rel L2")
    sep = "|" if args.markdown else " "
    print(("| " if args.markdown else "") + f" {sep} ".join(header) + (" |" if args.markdown else ""))
    if args.markdown:
        print("|" + "|".join("---" for _ in header) + "|")
    for k in sorted({1, 5, 10, 20, 30, 40, horizon} & set(range(1, horizon + 1))):
        row = (str(k), f"{float(err[k - 1]):.3f}", f"{float(persist[k - 1]):.3f}")
        print(("| " if args.markdown else "") + f" {sep} ".join(row) + (" |" if args.markdown else ""))


if __name__ == "__main__":
    main()
