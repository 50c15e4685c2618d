"""What a deployable ticket weighs and how fast it runs, against the dense model.

For LeNet-300-100 and ResNet-20 pruned to 50%, 10% and 3.6% of weights remaining (global magnitude
pruning of a randomly initialised model: the masks have a ticket's sparsity, not its trained
structure, so fewer units are dead than after IMP), prints:
  sizes:    dense fp32 safetensors, research ticket, compact (fp32 and fp16), shrunk (.pt2), ONNX;
            parameters left after shrinking;
  latency:  medians of torch.utils.benchmark, measured side by side (alternating rounds) at batch 1
            and 64, with 1 thread and all threads, as ratios to the dense model (lower is faster):
            masked (the zeros multiplied), shrunk, shrunk + CSR (Linear layers as torch.sparse CSR
            where `sparsify` measured that faster; the chosen layers are listed), onnxruntime (shrunk).
With --device cuda: dense vs 2:4 semi-structured Linear layers in fp16 (nm_magnitude masks).

    .venv/bin/python experiments/bench_export.py          # 5-9 minutes on 2 busy CPU cores
    .venv/bin/python experiments/bench_export.py --models --densities --tickets runs/demo/ticket.safetensors
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from lottery import MaskManager, Ticket, save_ticket  # noqa: E402
from lottery.export import save_compact, save_onnx, save_shrunk, shrink, sparsify  # noqa: E402
from lottery.models import create_model  # noqa: E402

MODELS = {"lenet_300_100": (1, 28, 28), "resnet20": (3, 32, 32)}


def pruned(name: str, density: float):
    """(dense model, pruned copy, its masks, input shape): a randomly initialised model, global magnitude."""
    torch.manual_seed(0)
    dense = create_model(name, 10, MODELS[name]).eval()
    model = copy.deepcopy(dense)
    masks = MaskManager(model)
    masks.prune_to({n: density for n in masks.names}, "global_magnitude")
    return dense, model, masks, MODELS[name]


def from_ticket(path: str):
    """The same for a real ticket (e.g. runs/demo/ticket.safetensors from `make demo`), trained weights."""
    from lottery.export import model_from_ticket

    model, masks, meta = model_from_ticket(path)
    shape = tuple(meta["input_shape"])
    return create_model(meta["architecture"], meta["num_classes"], shape).eval(), model, masks, shape


def sizes(case, folder: Path) -> tuple[dict[str, int], int, int]:
    from safetensors.torch import save_file

    dense, model, masks, shape = case
    x = torch.randn(4, *shape)
    save_file({k: v.contiguous() for k, v in dense.state_dict().items()}, str(folder / "dense.safetensors"))
    state = model.state_dict()
    save_ticket(Ticket(dict(masks.masks), state, state, {}), folder / "ticket.safetensors")
    save_compact(model, folder / "compact.safetensors", masks)
    save_compact(model, folder / "compact16.safetensors", masks, dtype="fp16")
    _, report = save_shrunk(model, x, folder / "shrunk.pt2", masks, log=lambda *_: None)
    save_onnx(model, x, folder / "shrunk.onnx", masks, log=lambda *_: None)
    files = ["dense.safetensors", "ticket.safetensors", "compact.safetensors", "compact16.safetensors", "shrunk.pt2", "shrunk.onnx"]
    return {f: (folder / f).stat().st_size for f in files}, report.params_before, report.params_after


def _ort(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})


def latency(case, onnx_path: Path, batch: int, threads: int, rounds: int, min_time: float):
    dense, model, masks, shape = case
    x = torch.randn(batch, *shape)
    small, _ = shrink(model, x[:2], masks)
    torch.set_num_threads(threads)
    csr, choice = sparsify(small, x, threads=threads, log=lambda *_: None)
    runners = {"dense": (dense, x), "masked": (model, x), "shrunk": (small, x), "csr": (csr, x),
               "onnxruntime": (_ort(onnx_path, threads), x.numpy())}
    times = {k: [] for k in runners}
    with torch.no_grad():
        for _ in range(rounds):  # alternating rounds: machine noise hits every variant alike
            for key, (fn, inp) in runners.items():
                timer = benchmark.Timer("fn(x)", globals={"fn": fn, "x": inp}, num_threads=threads)
                times[key].append(timer.blocked_autorange(min_run_time=min_time).median)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return med, [n for n, c in choice.items() if c != "dense"]


def _kib(n: int) -> str:
    return f"{n / 1024:,.0f} KiB" if n < 10 * 2**20 else f"{n / 2**20:,.1f} MiB"


def cpu(args) -> None:
    all_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {all_threads} threads, densities {args.densities}")
    cases = {(name, f"{d:.1%}"): (lambda name=name, d=d: pruned(name, d)) for name in args.models for d in args.densities}
    cases.update({(f"ticket {Path(t).name}", "ticket"): (lambda t=t: from_ticket(t)) for t in args.tickets})
    print("\n| model | remaining | dense | ticket | compact | compact fp16 | shrunk .pt2 | ONNX | params after shrinking |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    onnx = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, ((label, remaining), build) in enumerate(cases.items()):
            case = build()
            if remaining == "ticket":
                remaining = f"{1 - case[2].sparsity():.1%}"
            folder = Path(tmp) / str(i)
            folder.mkdir()
            size, before, after = sizes(case, folder)
            onnx[label, remaining] = (build, folder / "shrunk.onnx")
            d = size["dense.safetensors"]
            cells = [f"{_kib(s)} ({s / d:.1%})" if f != "dense.safetensors" else _kib(s) for f, s in size.items()]
            print(f"| {label} | {remaining} | " + " | ".join(cells) + f" | {after:,} of {before:,} |", flush=True)
        print("\nlatency: dense in ms, the others as ratios to it (lower is faster)\n")
        print("| model | remaining | batch | threads | dense | masked | shrunk | shrunk + CSR | onnxruntime | CSR layers |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for (label, remaining), (build, onnx_path) in onnx.items():
            case = build()
            for batch in args.batches:
                for threads in sorted({1, all_threads}):
                    med, layers = latency(case, onnx_path, batch, threads, args.rounds, args.min_time)
                    ratios = " | ".join(f"{med[k] / med['dense']:.2f}x" for k in ("masked", "shrunk", "csr", "onnxruntime"))
                    print(f"| {label} | {remaining} | {batch} | {threads} | {med['dense'] * 1e3:.3f} | {ratios} | "
                          f"{', '.join(layers) or '-'} |", flush=True)
        torch.set_num_threads(all_threads)


def cuda(args) -> None:
    """Dense vs 2:4 semi-structured fp16 Linear layers (sparsify's choice, per layer)."""
    from lottery.export.sparse import SemiStructuredLinear, semi_structured_ok

    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    print("\n| model | batch | layer | dense ms | 2:4 ms | 2:4 / dense | chosen |")
    print("|---|---:|---|---:|---:|---:|---|")
    wide = lambda: nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 16))
    for label, build, shape in [("lenet_300_100", lambda: create_model("lenet_300_100", 10, (1, 28, 28)), (1, 28, 28)),
                                ("mlp 4096x2", wide, (4096,))]:
        model = build().half().cuda().eval()
        masks = MaskManager(model)
        masks.prune_to({n: 0.5 for n in masks.names}, "nm_magnitude")
        for batch in (64, 2048):
            x = torch.randn(batch, *shape, device="cuda", dtype=torch.half)
            inputs = {}
            hooks = [m.register_forward_pre_hook(lambda m, a, n=n: inputs.__setitem__(n, a[0]))
                     for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            with torch.no_grad():
                model(x)
                for h in hooks:
                    h.remove()
                for layer_name, inp in inputs.items():
                    layer = model.get_submodule(layer_name)
                    if not semi_structured_ok(layer):
                        print(f"| {label} | {batch} | {layer_name} | - | - | - | dense (shape or pattern unsupported) |")
                        continue
                    try:
                        sparse = SemiStructuredLinear(layer)
                    except Exception as e:  # shape constraints of the 2:4 kernels
                        print(f"| {label} | {batch} | {layer_name} | - | - | - | dense ({type(e).__name__}) |")
                        continue
                    t = {k: benchmark.Timer("m(x)", globals={"m": m, "x": inp}).blocked_autorange(min_run_time=0.2).median
                         for k, m in (("dense", layer), ("2:4", sparse))}
                    print(f"| {label} | {batch} | {layer_name} | {t['dense'] * 1e3:.3f} | {t['2:4'] * 1e3:.3f} | "
                          f"{t['2:4'] / t['dense']:.2f}x | {min(t, key=t.get)} |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--densities", nargs="*", type=float, default=[0.5, 0.1, 0.036])
    p.add_argument("--tickets", nargs="*", default=[], help="ticket files to add (e.g. runs/demo/ticket.safetensors)")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    p.add_argument("--min-time", type=float, default=0.02, help="seconds per measurement")
    args = p.parse_args()
    cuda(args) if args.device == "cuda" else cpu(args)


if __name__ == "__main__":
    main()
