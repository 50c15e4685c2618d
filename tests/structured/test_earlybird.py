"""The channel early-bird ticket (lottery.structured.earlybird): the detector draws where You et al.'s rule says, the
watcher takes its masks at every epoch's start from the initialisation on, one detector per level, and the branch
trains the drawn ticket as each retraining choice says."""
import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.structured.earlybird import (
    ChannelEarlyBird,
    ChannelEarlyBirdOptions,
    Detector,
    channel_mask,
    scaled_groups,
)


def _masks(changes: list[list[int]], units: int = 20) -> list[torch.Tensor]:
    """A sequence of masks, each the previous one with the listed units flipped."""
    mask, out = torch.zeros(units, dtype=torch.bool), []
    mask[: units // 2] = True
    for flips in changes:
        mask = mask.clone()
        mask[flips] = ~mask[flips]
        out.append(mask)
    return out


def test_the_detector_draws_when_the_newest_of_five_masks_is_within_epsilon_of_every_other():
    # distances are shares of 20 units: one flip is 0.05. At epoch 4 the window is full but reaches back to epoch 0
    # (0.5 away); at epoch 5 the oldest is epoch 1, two flips away: 0.1, which the paper's `> 0.1` lets through.
    sequence = _masks([[], list(range(5, 15)), [0], [], [1], []])
    detector = Detector(window=5, threshold=0.1)
    drawn = [detector.push(m) for m in sequence]
    assert drawn == [False] * 5 + [True] and detector.drawn == 5
    assert detector.distances[:4] == [None] * 4 and detector.distances[4] == pytest.approx(0.6)
    assert detector.distances[5] == pytest.approx(0.1)
    strict = Detector(window=5, threshold=0.09)
    assert not any(strict.push(m) for m in sequence)
    short = Detector(window=2, threshold=0.1)
    assert [short.push(m) for m in sequence[:3]] == [False, False, True]


def test_the_mask_keeps_the_units_above_the_sorted_score_at_the_ratio():
    scores = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    assert channel_mask(scores, 0.3).tolist() == (scores > 0.3).tolist()  # sorted[int(10 x 0.3)] = 0.3 goes too
    assert channel_mask(torch.zeros(4), 0.5).sum() == 1  # never empty


def test_the_watcher_takes_masks_at_every_epochs_start_including_the_init_one_detector_per_level(structured_model, tmp_path):
    model, masks, shape = structured_model("conv4_bn")
    groups = scaled_groups(model, shape, masks.names)
    files = {1: tmp_path / "l1.safetensors", 2: tmp_path / "l2.safetensors"}
    bird = ChannelEarlyBird(groups, {1: 0.2, 2: 0.36}, steps_per_epoch=3, total_steps=18, files=files, window=2,
                            threshold=0.1)
    bird.before_step(0, masks, None)  # the initialisation
    for step in range(18):
        if step == 7:  # from epoch 3 on the scaling factors no longer change: both tickets are drawn at its start
            with torch.no_grad():
                for g in groups:
                    for m in g.norms:
                        model.get_parameter(m.name).copy_(torch.linspace(0.1, 1, len(m.index)))
        elif step < 7:
            with torch.no_grad():
                for g in groups:
                    for m in g.norms:
                        model.get_parameter(m.name).copy_(torch.rand(len(m.index)))
        bird.update(step, masks)
    report = bird.watched()["earlybird_channels"]
    assert set(report["levels"]) == {"1", "2"} and report["window"] == 2
    for level in ("1", "2"):
        assert len(report["levels"][level]["distances"]) == 6  # epoch starts 0 (init) .. 5; not the end of epoch 6
        assert report["levels"][level]["epoch"] == 4 and report["levels"][level]["step"] == 12
    assert all(f.exists() for f in files.values())
    state = bird.state_dict()
    again = ChannelEarlyBird(groups, {1: 0.2, 2: 0.36}, 3, 18, files, 2, 0.1)
    again.load_state_dict(state)
    again.before_step(0, masks, None)  # resumed: the initialisation is not taken twice
    assert again.watched() == bird.watched()


def test_options_are_checked():
    with pytest.raises(LotteryError, match="methods.earlybird_channels.retrain='scratch' must be one of continue, reinit, rewind"):
        ChannelEarlyBirdOptions(retrain="scratch")
    with pytest.raises(LotteryError, match="window=1 must be a whole number >= 2"):
        ChannelEarlyBirdOptions(window=1)


@pytest.mark.slow
def test_bn_scale_tickets_and_the_channel_early_bird_run_and_export(tmp_path, capsys):
    """`lottery run` on the digits with network slimming's criterion on ResNet-20 (residual channels) and the channel
    early-bird ticket of each level; the random control and the three retraining choices of the drawn ticket built
    off the finished run; the shrunk export of the structured ticket."""
    from lottery.cli.command import main
    from lottery.cli.config import load_config
    from lottery.cli.plan import plan
    from lottery.core import files
    from lottery.core.masks import unit_density
    from lottery.imp.branches import BRANCHES, LevelPoint, training

    args = ["--config", "experiments/configs/demo.yaml", f"runs_dir={tmp_path}", "model.name=resnet20",
            "prune.strategy=bn_scale", "prune.levels=2", "train.epochs=2", "data.batch_size=200", "data.val_size=437",
            "trainer.progress=false", "trainer.accelerator=cpu", "branches=[earlybird_channels]",
            "methods.earlybird_channels.window=2", "methods.earlybird_channels.threshold=1.0"]
    assert main(["run", *args]) == 0
    run_dir, seed = tmp_path / "demo", tmp_path / "demo" / "seed_0"
    watched = files.read_json(seed / "level_00" / "metrics.json")["watched"]["earlybird_channels"]
    assert set(watched["levels"]) == {"1", "2"} and all(d["epoch"] == 1 for d in watched["levels"].values())
    ticket = files.load_tensors(seed / "level_02" / "mask.safetensors")
    assert unit_density(ticket)["conv.weight"] == 10 / 16 and unit_density(ticket)["blocks.8.conv1.weight"] == 41 / 64
    bird = files.read_json(seed / "level_02" / "branch_earlybird_channels" / "metrics.json")
    assert bird["density"] < 1 and bird["cost"] is not None and (run_dir / "earlybird_channels.png").exists()
    assert "### earlybird_channels" in (run_dir / "report.md").read_text()

    (runner,) = plan(load_config("experiments/configs/demo.yaml", args[2:])).runners
    point = LevelPoint(2, runner.pruned(2).masks, 0)
    control = training(BRANCHES["random_prune"], point, runner.models, runner.rewinding)
    assert control.masks.densities("units") == unit_density(ticket)
    assert any(not torch.equal(control.masks.masks[n], ticket[n]) for n in ticket)
    from lottery.core.rewind import TRAINED, TrainingPlan

    drawn = files.load_tensors(seed / "earlybird_channels_level_02.safetensors")
    init = files.load_tensors(seed / "init.safetensors")
    rest = TrainingPlan(TRAINED, start_step=5, steps=runner.rewinding.total_steps - 5)  # drawn at epoch 1's start
    for retrain, start, plan_of in (("continue", drawn, rest),
                                    ("reinit", None, runner.rewinding.dense_plan),
                                    ("rewind", init, runner.rewinding.branch_plan)):
        b = training(BRANCHES["earlybird_channels"], point, runner.models, runner.rewinding,
                     ChannelEarlyBirdOptions(retrain=retrain))
        weight, mask = b.model.get_parameter("blocks.4.conv1.weight"), b.masks.masks["blocks.4.conv1.weight"]
        assert b.plan == plan_of and (weight[~mask] == 0).all() and not mask.flatten(1).any(1).all()
        if start is not None:
            assert torch.equal(weight, start["blocks.4.conv1.weight"] * mask), retrain
        else:
            assert not torch.equal(weight, drawn["blocks.4.conv1.weight"] * mask)

    out = tmp_path / "small.pt2"
    assert main(["export", str(run_dir), "--level", "2", "--format", "shrunk", "--out", str(out)]) == 0
    assert "blocks.8.conv1" in capsys.readouterr().out and out.exists()
