"""The `lottery` command: run, export, inspect and plot.

    lottery run --config experiments/configs/demo.yaml [key=value ...]
    lottery run --config experiments/configs/demo.yaml --print-config    # every key, resolved; nothing run
    lottery export runs/demo [--level N] --out ticket.safetensors
    lottery inspect ticket.safetensors
    lottery plot runs/demo
    lottery stability --config experiments/configs/stability_demo.yaml --steps 0,20,100 --levels 0,3
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lottery.errors import LotteryError


def _run(args) -> None:
    from lottery import experiment
    from lottery.config import load_config, to_yaml

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return
    experiment.run(cfg)


def _export(args) -> None:
    from lottery import experiment

    path = experiment.export(Path(args.run_dir), args.level, Path(args.out), seed=args.seed)
    print(f"wrote {path}")
    _inspect(argparse.Namespace(file=path))


def _inspect(args) -> None:
    from lottery.ticket import load_ticket

    ticket = load_ticket(args.file)
    print(f"ticket {args.file}")
    first = ["architecture", "num_classes", "input_shape", "dataset", "level", "seed", "test_acc", "val_acc"]
    meta = ticket.metadata
    for k in [k for k in first if k in meta] + sorted(k for k in meta if k not in first and k not in ("density", "sparsity")):
        print(f"  {k:15s} {meta[k]}")
    print(f"  {'density':15s} {ticket.density:.4%} of prunable weights remain (sparsity {1 - ticket.density:.4%})")
    print("  per-layer sparsity:")
    for name, s in ticket.sparsity_per_layer().items():
        print(f"    {name:40s} {tuple(ticket.masks[name].shape)!s:18s} {s:7.2%}")


def _plot(args) -> None:
    from lottery import experiment

    run_dir = Path(args.run_dir)
    cfg = experiment.load_run_config(run_dir)
    experiment.write_curve(run_dir, cfg)
    print(f"wrote {run_dir / 'curve.csv'}, curve_seeds.csv, curve.png and report.md")


def _ints(text: str) -> list[int]:
    """`0,100,500` -> [0, 100, 500] (space-separated values work too: `--steps 0 100 500`)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 0,100,500") from None


def _stability(args) -> None:
    from lottery.config import load_config
    from lottery.stability import Stability, summary

    cfg = load_config(args.config, args.overrides)
    st = Stability(cfg)
    flat = lambda groups: [v for group in groups for v in group]  # `--steps 0,20 100` -> [0, 20, 100]
    rows = st.run(flat(args.steps), flat(args.levels), args.points)
    print(f"{summary(rows)}; results in {st.dir}")


def parser() -> argparse.ArgumentParser:
    from lottery import __version__

    p = argparse.ArgumentParser(prog="lottery", description="Lottery-ticket experiments: IMP with rewinding.")
    p.add_argument("--version", action="version", version=f"lottery {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run or resume an IMP experiment",
                       epilog="Every key with its resolved value: `lottery run [--config FILE] [key=value ...] "
                              "--print-config`; lottery/config.py says what each key means.")
    r.add_argument("--config", help="YAML config (see experiments/configs/); omitted: the built-in defaults")
    r.add_argument("--print-config", action="store_true",
                   help="print the resolved config (defaults, file, overrides: every key) and exit; nothing is written")
    r.add_argument("overrides", nargs="*", help="key=value overrides, e.g. prune.levels=5 train.optim.lr=0.01")
    r.set_defaults(func=_run)
    e = sub.add_parser("export", help="export a winning ticket from a run folder")
    e.add_argument("run_dir")
    e.add_argument("--level", type=int, help="level to export (default: the sparsest matching level)")
    e.add_argument("--seed", type=int, help="seed folder to export from (default: the run's seed)")
    e.add_argument("--out", required=True, help="output .safetensors file")
    e.set_defaults(func=_export)
    i = sub.add_parser("inspect", help="print a ticket's metadata and per-layer sparsity")
    i.add_argument("file")
    i.set_defaults(func=_inspect)
    st = sub.add_parser("stability", help="instability analysis: error barrier between two copies trained from step k")
    st.add_argument("--config", help="YAML config (see experiments/configs/)")
    st.add_argument("--steps", type=_ints, nargs="+", default=[[0]], help="rewind iterations k, e.g. --steps 0,100,500 (default 0)")
    st.add_argument("--levels", type=_ints, nargs="+", default=[[0]], help="0: the dense network (default); L: the IMP ticket of level L")
    st.add_argument("--points", type=int, default=30, help="points on the linear path (30 in the paper)")
    st.add_argument("overrides", nargs="*", help="key=value overrides (before --steps/--levels)")
    st.set_defaults(func=_stability)
    pl = sub.add_parser("plot", aliases=["report"], help="rebuild the curves (CSV, PNG) and report.md of a run folder, over all its seeds")
    pl.add_argument("run_dir")
    pl.set_defaults(func=_plot)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except LotteryError as e:
        print(f"lottery: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("lottery: interrupted; finished levels are saved, run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as e:  # the file system refused (full disk, permissions, a path that is a file): no traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"lottery: error: {e.strerror or e}{where}; check that path, its permissions and the free space", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
