"""Bad inputs and faults: each is one line and exit code 2 (130 for Ctrl-C), no traceback, nothing written,
and the corrected command (or the one the message gives) then succeeds in the same folder. Every registry
looks names up the same way and names the valid ones when a name is unknown."""
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.cli.helpers import (
    DEMO,
    TINY_RUN,
    copy_run,
    one_line_error,
    run_main,
    truncate,
)


def _run(capsys, runs, *overrides, config=DEMO):
    return run_main(capsys, "run", "--config", config, f"runs_dir={runs}", *TINY_RUN, *overrides)


# -- 1. the whole experiment is checked before anything is written ------------------------------------------
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
BAD_CONFIGS = [
    ("data.batch_size=0", "data.batch_size=0 must be >= 1"),
    ("data.batch_size=-5", "data.batch_size=-5 must be >= 1"),
    ("data.batch_size=1138", "data.batch_size=1138 is larger than the 1137 training examples of digits"),
    ("train.steps=0", "train.steps=0 must be >= 1"),
    (["train.steps=null", "train.epochs=0"], "train.epochs=0 must be >= 1"),
    (["train.steps=null", "train.epochs=null"], "set train.steps or train.epochs"),
    ("train.optim.lr=-1", "train.optim.lr=-1.0 must be > 0"),
    ("train.optim.lr=0", "train.optim.lr=0.0 must be > 0"),
    ("train.optim.momentum=-0.9", "train.optim.momentum=-0.9 must be >= 0"),
    ("train.optim.weight_decay=-1", "train.optim.weight_decay=-1.0 must be >= 0"),
    ("train.optim.gamma=0", "train.optim.gamma=0.0 must be > 0"),
    ("train.optim.nesterov=true", "nesterov=true needs train.optim.optimizer=sgd"),
    ("train.optim.optimizer=lion", "unknown optimizer 'lion'"),
    ("train.milestone_epochs=[-3]", "train.milestone_epochs=[-3] must all be >= 0"),
    ("seed=-1", "seed=-1 must be >= 0"),
    ("matching_tolerance=-5", "matching_tolerance=-5.0 must be in [0, 100)"),
    ("data.val_size=0", "data.val_size=0 must be >= 1"),
    ("data.val_size=5000", "data.val_size=5000 must be in [0, 1437)"),
    ("data.options={colour: true}", "unexpected keyword argument 'colour'"),
    (["rewind.policy=step", "rewind.step=100"], "rewind.step=100 must be in [0, 6)"),
    ("prune.output_rate=5", "removes every weight of that tensor"),
    ("prune.rates={fc1.weight: 6}", "prune.rates['fc1.weight']=6 = 1.2 >= 1"),
    ("prune.include=[conv*]", "include=['conv*'] matches no parameter"),
    ("name=../escape", "name='../escape' must be a folder name inside runs_dir"),
    ("name=/tmp/absolute", "name='/tmp/absolute' must be a folder name inside runs_dir"),
    ("name=.", "name='.' must be a folder name inside runs_dir"),
    pytest.param("trainer.accelerator=gpu", "Lightning cannot run trainer.accelerator=gpu", marks=NO_GPU),
    ("trainer.devices=0", "trainer.devices=0 must be >= 1"),
    ("trainer.num_nodes=0", "trainer.num_nodes=0 must be >= 1"),
    ("trainer.precision=banana", "Precision 'banana' is invalid"),
    ("trainer.strategy=nope", "invalid strategy name"),
    ("trainer.progress=maybe", "trainer.progress=maybe must be"),
    (["data.batch_size=7", "trainer.devices=2", "trainer.strategy=ddp"], "must divide evenly over 2 processes"),
    ("sparse.interval_steps=0", "sparse.interval_steps=0 must be >= 1"),
    (["sparse.end_step=6", "branches=[rigl]", "prune.levels=1"], "sparse.end_step=6 is past the training (6 steps"),
    ("sparse.drop_fraction=1.5", "sparse.drop_fraction=1.5 must be in [0, 1)"),
    ("sparse.distribution=erx", "unknown sparsity distribution 'erx'"),
    (["prune.distribution=erk", "prune.strategy=global_magnitude"], "prune.strategy=global_magnitude ranks all tensors"),
    (["sparse.dense_layers=[fc1.weight,fc2.weight]", "branches=[set]", "prune.levels=12"], "cannot be met"),
    (["branches=[earlybird]", "methods.earlybird.window=1"], "methods.earlybird.window=1 must be a whole number >= 2"),
    ("sparse.earlybird_window=3", "`sparse.earlybird_window` in the command line is now called `methods.earlybird.window`"),
    ("methods.rigl.drop=0.1", "methods.rigl: 'rigl' is a sparse-training method this run does not use"),
    (["branches=[earlybird]", "methods.earlybird.windw=3"], "methods.earlybird.windw: earlybird has no option 'windw' (did you mean 'window'?)"),
    ("branches=[rigl_plus]", "unknown branch 'rigl_plus'"),
    # every key takes effect or is refused (issue 27): patterns that match nothing, repeats, keys nothing reads
    ("prune.exclude=[fc9.weight]", "exclude pattern 'fc9.weight' matches no prunable parameter"),
    (["branches=[rigl]", "prune.levels=1", "sparse.dense_layers=[conv*]"], "sparse.dense_layers pattern 'conv*' matches no prunable tensor"),
    ("prune.rates={fc9.weight: 0.5}", "rate for 'fc9.weight' matches no prunable parameter"),
    ("prune.rates={fc1.weight:0.5}", "'fc1.weight:0.5' was read as one key without a value; write {fc1.weight: 0.5} with a space"),
    (["branches=[reinit,reinit]", "prune.levels=1"], "branches=['reinit', 'reinit'] names reinit more than once"),
    ("prune.exclude=[fc3.weight,fc3.weight]", "names fc3.weight more than once"),
    ("train.optim.milestone_steps=[3,3]", "train.optim.milestone_steps=[3, 3] names 3 more than once"),
    ("sparse.end_step=3", "sparse.end_step=3 has no effect on this run: only the branches gmp, rigl, set read it"),
    (["branches=[gmp]", "prune.levels=1", "sparse.drop_fraction=0.5"], "sparse.drop_fraction=0.5 has no effect on this run: only the branches rigl, set"),
    (["branches=[static]", "prune.levels=1", "sparse.interval_steps=5"], "sparse.interval_steps=5 has no effect"),
    ("sparse.dense_layers=[first]", "sparse.dense_layers=['first'] has no effect on this run"),
    ("train.optim.finetune_lr=0.5", "train.optim.finetune_lr=0.5 has no effect on this run: only the branches finetune or rewind.policy=finetune"),
    ("train.optim.decay_steps=5", "train.optim.decay_steps=5 has no effect on this run: only train.optim.schedule=linear"),
    (["prune.distribution=erk", "prune.rates={fc1.weight: 0.5}"], "prune.rates={'fc1.weight': 0.5} has no effect with prune.distribution=erk"),
    (["prune.exclude=[fc3.weight]", "prune.output_rate=0.3"], "prune.output_rate=0.3 has no effect: the output layer 'fc3.weight' is not among"),
    ("matching_tolerance=100", "matching_tolerance=100.0 must be in [0, 100) accuracy points"),
    # schedules that do not fit the training (6 steps here)
    ("train.optim.warmup_steps=6", "train.optim.warmup_steps=6 is not shorter than the training (6 steps)"),
    (["train.optim.schedule=linear", "train.optim.warmup_steps=4", "train.optim.decay_steps=3"], "is not shorter than the linear decay"),
    (["train.optim.schedule=linear", "train.optim.decay_steps=2"], "the learning rate is 0 for 4 of the 6 steps of the training (67%"),
    ("train.optim.milestone_steps=[100]", "train.optim.milestone_steps: [100] is past the end of the training (6 steps"),
    ("train.milestone_epochs=[50]", "train.milestone_epochs: [50] is past the end of the training"),
    (["prune.levels=40", "prune.fraction=0.5"], "leave fc1.weight (19200 weights) without a weight by the last level"),
    (["branches=[rigl]", "prune.levels=1", "sparse.start_step=5"], "sparse.start_step=5 is after the last update, sparse.end_step=4 (the default: 75% of the training's 6 steps)"),
    # messages that name what happened
    ("model.name=hf:", "model.name: its value was read as a mapping"),
    ("data.options={root:data}", "data.options: 'root:data' was read as one key without a value"),
    (["branches=[srste]", "methods.srste.n=4", "methods.srste.m=4"], "methods.srste.n=4, m=4: an N:M pattern keeps N"),
    (["branches=[srste]", "methods.srste.m=8"],
     "methods.srste.m=8 does not divide the 300 input weights of each row of fc2.weight (100, 300)"),
    (["branches=[srste]", "sparse.distribution=uniform"], "sparse.distribution=uniform has no effect on this run: only the branches edgepopup, gmp"),
    (["branches=[edgepopup]", "methods.edgepopup.density=1.5"], "methods.edgepopup.density=1.5 must be in (0, 1)"),
    (["branches=[edgepopup]", "methods.edgepopup.density=0"], "methods.edgepopup.density=0.0 must be in (0, 1)"),
    (["branches=[rigl]", "methods.rigl.update_step=twice"], "update_step='twice' must be one of: skip"),
]


@pytest.mark.parametrize("overrides, phrase", BAD_CONFIGS)
def test_a_bad_config_is_one_line_and_writes_nothing(tmp_path, capsys, overrides, phrase):
    overrides = [overrides] if isinstance(overrides, str) else overrides
    code, out, err = _run(capsys, tmp_path / "runs", *overrides)
    assert code == 2
    one_line_error(err, phrase)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escape").exists()


def test_after_failed_starts_the_corrected_command_runs_in_the_same_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    for bad in ["data.batch_size=0", "data.val_size=0", "train.optim.lr=-1", "trainer.devices=0"]:
        assert _run(capsys, runs, bad)[0] == 2
    code, out, err = _run(capsys, runs)
    assert code == 0 and "winning ticket: level 0" in out, err


@pytest.mark.parametrize("where, phrase", [
    ("a_file", "is a file"),
    ("/proc/lottery_runs", "cannot write in /proc"),
])
def test_a_runs_folder_that_cannot_be_written(tmp_path, capsys, where, phrase):
    (tmp_path / "a_file").write_text("not a folder")
    runs = tmp_path / where if where == "a_file" else where
    code, _, err = _run(capsys, runs)
    assert code == 2
    one_line_error(err, phrase)


# -- config files ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, phrase", [
    (b"train: [1\n", "is not valid YAML"),
    (b"train:\n\t- steps\n", "is not valid YAML"),
    (b"\xff\xfe\x00\x01\x89PNG", "is not a text file"),
    (b"- name: demo\n- seed: 1\n", "holds a list, not a mapping of keys"),
    (b"trian:\n  steps: 5\n", "Key 'trian' not in 'CommandConfig'"),
    (None, "is a directory"),
    ("missing", "does not exist"),
])
def test_a_bad_config_file(tmp_path, capsys, content, phrase):
    path = tmp_path / "config.yaml"
    if content is None:
        path.mkdir()
    elif content != "missing":
        path.write_bytes(content)
    code, _, err = _run(capsys, tmp_path / "runs", config=path)
    assert code == 2
    one_line_error(err, phrase)
    assert str(path) in err or "trian" in err
    assert not (tmp_path / "runs").exists()


def test_resuming_does_not_depend_on_how_runs_dir_is_spelt(tmp_path, capsys, finished, monkeypatch):
    run_dir = copy_run(finished, tmp_path / "runs")
    done = run_dir / "seed_0" / "level_01" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    monkeypatch.chdir(tmp_path)
    for spelling in [f"{tmp_path}/runs/", "runs", "./runs//", f"{tmp_path}/runs/../runs"]:
        code, out, err = _run(capsys, spelling, "prune.levels=1")
        assert code == 0, err
    assert done.stat().st_mtime_ns == stamp  # nothing retrained


def test_a_moved_run_folder_resumes_under_its_new_name(tmp_path, capsys, finished):
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(finished, moved)
    stamp = (moved / "seed_0" / "level_01" / "metrics.json").stat().st_mtime_ns
    code, out, err = _run(capsys, tmp_path / "elsewhere", "name=renamed", "prune.levels=2")
    assert code == 0, err
    assert (moved / "seed_0" / "level_01" / "metrics.json").stat().st_mtime_ns == stamp
    assert (moved / "seed_0" / "level_02" / "metrics.json").exists()
    code, _, err = _run(capsys, tmp_path / "elsewhere", "name=renamed", "prune.levels=2", "prune.fraction=0.5")
    assert code == 2 and "holds a different experiment (prune.fraction: 0.2 there, 0.5 now)" in err


# -- 3. damaged files say what to delete, and deleting it works -------------------------------------------------------


def _interrupted_level_1(run_dir: Path) -> Path:
    """Make level 1 look interrupted mid-training, with a resume checkpoint that is cut short."""
    level = run_dir / "seed_0" / "level_01"
    (level / "metrics.json").unlink()
    (level / "final.safetensors").unlink()
    (level / "checkpoints").mkdir()
    (level / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    return level / "checkpoints" / "last.ckpt"


DAMAGE = [  # (damage the copy and return the damaged path, extra overrides of the rerun, what the message says to delete)
    (lambda d: d / "seed_0" / "level_01" / "metrics.json", [], "level_01"),
    (lambda d: d / "seed_0" / "level_00" / "mask.safetensors", [], "level_00"),
    (lambda d: d / "seed_0" / "level_01" / "final.safetensors", ["prune.levels=2"], "level_01"),
    (lambda d: d / "seed_0" / "init.safetensors", [], "init.safetensors"),
    (lambda d: _interrupted_level_1(d), [], "last.ckpt"),
]


@pytest.mark.parametrize("damage, extra, target", DAMAGE, ids=["metrics", "mask", "final", "init", "checkpoint"])
def test_a_damaged_run_file_names_what_to_delete(tmp_path, capsys, finished, damage, extra, target):
    run_dir = copy_run(finished, tmp_path / "runs")
    path = damage(run_dir)
    if path.name != "last.ckpt":
        truncate(path)
    code, _, err = _run(capsys, tmp_path / "runs", "prune.levels=1", *extra)
    assert code == 2
    one_line_error(err, f"{path} is damaged")
    told = err.split("; delete ", 1)[1].split()
    victim = Path(told[2] if told[:2] == ["the", "folder"] else told[0])
    assert victim.name == target
    shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
    code, out, err = _run(capsys, tmp_path / "runs", "prune.levels=1", *extra)
    assert code == 0, err


def test_a_damaged_run_config_names_the_fix(tmp_path, capsys, finished):
    run_dir = copy_run(finished, tmp_path / "runs")
    (run_dir / "config.yaml").write_text("name: demo\ntrain: {steps: [\n")
    code, _, err = _run(capsys, tmp_path / "runs", "prune.levels=1")
    assert code == 2
    one_line_error(err, f"delete {run_dir} to start over")
    shutil.rmtree(run_dir)
    assert _run(capsys, tmp_path / "runs", "prune.levels=1")[0] == 0




# -- progress anywhere ------------------------------------------------------------------------------------------
def test_progress_shows_when_output_is_not_a_terminal_and_finished_levels_say_they_were_read(tmp_path, capsys,
                                                                                            monkeypatch):
    import lottery.training.callbacks as callbacks

    monkeypatch.setattr(callbacks, "PROGRESS_SECONDS", 0.0)  # the 30 s between lines, shortened for a short test
    args = ["train.steps=40", "prune.levels=1", "branches=[reinit]", "trainer.progress=true"]
    code, out, err = _run(capsys, tmp_path / "runs", *args)  # pytest's capture: stderr is no terminal
    assert code == 0, err
    assert "level 1 reinit  epoch 2/3  val/acc" in err and "\r" not in err  # lines, not a rewritten status
    level_lines = [line for line in out.splitlines() if line.startswith("level ")]
    assert all(re.search(r"\[\d+ s(, about .* left)?\]$", line) for line in level_lines), level_lines
    assert "about" in level_lines[0] and re.search(r"^done in [\d a-z]+; curve:", out.splitlines()[-1])
    code, out, err = _run(capsys, tmp_path / "runs", *args)
    assert code == 0 and all(line.endswith("(read from disk)") for line in out.splitlines() if line.startswith("level "))
    assert "epoch" not in err


def test_the_console_report_and_ticket_name_one_winning_ticket_by_one_rule(tmp_path, capsys):
    from lottery.core.ticket import load_ticket

    code, out, err = _run(capsys, tmp_path / "runs", "train.steps=40", "prune.levels=3", "branches=[reinit]")
    assert code == 0, err
    said = int(re.search(r"^winning ticket: level (\d+), .* at level \1: reinit [\d.]+%\) -> ", out, re.M).group(1))
    report = (tmp_path / "runs" / "demo" / "report.md").read_text()
    summary = report.split("## Every method")[0]
    assert f"**level {said}, " in summary and "validation accuracy" in summary
    assert re.search(rf"\| random re-initialisation \| {said} \|", summary)  # the control beside it, same level
    assert "*a second rule:* the sparsest IMP level matching on mean **test** accuracy" in summary
    assert load_ticket(tmp_path / "runs" / "demo" / "ticket.safetensors").metadata["level"] == said
    assert " ± " not in report  # one seed: no spread to show
