"""The `lottery` command: run, export, inspect and plot.

    lottery run --config experiments/configs/demo.yaml [key=value ...]
    lottery run --config experiments/configs/demo.yaml --print-config    # every key, resolved; nothing run
    lottery export runs/demo [--level N] --out ticket.safetensors
    lottery export runs/demo --format compact|shrunk|onnx --out model.safetensors|.pt2|.onnx
    lottery export runs/bert_rte --format hf --out folder       # a folder from_pretrained loads
    lottery export runs/strong --branch edgepopup --format supermask --out strong.safetensors   # seed + packed mask
    lottery inspect ticket.safetensors
    lottery plot runs/demo
    lottery list [models|datasets|strategies|branches|presets|distributions|optimizers|policies|loggers|configs]
    lottery stability --config experiments/configs/stability_demo.yaml --steps 0,20,100 --levels 0,3
    lottery sweep --config experiments/configs/demo.yaml prune.fraction=0.2,0.5 seeds=[0,1] [--launcher slurm] [--status]
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from lottery.core.errors import LotteryError


def _run(args) -> None:
    from lottery.cli import experiment
    from lottery.cli.config import load_config, to_yaml
    from lottery.cli.keys import check_keys

    cfg = load_config(args.config, args.overrides)
    if args.print_config:  # every key as the run would record it: its methods' options resolved
        print(to_yaml(check_keys(cfg)[0]), end="")
        return
    quiet_libraries()
    experiment.run(cfg, verbose=args.verbose)


def _export(args) -> None:
    from lottery.cli import tickets

    if args.format != "ticket":  # the deployable formats go through the ticket, see lottery/export
        path = tickets.export_as(args.run_dir, args.format, args.out, args.level, args.seed, args.dtype,
                                 branch=args.branch)
        print(f"wrote {path}")
        return
    if args.dtype != "fp32":
        raise LotteryError(f"--dtype {args.dtype} applies to --format compact only")
    path = tickets.export(Path(args.run_dir), args.level, Path(args.out), seed=args.seed, branch=args.branch)
    print(f"wrote {path}")
    _inspect(argparse.Namespace(file=path))


def _inspect(args) -> None:
    from lottery.core.files import read_safetensors
    from lottery.core.layout import RunLayout
    from lottery.core.ticket import load_ticket
    from lottery.export.compact import FORMAT as COMPACT
    from lottery.export.compact import load_compact

    path = Path(args.file)
    if path.is_dir():  # a run folder: its winning ticket
        if not (RunLayout(path).config.exists() and RunLayout(path).ticket_file.exists()):
            raise LotteryError(f"{path} is a folder without a ticket.safetensors (a run folder has one once a winning "
                               "ticket is named: see its report.md); give a ticket or a compact export")
        path = RunLayout(path).ticket_file
    try:
        compact = read_safetensors(path, "file", "", tensors=False)[1].get("format") == COMPACT
    except LotteryError:  # missing or damaged: the ticket loader says which, and what to do
        compact = False
    if compact:
        compact = load_compact(path)
        kind, meta, masks = "compact export", compact.metadata, compact.masks
    else:
        ticket = load_ticket(path)
        kind, meta, masks = "ticket", ticket.metadata, ticket.masks
    print(f"{kind} {path}")
    first = ["architecture", "num_classes", "input_shape", "dataset", "level", "seed", "test_acc", "val_acc"]
    for k in [k for k in first if k in meta] + sorted(k for k in meta if k not in first and k not in ("density", "sparsity")):
        print(f"  {k:15s} {meta[k]}")
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    print(f"  {'density':15s} {kept:.4%} of prunable weights remain (sparsity {1 - kept:.4%})")
    print("  per-layer sparsity:")
    for name, m in masks.items():
        print(f"    {name:40s} {tuple(m.shape)!s:18s} {1 - int(m.sum()) / m.numel():7.2%}")


def _plot(args) -> None:
    from lottery.cli import experiment, tickets
    from lottery.core.errors import LotteryError
    from lottery.core.layout import RunLayout

    if len(args.run_dir) > 1 or args.out:
        from lottery.report.curve import compare
        from lottery.report.rows import seed_rows

        if not args.out or not args.out.endswith(".png"):
            raise LotteryError("lottery plot RUN RUN ... draws one curve of several runs: name its picture, --out FILE.png")
        runs = [RunLayout(Path(d)) for d in args.run_dir]
        cfgs = {run.path.name: (run, tickets.load_run_config(run.path)) for run in runs}
        if len(cfgs) < len(runs):
            raise LotteryError(f"the runs {args.run_dir} must have different folder names: they name the curves")
        print(f"wrote {compare({n: (r, c, seed_rows(r)) for n, (r, c) in cfgs.items()}, args.out)}")
        return
    run = RunLayout(Path(args.run_dir[0]))
    experiment.write_curve(run, tickets.load_run_config(run.path))
    print(f"wrote {run.curve('csv')}, {run.curve_seeds.name}, {run.curve('png').name} and {run.report.name}")


def _list(args) -> None:
    from lottery.cli.catalog import listing

    print(listing(args.what))


def _ints(text: str) -> list[int]:
    """`0,100,500` -> [0, 100, 500] (space-separated values work too: `--steps 0 100 500`)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers like 0,100,500") from None


def _stability(args) -> None:
    from lottery.cli.config import load_config
    from lottery.cli.stability import Stability, verdict

    cfg = load_config(args.config, args.overrides)
    quiet_libraries()
    st = Stability(cfg)
    flat = lambda groups: [v for group in groups for v in group]  # `--steps 0,20 100` -> [0, 20, 100]
    rows = st.run(flat(args.steps), flat(args.levels), args.points)
    print(f"{verdict(rows)}; results in {st.dir}")


_LAUNCHER_FLAGS = {"launcher": "kind", "parallel": "parallel", "partition": "partition", "time": "time_min",
                   "gpus": "gpus", "cpus": "cpus", "mem": "mem_gb"}


def _sweep(args) -> int:
    from lottery.cli.sweep import Sweep, format_status

    flags = [f"launcher.{key}={getattr(args, flag)}" for flag, key in _LAUNCHER_FLAGS.items() if getattr(args, flag) is not None]
    sweep = Sweep(args.config, args.overrides + flags)
    if args.status:
        rows = sweep.status()
        print(f"sweep {sweep.base.name}: {len(sweep.points)} experiment(s) x {len(sweep.seeds)} seed(s) ({sweep.dir})")
        print(format_status(rows))
        sweep.summary()
        return 0
    if args.dry_run:
        print(f"sweep {sweep.base.name}: {len(sweep.jobs)} job(s) on {sweep.base.launcher.kind}, to be run as:")
        for job in sweep.jobs:
            print(f"  {sweep.run_of(job).command()}")
        return 0
    return sweep.submit()


def parser() -> argparse.ArgumentParser:
    from lottery import __version__

    p = argparse.ArgumentParser(prog="lottery", description="Lottery-ticket experiments: IMP with rewinding.")
    p.add_argument("--version", action="version", version=f"lottery {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_run_arguments, _export_arguments, _inspect_arguments, _stability_arguments, _sweep_arguments,
                _plot_arguments, _list_arguments):
        add(sub)
    return p


def _run_arguments(sub) -> None:
    r = sub.add_parser("run", help="run or resume an IMP experiment",
                       epilog="Every key with its resolved value: `lottery run [--config FILE] [key=value ...] "
                              "--print-config`; lottery/core/schema.py says what each key means.")
    r.add_argument("--config", help="YAML config (see experiments/configs/); omitted: the built-in defaults")
    r.add_argument("--print-config", action="store_true",
                   help="print the resolved config (defaults, file, overrides: every key) and exit; nothing is written")
    r.add_argument("--verbose", action="store_true", help="also say how each level's runs are grouped as lanes, and why")
    r.add_argument("overrides", nargs="*", help="key=value overrides, e.g. prune.levels=5 train.optim.lr=0.01")
    r.set_defaults(func=_run)


def _export_arguments(sub) -> None:
    e = sub.add_parser("export", help="export a winning ticket from a run folder, as a research ticket or for deployment")
    e.add_argument("run_dir", help="a run folder (or, for the deployable formats, a ticket file)")
    e.add_argument("--format", default="ticket", choices=["ticket", "compact", "shrunk", "onnx", "hf", "supermask"],
                   help="ticket: masks + rewind + final weights (research); compact: surviving values + bit-packed "
                        "mask (safetensors); shrunk: dead units removed (torch.export .pt2); onnx: the shrunk model; "
                        "hf: a folder from_pretrained loads (hf: models), masks in masks.safetensors; supermask: a "
                        "strong ticket (--branch edgepopup) as its seed and packed mask, ~1 bit per weight")
    e.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="values of --format compact")
    e.add_argument("--level", type=int, help="level to export (default: the sparsest matching level)")
    e.add_argument("--seed", type=int, help="seed folder to export from (default: the run's seed)")
    e.add_argument("--branch", help="a branch's network instead of IMP's ticket (e.g. edgepopup, srste; default "
                                    "level: its sparsest that matches the dense network)")
    e.add_argument("--out", required=True, help="output file: .safetensors (ticket, compact), .pt2 (shrunk), .onnx; "
                                                "a new folder for hf")
    e.set_defaults(func=_export)


def _inspect_arguments(sub) -> None:
    i = sub.add_parser("inspect", help="print a ticket's (or a compact export's) metadata and per-layer sparsity")
    i.add_argument("file", help="a ticket file, a compact export, or a run folder (its ticket.safetensors)")
    i.set_defaults(func=_inspect)


def _stability_arguments(sub) -> None:
    st = sub.add_parser("stability", help="instability analysis: error barrier between two copies trained from step k")
    st.add_argument("--config", help="YAML config (see experiments/configs/)")
    st.add_argument("--steps", type=_ints, nargs="+", default=[[0]], help="rewind iterations k, e.g. --steps 0,100,500 (default 0)")
    st.add_argument("--levels", type=_ints, nargs="+", default=[[0]], help="0: the dense network (default); L: the IMP ticket of level L")
    st.add_argument("--points", type=int, default=30, help="points on the linear path (30 in the paper)")
    st.add_argument("overrides", nargs="*", help="key=value overrides (before --steps/--levels)")
    st.set_defaults(func=_stability)


def _sweep_arguments(sub) -> None:
    sw = sub.add_parser("sweep", help="run a grid of experiments x seeds as jobs: on this machine or as a SLURM job array",
                        description="key=a,b,c is an axis of the grid (one experiment per value), key=v applies to every "
                                    "experiment, seeds=[0,1] runs each experiment with these seeds. Jobs already finished, "
                                    "queued or running are not submitted again.")
    sw.add_argument("--config", help="YAML config (see experiments/configs/); its launcher: section sets the defaults below")
    sw.add_argument("overrides", nargs="*", help="key=value or key=a,b,c (an axis), seeds=[0,1], e.g. prune.fraction=0.2,0.5")
    sw.add_argument("--launcher", choices=["local", "slurm"], help="local: on this machine (default); slurm: one job array")
    sw.add_argument("--parallel", type=int, help="jobs running at once (local processes, or the array's %%N limit)")
    sw.add_argument("--partition", help="SLURM partition")
    sw.add_argument("--time", type=int, help="minutes per job (default 240); a job stopped by the limit is requeued and resumes")
    sw.add_argument("--gpus", type=int, help="GPUs per job")
    sw.add_argument("--cpus", type=int, help="CPUs per task")
    sw.add_argument("--mem", type=float, help="memory per job, GB")
    sw.add_argument("--status", action="store_true", help="list each experiment/seed: finished levels, state, failed job's log; rebuild the summary")
    sw.add_argument("--dry-run", action="store_true", help="print the jobs' `lottery run` commands; submit nothing")
    sw.set_defaults(func=_sweep)


def _plot_arguments(sub) -> None:
    pl = sub.add_parser("plot", aliases=["report"], help="rebuild the curves (CSV, PNG) and report.md of a run folder, over all "
                                                         "its seeds; several run folders: one curve of them all (--out)")
    pl.add_argument("run_dir", nargs="+")
    pl.add_argument("--out", help="with several run folders: the PNG of their curves on one plot")
    pl.set_defaults(func=_plot)


def _list_arguments(sub) -> None:
    ls = sub.add_parser("list", help="every name a key can take (models, branches, strategies, ...), one line each")
    ls.add_argument("what", nargs="?", help="models, datasets, strategies (criteria), branches, presets, distributions, "
                                            "optimizers, policies, loggers or configs; omitted: all of them")
    ls.set_defaults(func=_list)


def quiet_libraries() -> None:
    """Lightning's banners and hints (GPU available, ...) at every level would bury the one line per level.

    Called after Lightning is imported: importing it sets its loggers' level.
    """
    import pytorch_lightning  # noqa: F401

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Our tensors live in memory (or on the device); DataLoader worker processes would only add overhead.
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = args.func(args)
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
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
