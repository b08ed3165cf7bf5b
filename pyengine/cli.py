"""Command line: ``pyengine demo | train | predict | bench | info``.

``demo`` is the main job the README runs: it builds (or reuses from the disk
cache) a dataset of parametric CAD bodies with potential-flow pressure, trains
GAOT on it, evaluates on held-out shapes and writes metrics, the checkpoint,
``.vtu`` predictions and a figure.
"""

from __future__ import annotations

import argparse
import errno
import subprocess
import sys
from pathlib import Path

import torch


def _device(name: str | None) -> str:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("pyengine: --device cuda requested but no CUDA device is available")
    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def _cmd_info(args) -> int:
    from .info import info

    info()
    return 0


def _cmd_demo(args) -> int:
    from .pipeline.demo import run_demo
    from .pipeline.validate import ensure_output_dir

    device = _device(args.device)
    ensure_output_dir(args.out, ("model.pt", "metrics.json", "predictions.png"))  # before the dataset is built
    quick = args.quick or (device == "cpu" and not args.full)
    if quick and not args.quick:
        print("pyengine demo: no GPU, so the quick configuration runs (pass --full to force the GPU-sized one)")
    result = run_demo(out=Path(args.out), quick=quick, device=device, workers=args.workers)
    return 0 if result["passed"] else 1


def _cmd_train(args) -> int:
    from .pipeline.run import train_from_config

    result = train_from_config(args.config, device=args.device, out=args.out)
    return 0 if result.get("finite", True) else 1


def _cmd_predict(args) -> int:
    import warnings

    from .geometry.io import PartialMeshError
    from .pipeline.predict import check_predict_args, predict_file

    png = None if args.no_png else (args.png or str(Path(args.out).with_suffix(".png")))
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    conditions = {}
    for item in args.condition:
        name, sep, value = item.partition("=")
        try:
            conditions[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(f"--condition takes NAME=NUMBER, got {item!r}")
    check_predict_args(args.checkpoint, args.mesh, args.out, png=png, chunk_size=args.chunk_size, units=args.units,
                       cad_size=args.cad_size, device=device)
    _device(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = predict_file(args.checkpoint, args.mesh, args.out, device=device, chunk_size=args.chunk_size,
                                  units=args.units, allow_partial=args.allow_partial, png=png, cad_size=args.cad_size,
                                  progress=sys.stderr.isatty(), conditions=conditions)
        except PartialMeshError as e:
            raise ValueError(f"{e}; pass --allow-partial to predict on the readable part") from None
        finally:  # warnings as single lines, never Python's "file:line: UserWarning" form
            for w in caught:
                print(f"pyengine predict: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
    print("\n".join(result.summary))
    return 0


BENCHMARKS = ("segment", "neighbors", "nufft", "gno", "attention", "models")


def _source_checkout(start: Path) -> Path | None:
    """The folder at or above ``start`` that holds pyengine's ``bench`` package, if any."""
    for folder in (start, *start.parents):
        if (folder / "bench" / "__init__.py").is_file() and (folder / "bench" / "_timing.py").is_file():
            return folder
    return None


def _cmd_bench(args) -> int:
    root = _source_checkout(Path.cwd().resolve())
    if root is None:
        raise SystemExit("pyengine bench: the benchmarks ship with the source, not the installed package; "
                         "run it inside a pyengine source checkout (the folder holding bench/)")
    status = 0
    for name in (s for s in BENCHMARKS if not args.only or s in args.only):
        cmd = [sys.executable, "-m", f"bench.{name}", "--device", _device(args.device)]
        if args.quick:
            cmd.append("--quick")
        print(f"\n$ python {' '.join(cmd[1:])}", flush=True)
        status |= subprocess.call(cmd, cwd=root)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyengine", description="Geometry-aware neural-operator engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print version, torch, CUDA and OpenMP facts").set_defaults(fn=_cmd_info)

    demo = sub.add_parser("demo", help="generate bodies, train GAOT, evaluate, export (the main job)")
    demo.add_argument("--quick", action="store_true", help="CPU-sized run (about 10 minutes on 2 cores)")
    demo.add_argument("--full", action="store_true", help="GPU-sized run even without a GPU")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    demo.add_argument("--workers", type=int, default=None, help="dataset worker processes (default: CPU count)")
    demo.set_defaults(fn=_cmd_demo)

    train = sub.add_parser("train", help="train from a YAML config (dataset, model, trainer)")
    train.add_argument("--config", required=True, help="YAML file; see pyengine.pipeline.run_config")
    train.add_argument("--out", default=None, help="override the config's output directory")
    train.add_argument("--device", choices=["cpu", "cuda"], default=None, help="override the config's device")
    train.set_defaults(fn=_cmd_train)

    pred = sub.add_parser("predict", help="predict fields on a mesh file with a trained checkpoint")
    pred.add_argument("--checkpoint", required=True, help="model.pt written by demo or train")
    pred.add_argument("--mesh", required=True, help="input mesh: STL, OBJ, PLY, OFF, GLB, STEP/IGES/BREP, VTU, VTP, "
                                                    "VTK, MSH, ... (each may be .gz)")
    pred.add_argument("--out", required=True, help="output mesh with the predicted fields: .vtu, .vtp, .vtk or .ply")
    pred.add_argument("--device", choices=["cpu", "cuda"], default=None)
    pred.add_argument("--chunk-size", type=int, default=200_000, help="queries decoded at once (memory bound)")
    pred.add_argument("--condition", action="append", default=[], metavar="NAME=VALUE",
                      help="a per-sample scalar the model was trained with (e.g. u_inf=40); repeat for several")
    pred.add_argument("--units", choices=["mm", "cm", "m", "in"], default=None,
                      help="length unit of the mesh when the file does not declare one (default: the checkpoint's)")
    pred.add_argument("--allow-partial", action="store_true",
                      help="predict on the readable part of a truncated or damaged file (with a warning)")
    pred.add_argument("--png", default=None, help="preview image (default: the output path with .png)")
    pred.add_argument("--no-png", action="store_true", help="write no preview image")
    pred.add_argument("--cad-size", type=float, default=None,
                      help="STEP/IGES/BREP: largest triangle edge in the file's unit (default: 1%% of the diagonal)")
    pred.set_defaults(fn=_cmd_predict)

    bench = sub.add_parser("bench", help="run the kernel and model benchmarks (ratio tables vs peers)")
    bench.add_argument("--device", choices=["cpu", "cuda"], default=None)
    bench.add_argument("--quick", action="store_true", help="small sizes")
    bench.add_argument("--only", nargs="+", default=None, choices=BENCHMARKS, help="run only these benchmarks")
    bench.set_defaults(fn=_cmd_bench)

    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except KeyboardInterrupt:
        print(f"pyengine {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not _is_user_error(e):
            raise  # a bug: keep the traceback
        print(f"pyengine {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


#: Exceptions that report a user's mistake or environment (bad file, bad value, full disk), not a bug.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
               PermissionError, FloatingPointError)
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.ENAMETOOLONG}


def _is_user_error(e: BaseException) -> bool:
    return isinstance(e, USER_ERRORS) or (isinstance(e, OSError) and e.errno in _USER_ERRNOS)


def _one_line(e: BaseException) -> str:
    """The message on one line (no traceback): OSErrors as 'reason: file', others as their text."""
    if isinstance(e, OSError) and e.strerror:  # raised by the OS, e.g. [Errno 28] No space left on device
        text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
