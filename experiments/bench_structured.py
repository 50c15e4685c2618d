"""Structured tickets against unstructured ones: the network a structured ticket leaves is smaller for real.

From two runs of one convnet on the digits (`make structured-conv`: structured IMP and its unstructured counterpart),
at the sparsest structured level that matches the dense network (lottery's rule: validation accuracy within the
tolerance) and the unstructured level nearest to it in weights remaining, prints for the dense model, the
unstructured ticket (masked, and its best sparse export: shrunk, with CSR Linear layers where `sparsify` measured
them faster) and the structured ticket's smaller model (the shrunk export, same logits): parameters, multiply-
accumulates, and latency at batch 1 and 64 as ratios to the dense model, medians of alternating rounds measured side
by side. Then the same for ResNet-20 on CIFAR-10-shaped random inputs, masks from its initialisation: the structured
one by channel_norm at the digits level's share of channels, the unstructured one by layer magnitude with the same
per-layer weight counts. And the picture: test accuracy against latency at batch 64 of every level of both runs.
Without the run folders (a fresh machine, `experiments/gpu_check.sh`), the digits convnet is measured the way
ResNet-20 is, with masks from its initialisation.

    .venv/bin/python experiments/bench_structured.py --structured runs/structured_conv_digits \\
        --unstructured runs/structured_conv_digits_unstructured --plot docs/structured_latency.png
    .venv/bin/python experiments/bench_structured.py --device cuda      # the GPU's numbers (gpu_check.sh)
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery import MaskManager  # noqa: E402
from lottery.core.files import load_tensors  # noqa: E402
from lottery.core.macs import step_macs  # noqa: E402
from lottery.export import shrink, sparsify  # noqa: E402
from lottery.models import create_model  # noqa: E402

DIGITS, CIFAR = (1, 8, 8), (3, 32, 32)


def _run(folder: Path, seed: int):
    """(config, rows of IMP's levels) of a finished run folder."""
    from lottery.cli.tickets import load_run_config
    from lottery.core.layout import RunLayout
    from lottery.report.rows import IMP_METHOD, seed_rows

    run = RunLayout(folder)
    return load_run_config(folder), seed_rows(run, seed=seed, method=IMP_METHOD)


def _trained(folder: Path, cfg, seed: int, level: int):
    """(model with the level's trained weights, its MaskManager) of a run folder."""
    from lottery.core.layout import RunLayout

    level_dir = RunLayout(folder).seed(seed).level(level)
    model = create_model(cfg.model.name, 10, DIGITS)
    model.load_state_dict(load_tensors(level_dir.final))
    masks = MaskManager(model, include=list(load_tensors(level_dir.mask)), input_shape=DIGITS)
    masks.set_masks(load_tensors(level_dir.mask))
    return model.eval(), masks


def _from_init(name: str, shape, units: float, seed: int = 0):
    """(dense, structured, unstructured) models of `name` from one initialisation: channel_norm keeping `units` of
    each layer's channels, and layer magnitude with the structured masks' per-layer weight counts."""
    torch.manual_seed(seed)
    dense = create_model(name, 10, shape).eval()
    structured, unstructured = copy.deepcopy(dense), copy.deepcopy(dense)
    s_masks = MaskManager(structured, input_shape=shape)
    s_masks.prune_to({n: units for n in s_masks.names}, "channel_norm")
    u_masks = MaskManager(unstructured)
    u_masks.prune_to(s_masks.densities("weights"), "layer_magnitude")
    return dense, (structured, s_masks), (unstructured, u_masks)


def _macs(model, shape, masks=None) -> tuple[int, int]:
    """(multiply-accumulates computed per example, those of nonzero weights)."""
    from lottery.core.macs import layer_macs

    computed = step_macs(model, shape, 1)
    if masks is None:
        return computed, computed
    per_layer = layer_macs(model, shape)
    density = masks.densities("weights")
    return computed, int(sum(m * density.get(n, 1.0) for n, m in per_layer.items()))


def _params(model, masks=None) -> int:
    total = sum(p.numel() for p in model.parameters())
    return total if masks is None else total - sum(int((~m).sum()) for m in masks.masks.values())


def variants(dense, structured, unstructured, shape, device: str, log) -> dict:
    """name -> (module, parameters, (MACs computed, MACs of nonzero weights)) of the four networks compared."""
    x = torch.randn(4, *shape)
    (s_model, s_masks), (u_model, u_masks) = structured, unstructured
    small, report = shrink(s_model, x[:2], s_masks)
    shrunk, _ = shrink(u_model, x[:2], u_masks)
    log(f"  structured ticket: {report.params_after:,} of {report.params_before:,} parameters after shrinking")
    out = {"dense": (dense, _params(dense), _macs(dense, shape)),
           "unstructured (masked)": (u_model, _params(u_model, u_masks), _macs(u_model, shape, u_masks)),
           "unstructured (best sparse export)": (shrunk, _params(u_model, u_masks), _macs(shrunk, shape, u_masks)),
           "structured (smaller model)": (small, _params(small), _macs(small, shape))}
    for a, b in ((small, s_model), (shrunk, u_model)):
        with torch.no_grad():
            torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)  # the same logits
    return {k: (m.to(device), p, macs) for k, (m, p, macs) in out.items()}


def _best_sparse(model, x, threads: int):
    """The shrunk unstructured ticket with CSR Linear layers where faster at this batch (CPU); itself elsewhere."""
    if x.is_cuda:
        return model
    return sparsify(model, x, threads=threads, log=lambda *_: None)[0]


def latency(models: dict, shape, batch: int, device: str, threads: int, rounds: int, min_time: float) -> dict:
    """Median seconds per batch of each model, measured in alternating rounds (noise hits every model alike)."""
    x = torch.randn(batch, *shape, device=device)
    torch.set_num_threads(threads)
    runners = {k: (_best_sparse(m, x, threads) if "best sparse" in k else m) for k, m in models.items()}
    times = {k: [] for k in runners}
    with torch.no_grad():
        for _ in range(rounds):
            for k, m in runners.items():
                timer = benchmark.Timer("m(x)", globals={"m": m, "x": x}, num_threads=threads)
                times[k].append(timer.blocked_autorange(min_run_time=min_time).median)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def table(label: str, nets: dict, shape, args, log=print) -> dict:
    """The rows of one model: parameters, MACs and latency ratios; returns the batch-64 latencies."""
    models = {k: m for k, (m, _, _) in nets.items()}
    dense_params, (dense_macs, _) = nets["dense"][1], nets["dense"][2]
    log(f"\n{label}\n")
    log("| network | parameters (nonzero) | MACs computed / example | MACs of nonzero weights | "
        + " | ".join(f"batch {b}, {t} thread{'s' if t > 1 else ''}" for b in args.batches for t in args.threads) + " |")
    log("|---|---:|---:|---:|" + "---:|" * (len(args.batches) * len(args.threads)))
    measured = {(b, t): latency(models, shape, b, args.device, t, args.rounds, args.min_time)
                for b in args.batches for t in args.threads}
    for k, (_, params, (computed, nonzero)) in nets.items():
        cells = [f"{measured[b, t][k] * 1e3:.3f} ms" if k == "dense" else f"{measured[b, t][k] / measured[b, t]['dense']:.2f}x"
                 for b in args.batches for t in args.threads]
        log(f"| {k} | {params:,} ({params / dense_params:.1%}) | {computed:,} ({computed / dense_macs:.0%}) | "
            f"{nonzero:,} ({nonzero / dense_macs:.1%}) | " + " | ".join(cells) + " |")
    return measured.get((max(args.batches), args.threads[0]), {})


def curve(args, s_cfg, s_rows, u_cfg, u_rows, log=print) -> None:
    """Test accuracy against latency at the largest batch (1 thread) of every level of both runs, and the dense model."""
    from lottery.report.plots import pyplot, save_figure

    batch, threads = max(args.batches), args.threads[0]
    points = {"structured ticket (smaller model)": [], "unstructured ticket (masked)": []}
    x = torch.randn(4, *DIGITS)
    for key, folder, cfg, rows in (("structured ticket (smaller model)", args.structured, s_cfg, s_rows),
                                   ("unstructured ticket (masked)", args.unstructured, u_cfg, u_rows)):
        for r in rows:
            model, masks = _trained(folder, cfg, args.seed, r["level"])
            net = shrink(model, x[:2], masks)[0] if key.startswith("structured") else model
            t = latency({"m": net.to(args.device)}, DIGITS, batch, args.device, threads, max(1, args.rounds // 2),
                        args.min_time)["m"]
            points[key].append((t * 1e3, 100 * r["test_acc"], 100 * r["density"]))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for (key, pts), style in zip(points.items(), ("o-", "s--")):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, markersize=4, label=key)
        for ms, acc, remaining in pts[::2]:
            ax.annotate(f"{remaining:.3g}%", (ms, acc), fontsize=6, xytext=(2, 2), textcoords="offset points")
    dense = points["unstructured ticket (masked)"][0]
    ax.plot([dense[0]], [dense[1]], "k*", markersize=10, label="dense network")
    ax.set(xlabel=f"latency, batch {batch}, {threads} CPU thread{'s' if threads > 1 else ''} (ms)",
           ylabel="test accuracy (%)", title=f"{s_cfg.model.name} on the digits: accuracy against latency "
                                             "(labels: % of weights remaining)")
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    log(f"\nwrote {save_figure(fig, Path(args.plot))}")
    log("| level | structured: % remaining | test acc | ms | unstructured: % remaining | test acc | ms |")
    log("|---:|---:|---:|---:|---:|---:|---:|")
    s_pts, u_pts = points["structured ticket (smaller model)"], points["unstructured ticket (masked)"]
    for level in range(max(len(s_pts), len(u_pts))):
        s = s_pts[level] if level < len(s_pts) else None
        u = u_pts[level] if level < len(u_pts) else None
        cell = lambda p: f"{p[2]:.1f} | {p[1]:.2f} | {p[0]:.3f}" if p else "| |"
        log(f"| {level} | {cell(s)} | {cell(u)} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--structured", type=Path, default=Path("runs/structured_conv_digits"))
    p.add_argument("--unstructured", type=Path, default=Path("runs/structured_conv_digits_unstructured"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--units", type=float, default=0.8 ** 5, help="without the runs: the share of channels kept")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is reported")
    p.add_argument("--min-time", type=float, default=0.05, help="seconds per measurement")
    p.add_argument("--plot", default=None, help="the accuracy-against-latency PNG (needs the runs)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else
                                                          f", {torch.get_num_threads()} threads available"))
    runs = (args.structured / "config.yaml").exists() and (args.unstructured / "config.yaml").exists()
    units = args.units
    if runs:
        from lottery.report.matching import winning_level

        s_cfg, s_rows = _run(args.structured, args.seed)
        u_cfg, u_rows = _run(args.unstructured, args.seed)
        best = winning_level(s_rows, s_cfg.matching_tolerance)
        near = min(u_rows, key=lambda r: abs(r["density"] - best["density"]))
        dense = next(r for r in s_rows if r["level"] == 0)
        print(f"structured level {best['level']}: {best['density']:.2%} of the weights, test acc {best['test_acc']:.2%}; "
              f"unstructured level {near['level']}: {near['density']:.2%}, {near['test_acc']:.2%}; "
              f"dense {dense['test_acc']:.2%}")
        d_model, _ = _trained(args.structured, s_cfg, args.seed, 0)
        s = _trained(args.structured, s_cfg, args.seed, best["level"])
        u = _trained(args.unstructured, u_cfg, args.seed, near["level"])
        units = 1 - s_cfg.prune.fraction  # the same share of channels for ResNet-20: the structured level's
        units **= best["level"]
        nets = variants(d_model, s, u, DIGITS, args.device, print)
        table(f"{s_cfg.model.name} on the digits (1x8x8), trained tickets", nets, DIGITS, args)
    else:
        print(f"(no runs in {args.structured} and {args.unstructured}: masks from the initialisation, {units:.1%} of "
              "the channels)")
        dense, s, u = _from_init("conv4_bn", DIGITS, units)
        table("conv4_bn, digits-shaped inputs (1x8x8), masks from the initialisation",
              variants(dense, s, u, DIGITS, args.device, print), DIGITS, args)
    dense, s, u = _from_init("resnet20", CIFAR, units)
    table(f"ResNet-20, CIFAR-10-shaped random inputs (3x32x32), {units:.1%} of the channels, masks from the "
          "initialisation", variants(dense, s, u, CIFAR, args.device, print), CIFAR, args)
    if runs and args.plot:
        curve(args, s_cfg, s_rows, u_cfg, u_rows)


if __name__ == "__main__":
    main()
