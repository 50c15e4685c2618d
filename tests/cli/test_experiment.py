"""Bad inputs and faults: each is one line and exit code 2 (130 for Ctrl-C), no traceback, nothing written,
and the corrected command (or the one the message gives) then succeeds in the same folder. Every registry
looks names up the same way and names the valid ones when a name is unknown."""
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from lottery.imp.branches import BRANCHES
from lottery.cli.command import main
from lottery.data import DATASETS
from lottery.core.errors import LotteryError, Registry
from lottery.models import MODELS, check_name
from lottery.core.pruning import STRATEGIES
from lottery.sparsity.pruning_at_init import PAI_METHODS
from lottery.core.rewind import POLICIES
from lottery.training.optimizers import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "experiments" / "configs" / "demo.yaml")
TINY = ["train.epochs=null", "train.steps=6", "prune.levels=0", "branches=[]", "trainer.progress=false",
        "trainer.accelerator=cpu"]


def _main(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, phrase: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lottery: error: "), err
    assert phrase in lines[0], lines[0]


def _run(capsys, runs, *overrides, config=DEMO):
    return _main(capsys, "run", "--config", config, f"runs_dir={runs}", *TINY, *overrides)


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
    ("matching_tolerance=-5", "matching_tolerance=-5.0 must be >= 0"),
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
]


@pytest.mark.parametrize("overrides, phrase", BAD_CONFIGS)
def test_a_bad_config_is_one_line_and_writes_nothing(tmp_path, capsys, overrides, phrase):
    overrides = [overrides] if isinstance(overrides, str) else overrides
    code, out, err = _run(capsys, tmp_path / "runs", *overrides)
    assert code == 2
    _one_line_error(err, phrase)
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
    _one_line_error(err, phrase)


# -- config files ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, phrase", [
    (b"train: [1\n", "is not valid YAML"),
    (b"train:\n\t- steps\n", "is not valid YAML"),
    (b"\xff\xfe\x00\x01\x89PNG", "is not a text file"),
    (b"- name: demo\n- seed: 1\n", "holds a list, not a mapping of keys"),
    (b"trian:\n  steps: 5\n", "Key 'trian' not in 'ExperimentConfig'"),
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
    _one_line_error(err, phrase)
    assert str(path) in err or "trian" in err
    assert not (tmp_path / "runs").exists()


# -- 2. an experiment is what it computes, not where its folder is --------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run with levels 0 and 1 (copied by each test that damages it)."""
    runs = tmp_path_factory.mktemp("finished")
    assert main(["run", "--config", DEMO, f"runs_dir={runs}", *TINY, "prune.levels=1"]) == 0
    return runs / "demo"


def _copy(finished: Path, runs: Path) -> Path:
    shutil.copytree(finished, runs / "demo")
    return runs / "demo"


def test_resuming_does_not_depend_on_how_runs_dir_is_spelt(tmp_path, capsys, finished, monkeypatch):
    run_dir = _copy(finished, tmp_path / "runs")
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
def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


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
    run_dir = _copy(finished, tmp_path / "runs")
    path = damage(run_dir)
    if path.name != "last.ckpt":
        _truncate(path)
    code, _, err = _run(capsys, tmp_path / "runs", "prune.levels=1", *extra)
    assert code == 2
    _one_line_error(err, f"{path} is damaged")
    told = err.split("; delete ", 1)[1].split()
    victim = Path(told[2] if told[:2] == ["the", "folder"] else told[0])
    assert victim.name == target
    shutil.rmtree(victim) if victim.is_dir() else victim.unlink()
    code, out, err = _run(capsys, tmp_path / "runs", "prune.levels=1", *extra)
    assert code == 0, err


def test_a_damaged_run_config_names_the_fix(tmp_path, capsys, finished):
    run_dir = _copy(finished, tmp_path / "runs")
    (run_dir / "config.yaml").write_text("name: demo\ntrain: {steps: [\n")
    code, _, err = _run(capsys, tmp_path / "runs", "prune.levels=1")
    assert code == 2
    _one_line_error(err, f"delete {run_dir} to start over")
    shutil.rmtree(run_dir)
    assert _run(capsys, tmp_path / "runs", "prune.levels=1")[0] == 0


# -- tickets -----------------------------------------------------------------------------------------------------------
def _ticket(finished: Path, tmp_path: Path) -> Path:
    path = tmp_path / "t.safetensors"
    shutil.copy(finished / "ticket.safetensors", path)
    return path


def _rewrite(path: Path, edit) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(path))
    edit(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("edit, phrase", [
    (lambda t, m: t.pop("mask/fc2.weight"), "it has no tensor mask/fc2.weight"),
    (lambda t, m: m.update(level="{not json"), "is missing or not JSON"),
    (lambda t, m: m.pop("mask_shapes"), "'mask_shapes'"),
    (lambda t, m: t.update({"mask/fc1.weight": t["mask/fc1.weight"][:10]}), "does not hold a mask of shape"),
    (lambda t, m: m.pop("format"), "not a lottery ticket"),
    ("truncate", "corrupt or truncated"),
], ids=["missing-tensor", "bad-json", "no-shapes", "short-mask", "foreign", "truncated"])
def test_a_crafted_or_truncated_ticket(tmp_path, capsys, finished, edit, phrase):
    path = _ticket(finished, tmp_path)
    _truncate(path) if edit == "truncate" else _rewrite(path, edit)
    code, _, err = _main(capsys, "inspect", path)
    assert code == 2
    _one_line_error(err, phrase)


@pytest.mark.parametrize("out, phrase", [("folder", "is a folder"), ("/proc/ticket.safetensors", "cannot write the ticket")])
def test_export_to_a_folder_or_an_unwritable_place_leaves_nothing(tmp_path, capsys, finished, out, phrase):
    target = tmp_path / "folder" if out == "folder" else Path(out)
    (tmp_path / "folder").mkdir()
    code, _, err = _main(capsys, "export", finished, "--out", target)
    assert code == 2
    _one_line_error(err, phrase)
    assert list((tmp_path / "folder").iterdir()) == []
    code, _, err = _main(capsys, "export", finished, "--out", tmp_path / "folder" / "t.safetensors")
    assert code == 0 and [p.name for p in (tmp_path / "folder").iterdir()] == ["t.safetensors"]


def test_exported_files_have_the_permissions_of_the_other_run_files(tmp_path, capsys, finished):
    assert _main(capsys, "export", finished, "--out", tmp_path / "t.safetensors")[0] == 0
    (tmp_path / "plain").write_text("x")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "t.safetensors") == mode(tmp_path / "plain") == mode(finished / "curve.csv")
    assert mode(finished / "ticket.safetensors") == mode(finished / "config.yaml")


# -- Ctrl-C --------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ctrl_c_exits_130_with_the_resume_line_and_the_same_command_resumes(tmp_path):
    cmd = [sys.executable, "-m", "lottery", "run", "--config", DEMO, f"runs_dir={tmp_path}", "train.epochs=20",
           "prune.levels=1", "branches=[]", "trainer.progress=log", "trainer.accelerator=cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "demo" / "seed_0" / "level_00" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)  # inside level 0's training, which Lightning runs
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == ("lottery: interrupted; finished levels are saved, "
                                            "run the same command again to resume")
    assert "Traceback" not in err and "level  1" not in out  # it did not go on to the next level
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming level 0 from epoch " in again.stdout
    assert (tmp_path / "demo" / "seed_0" / "level_01" / "metrics.json").exists()
    epochs = [ln for ln in again.stderr.splitlines() if ln.startswith("level 1  epoch ")]  # trainer.progress=log
    assert len(epochs) == 20 and epochs[-1].startswith("level 1  epoch 20/20  val/acc ")


@pytest.mark.slow
def test_a_checkpoint_the_file_system_refuses_is_one_line_and_the_rerun_resumes_to_the_same_curve(tmp_path):
    """Mid-run, the process may write no file over 400 KB (its level files are ~200 KB, a resume checkpoint with
    Adam's moments ~700 KB): the next checkpoint fails as on a full disk. The rerun resumes where it stopped."""
    import resource

    cmd = [sys.executable, "-m", "lottery", "run", "--config", DEMO, "train.epochs=2", "prune.levels=2",
           "branches=[]", "trainer.progress=false", "trainer.accelerator=cpu"]
    clean = subprocess.run([*cmd, f"runs_dir={tmp_path / 'clean'}"], cwd=ROOT, capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    run = [*cmd, f"runs_dir={tmp_path / 'full'}"]
    # SIGXFSZ ignored: a write over the limit then fails with an error, as a write to a full disk does.
    proc = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN))
    level_1 = tmp_path / "full" / "demo" / "seed_0" / "level_01" / "mask.safetensors"
    deadline = time.time() + 240
    while not level_1.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (400_000, 400_000))
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 2, err
    _one_line_error(err, "File too large (")
    assert "last.ckpt" in err and "check that path, its permissions and the free space" in err
    assert not list((tmp_path / "full").rglob(".*.tmp*")), "a temporary file was left behind"
    level_0 = tmp_path / "full" / "demo" / "seed_0" / "level_00" / "metrics.json"
    stamp = level_0.stat().st_mtime_ns  # level 0 finished before the file system refused
    again = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert level_0.stat().st_mtime_ns == stamp  # read, not trained again
    assert (tmp_path / "full" / "demo" / "curve.csv").read_text() == (tmp_path / "clean" / "demo" / "curve.csv").read_text()


def test_an_os_error_is_one_line(tmp_path, capsys, finished):
    run_dir = _copy(finished, tmp_path / "runs")
    (run_dir / "curve.csv").unlink()
    (run_dir / "curve.csv").mkdir()  # the plot cannot replace a folder by a file
    code, _, err = _main(capsys, "plot", run_dir)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "curve.csv" in err


# -- unknown names -----------------------------------------------------------------------------------
REGISTRIES = {"model": MODELS, "dataset": DATASETS, "pruning strategy": STRATEGIES, "branch": BRANCHES,
              "pruning-at-init method": PAI_METHODS, "optimizer": OPTIMIZERS, "rewind policy": POLICIES}


@pytest.mark.parametrize("kind", REGISTRIES)
def test_one_lookup_and_one_error_for_every_registry(kind):
    registry = REGISTRIES[kind]
    assert isinstance(registry, Registry) and registry.kind == kind and len(registry) >= 2
    first = sorted(registry)[0]
    assert registry.lookup(first) is registry[first]
    with pytest.raises(LotteryError, match=f"unknown {kind} 'nope'; choose one of: {first}, "):
        registry.lookup("nope")


def test_register_adds_an_entry_and_torchvision_names_pass_the_model_check():
    r = Registry("widget")

    @r.register("w1")
    def w1():
        return 1

    assert r.lookup("w1") is w1
    check_name("torchvision:resnet18")  # built by torchvision, not registered
    with pytest.raises(LotteryError, match="or 'torchvision:<name>'"):
        check_name("resnet7")
