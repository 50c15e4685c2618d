"""The configuration schema: the schedule resolved to steps once, the flat view of a config."""
import pytest

from lottery.core.schema import ExperimentConfig, OptimConfig, TrainConfig


def test_milestone_epochs_are_resolved_to_steps_once():
    train = TrainConfig(epochs=10, optim=OptimConfig(optimizer="sgd", lr=0.1, milestone_steps=[7]), milestone_epochs=[2, 5])
    optim = train.resolve(steps_per_epoch=30)
    assert optim.milestone_steps == [7, 60, 150] and optim.optimizer == "sgd"
    assert train.optim.milestone_steps == [7]  # the config keeps what was asked for
    assert train.total_steps(30) == 300 and TrainConfig(steps=42).total_steps(30) == 42
    assert optim.finetuning_lr == pytest.approx(0.1 * 0.1 ** 3)  # the schedule's last rate
    resolved = TrainConfig(optim=OptimConfig(finetune_lr=3e-4)).resolve(steps_per_epoch=30)
    assert resolved.finetuning_lr == 3e-4


def test_flat_names_every_key_and_skips_what_is_asked():
    cfg = ExperimentConfig()
    flat = cfg.flat()
    assert flat["train.optim.lr"] == 1.2e-3 and flat["prune.fraction"] == 0.2 and flat["data.options"] == {}
    assert flat["trainer.lanes"] == 1 and flat["methods"] == {} and not any(k.startswith("launcher.") for k in flat)
    skipped = cfg.flat(skip={"trainer", "train.optim.lr"})
    assert not any(k.startswith("trainer.") for k in skipped) and "train.optim.lr" not in skipped
    assert "train.optim.gamma" in skipped
