"""The one Trainer: what it switches off on a CPU-only machine."""
import os

import pytest
import torch

from lottery.training.trainer import runtime_cuda_probe


@pytest.mark.skipif(not torch.backends.cuda.is_built() or torch.cuda.device_count() > 0,
                    reason="only a CUDA build of torch on a machine without GPUs probes NVML per step")
def test_cpu_runs_skip_the_per_step_nvml_probe(monkeypatch):
    monkeypatch.setenv("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # what importing Lightning does
    with runtime_cuda_probe(on_cpu=True):
        assert "PYTORCH_NVML_BASED_CUDA_CHECK" not in os.environ
        assert not torch.cuda.is_available()
    assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"  # restored for whatever runs next
    with runtime_cuda_probe(on_cpu=False):
        assert os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"


def test_an_updater_that_takes_extra_iterations_gets_them_and_the_schedule_skips_them(tmp_path):
    """RigL with update_step extra (google-research/rigl's RigL): 12 steps with updates at steps 0 and 4 (at 8, the
    end step, α is 0: no update) take 14 iterations, 12 of them gradient steps; the module's schedule ends at 12."""
    import pytorch_lightning as pl
    from torch import nn

    from lottery.core.masks import MaskManager
    from lottery.core.schema import OptimConfig, TrainerConfig
    from lottery.sparsity.schedule import UpdateSchedule
    from lottery.sparsity.updaters import DropGrowOptions, RigL
    from lottery.training.module import ClassificationModule
    from lottery.training.trainer import fit_and_test
    from tests.sparsity.test_shadow import _Blobs

    class Moves(pl.Callback):  # which iterations moved the (never masked) biases: the gradient steps
        def __init__(self):
            self.steps = []

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self.before, self.step = module.model[0].bias.detach().clone(), module.schedule_step

        def on_train_batch_end(self, trainer, module, *args):
            self.steps.append((self.step, not torch.equal(self.before, module.model[0].bias)))

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    masks = MaskManager(model)
    density = {"0.weight": 0.5, "2.weight": 0.5}
    masks.prune_to(density, "layer_random", torch.Generator().manual_seed(0))
    start = {n: m.clone() for n, m in masks.masks.items()}
    rigl = RigL(UpdateSchedule(end_step=8, interval=4), density, options=DropGrowOptions("extra"))
    module = ClassificationModule(model, 3, OptimConfig(optimizer="sgd", lr=0.1), seed=0)
    moves = Moves()
    trainer, _ = fit_and_test(module, _Blobs(batch_size=8, val_size=16, seed=0), TrainerConfig(accelerator="cpu",
                              progress=False), 12, masks, tmp_path / "last.ckpt", "test", [moves], updater=rigl)
    assert trainer.global_step == 14 and module.schedule_step == 12 and module.history[-1]["step"] == 12
    assert moves.steps == [(0, False), (0, True)] + [(s, True) for s in (1, 2, 3)] + [(4, False), (4, True)] + [
        (s, True) for s in range(5, 12)]
    assert any(not torch.equal(masks.masks[n], start[n]) for n in masks.names)
    assert {n: int(m.sum()) for n, m in masks.masks.items()} == {n: int(m.sum()) for n, m in start.items()}
