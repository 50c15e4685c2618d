"""One IMP level of a small BERT (random weights from a configuration): lottery vs the same steps, data and masks in a
hand-written loop and in Hugging Face's Trainer (what BERT-Tickets' users run today); and K runs as lanes vs one by one.
Prints the ratios side by side (not a timed test). Targets: lottery <= 1.15x the hand-written loop, faster than Trainer.

    python experiments/bench_bert.py                                   # 4 layers, width 256, length 128, batch 32
    python experiments/bench_bert.py --layers 2 --hidden 64 --length 32 --steps 20    # a few minutes on 2 CPU cores
    python experiments/bench_bert.py --device cuda                     # experiments/gpu_check.sh
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from lottery.core.masks import MaskManager
from lottery.data.base import TensorDataModule
from lottery.lanes.net import LaneNet, stack_masks
from lottery.models import create_model
from lottery.models.presets import preset_names
from lottery.training.callbacks import MaskCallback
from lottery.training.lane_data import LaneDataModule
from lottery.training.module import ClassificationModule
from lottery.training.optimizers import make_optimizer, set_lr
from lottery.core.schema import OptimConfig


class Tokens(TensorDataModule):
    num_classes = 2

    def __init__(self, n: int, length: int, vocab: int, **kw):
        super().__init__(val_size=8, eval_batch_size=64, **kw)
        self.n, self.length, self.vocab, self.input_shape = n, length, vocab, (3, length)

    def load(self):
        g = torch.Generator().manual_seed(0)
        ids = torch.randint(5, self.vocab, (self.n, self.length), generator=g)
        x = torch.stack([ids, torch.ones_like(ids), torch.zeros_like(ids)], 1)
        y = torch.randint(0, 2, (self.n,), generator=g)
        return x, y, x[:64], y[:64]


def model_and_masks(a, seed=0):
    torch.manual_seed(seed)
    model = create_model("hf:bert", 2, (3, a.length), {"weights": "random", "num_hidden_layers": a.layers,
                         "hidden_size": a.hidden, "num_attention_heads": max(1, a.hidden // 64), "intermediate_size": 4 * a.hidden,
                         "vocab_size": 1000, "max_position_embeddings": max(512, a.length), "hidden_dropout_prob": 0.0,
                         "attention_probs_dropout_prob": 0.0})
    masks = MaskManager(model, include=preset_names("bert", dict(model.named_parameters())))
    masks.prune(0.5, "global_magnitude")
    return model.to(a.device), masks


def _trainer(a, steps, masks):
    return pl.Trainer(max_steps=steps, accelerator="gpu" if a.device == "cuda" else "cpu", devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0, callbacks=[MaskCallback(masks)])


def lottery_level(a, optim, data):
    model, masks = model_and_masks(a)
    start = time.perf_counter()
    _trainer(a, a.steps, masks).fit(ClassificationModule(model, 2, optim), datamodule=data)
    return time.perf_counter() - start


def hand_loop(a, optim, data):
    model, masks = model_and_masks(a)
    opt = make_optimizer(model.parameters(), optim)
    data.setup()
    start, step = time.perf_counter(), 0
    while step < a.steps:
        for x, y in data.train_dataloader():
            x, y = x.to(a.device), y.to(a.device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            set_lr(opt, optim, step)
            opt.step()
            masks.apply()
            step += 1
            if step == a.steps:
                break
    if a.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def hf_trainer(a, optim, data):
    import transformers

    model, masks = model_and_masks(a)
    data.setup()
    x, y = data._sets["train"].tensors
    rows = [{"input_ids": x[i, 0], "attention_mask": x[i, 1], "token_type_ids": x[i, 2], "labels": y[i]} for i in range(len(y))]

    class Masks(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            masks.apply()

    opt = make_optimizer(model.hf.parameters(), optim)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: optim.lr_at(s) / optim.lr)
    with tempfile.TemporaryDirectory() as out:
        args = transformers.TrainingArguments(out, max_steps=a.steps, per_device_train_batch_size=a.batch, report_to=[],
                                              save_strategy="no", logging_strategy="no", use_cpu=a.device == "cpu",
                                              dataloader_num_workers=0, disable_tqdm=True)
        trainer = transformers.Trainer(model=model.hf, args=args, train_dataset=rows, optimizers=(opt, sched),
                                       callbacks=[Masks()])
        start = time.perf_counter()
        trainer.train()
    return time.perf_counter() - start


def lanes_vs_alone(a, optim, data):
    runs = [model_and_masks(a, seed=k) for k in range(a.lanes)]
    start = time.perf_counter()
    for k, (model, masks) in enumerate(runs):
        _trainer(a, a.steps, masks).fit(ClassificationModule(model, 2, optim, seed=k), datamodule=data.with_seed(k))
    alone = time.perf_counter() - start
    runs = [model_and_masks(a, seed=k) for k in range(a.lanes)]
    net = LaneNet.from_models([m for m, _ in runs])
    masks = MaskManager(net, include=runs[0][1].names)
    masks.set_masks(stack_masks([m.masks for _, m in runs]))
    start = time.perf_counter()
    _trainer(a, a.steps, masks).fit(ClassificationModule(net, 2, optim), datamodule=LaneDataModule(data, list(range(a.lanes))))
    return alone, time.perf_counter() - start, net.mode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--lanes", type=int, default=4)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    optim = OptimConfig(optimizer="adamw", lr=2e-5, warmup_steps=5, schedule="linear", decay_steps=a.steps)
    data = Tokens(a.batch * (a.steps + 1) + 8, a.length, 1000, batch_size=a.batch)
    print(f"BERT {a.layers} layers, width {a.hidden}, length {a.length}, batch {a.batch}, {a.steps} steps, 50% of the "
          f"preset pruned, on {a.device}")
    hand_loop(a, optim, data)  # warm-up
    hand, ours, hf = hand_loop(a, optim, data), lottery_level(a, optim, data), hf_trainer(a, optim, data)
    print(f"| hand-written loop | lottery | HF Trainer |\n|---:|---:|---:|\n| {hand / a.steps * 1e3:.1f} ms/step (1.00x) | "
          f"{ours / a.steps * 1e3:.1f} ms/step ({ours / hand:.2f}x) | {hf / a.steps * 1e3:.1f} ms/step ({hf / hand:.2f}x) |")
    alone, lanes, mode = lanes_vs_alone(a, optim, data)
    print(f"| {a.lanes} runs one by one | {a.lanes} runs as lanes ({mode}) |\n|---:|---:|\n| {alone:.1f} s | {lanes:.1f} s "
          f"({alone / lanes:.2f}x the speed of one by one) |")


if __name__ == "__main__":
    main()
