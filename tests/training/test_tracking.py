"""Lightning loggers per level and branch: CSV by default, TensorBoard read back against metrics.json."""
import csv
import sys
from pathlib import Path

import pytest

from lottery.cli.config import load_config
from lottery.cli.experiment import run
from lottery.core import files
from lottery.core.errors import LotteryError
from lottery.training.tracking import make_logger

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "experiments" / "configs" / "demo.yaml"


def tiny(tmp_path, *overrides):
    return load_config(DEMO, [f"runs_dir={tmp_path}", "train.steps=60", "prune.levels=1", "trainer.progress=false",
                              "trainer.accelerator=cpu", "data.val_size=200", *overrides])


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_events_hold_what_metrics_json_holds(tmp_path):
    run_dir = run(tiny(tmp_path, "trainer.logger=tensorboard", "branches=[reinit]"), log=lambda *_: None)
    folders = {p.parent.relative_to(run_dir).as_posix() for p in run_dir.rglob("events.out.tfevents.*")}
    assert folders == {"seed_0/level_00", "seed_0/level_01", "seed_0/level_01/branch_reinit"}  # one TB run each
    for folder in folders:
        m = files.read_json(run_dir / folder / "metrics.json")
        tb = _scalars(run_dir / folder)
        last = lambda tag: tb[tag][-1][1]
        for key in ("density", "test_acc", "test_loss", "best_val_acc", "final_val_acc", "early_stop_step"):
            assert last(f"level/{key}") == pytest.approx(m[key], rel=1e-6), key
        for name, density in m["layer_density"].items():
            assert last(f"level/layer_density/{name}") == pytest.approx(density, rel=1e-6)
        assert [v for _, v in tb["val/acc"]] == pytest.approx([h["val/acc"] for h in m["history"]], rel=1e-6)
        assert last("test/acc") == pytest.approx(m["test_acc"], rel=1e-6)
        assert {"train/loss", "train/acc", "val/loss"} <= set(tb)
        assert tb["step/lr"] == [(50, pytest.approx(1.2e-3))]  # every log_every_n_steps (50) steps
        assert 0 < last("step/train_acc") <= 1 and last("step/train_loss") > 0
    assert _scalars(run_dir / "seed_0/level_01")["level/density"][-1][1] < 1.0


def test_csv_logger_by_default(tmp_path):
    run_dir = run(tiny(tmp_path, "prune.levels=0", "train.steps=20"), log=lambda *_: None)
    level = run_dir / "seed_0" / "level_00"
    with open(level / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    m = files.read_json(level / "metrics.json")
    assert [float(r["val/acc"]) for r in rows if r["val/acc"]] == pytest.approx([h["val/acc"] for h in m["history"]])
    assert float(next(r for r in rows if r["level/test_acc"])["level/test_acc"]) == pytest.approx(m["test_acc"])
    assert not list(run_dir.rglob("events.out.tfevents.*"))


def test_logger_choice_is_checked_before_anything_runs(tmp_path, monkeypatch):
    with pytest.raises(LotteryError, match="unknown trainer.logger 'tb'; choose one of: csv, tensorboard, wandb, mlflow, none"):
        run(tiny(tmp_path, "trainer.logger=tb"))
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.raises(LotteryError, match=r'trainer.logger=wandb needs the wandb package, which is not installed: pip install -e "\.\[wandb\]".*or choose trainer.logger=csv'):
        run(tiny(tmp_path, "trainer.logger=wandb"))
    assert not (tmp_path / "demo").exists()
    assert make_logger("none", tmp_path, "demo", "seed_0/level_00") is False


def test_runs_trained_as_lanes_log_to_their_own_runs_as_they_train(tmp_path):
    run_dir = run(tiny(tmp_path, "trainer.logger=tensorboard", "branches=[reinit]", "seeds=[0,1]", "trainer.lanes=4"),
                  log=lambda *_: None)
    folders = {p.parent.relative_to(run_dir).as_posix() for p in run_dir.rglob("events.out.tfevents.*")}
    assert folders == {f"seed_{s}/{f}" for s in (0, 1) for f in ("level_00", "level_01", "level_01/branch_reinit")}
    for folder in folders:
        m, tb = files.read_json(run_dir / folder / "metrics.json"), _scalars(run_dir / folder)
        assert [v for _, v in tb["val/acc"]] == pytest.approx([h["val/acc"] for h in m["history"]], rel=1e-6)
        assert [s for s, _ in tb["val/acc"]] == [h["step"] - m["start_step"] for h in m["history"]]
        assert {"train/loss", "train/acc", "val/loss", "test/acc"} <= set(tb)  # epoch values, logged live
        assert tb["step/lr"] == [(50, pytest.approx(1.2e-3))] and 0 < tb["step/train_acc"][-1][1] <= 1
        assert tb["level/test_acc"][-1][1] == pytest.approx(m["test_acc"], rel=1e-6)
    seed0, seed1 = _scalars(run_dir / "seed_0/level_01"), _scalars(run_dir / "seed_1/level_01")
    assert seed0["val/acc"] != seed1["val/acc"]  # each lane's own values


def _mlflow_runs(db: Path) -> dict[str, object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("demo")
    return client, {r.data.tags["mlflow.runName"]: r for r in client.search_runs([experiment.experiment_id])}


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [[], ["seeds=[0,1]", "trainer.lanes=4"]], ids=["one by one", "as lanes"])
def test_mlflow_logs_to_a_sqlite_store_in_the_runs_folder(tmp_path, monkeypatch, lanes):
    """MLflow 3 refuses its old file store: without MLFLOW_TRACKING_URI the runs go to runs_dir/mlflow.db."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder either
    run_dir = run(tiny(tmp_path / "runs", "trainer.logger=mlflow", "branches=[reinit]", *lanes), log=lambda *_: None)
    client, runs = _mlflow_runs(tmp_path / "runs" / "mlflow.db")
    seeds = (0, 1) if lanes else (0,)
    folders = [f"seed_{s}/{f}" for s in seeds for f in ("level_00", "level_01", "level_01/branch_reinit")]
    assert sorted(runs) == sorted(folders)  # in the MLflow experiment "demo"
    for folder in folders:
        m, logged = files.read_json(run_dir / folder / "metrics.json"), runs[folder]
        assert logged.data.metrics["level/test_acc"] == pytest.approx(m["test_acc"], rel=1e-6)
        history = client.get_metric_history(logged.info.run_id, "val/acc")
        assert [h.value for h in history] == pytest.approx([h["val/acc"] for h in m["history"]], rel=1e-6)
        assert logged.data.params["prune.fraction"] == "0.2" and logged.data.tags["experiment"] == "demo"
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "runs" / "mlruns").exists()


def _wandb_records(folder: Path) -> list:
    """The records of the offline W&B run in a level's folder: its .wandb file is a LevelDB-style log of protobuf
    records (a 7-byte header, then 32 KiB blocks of chunks, each with a 7-byte header: crc, length, type)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    (path,) = folder.glob("wandb/offline-run-*/run-*.wandb")
    data, block, pos, chunks, records = path.read_bytes(), 32768, 7, [], []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunks.append(data[pos + 7:pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
            chunks = []
    return records


@pytest.mark.slow
@pytest.mark.parametrize("lanes", [[], ["seeds=[0,1]", "trainer.lanes=4"]], ids=["one by one", "as lanes"])
def test_wandb_offline_runs_hold_what_metrics_json_holds(tmp_path, monkeypatch, lanes):
    import json

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = run(tiny(tmp_path, "trainer.logger=wandb", "branches=[reinit]", *lanes), log=lambda *_: None)
    seeds = (0, 1) if lanes else (0,)
    for folder in [f"seed_{s}/{f}" for s in seeds for f in ("level_00", "level_01", "level_01/branch_reinit")]:
        m, records = files.read_json(run_dir / folder / "metrics.json"), _wandb_records(run_dir / folder)
        (info,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert info.display_name == f"demo/{folder}" and info.run_group == "demo"
        history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
                   for r in records if r.WhichOneof("record_type") == "history"]
        assert [h["val/acc"] for h in history if "val/acc" in h] == pytest.approx([h["val/acc"] for h in m["history"]])
        assert [h["level/test_acc"] for h in history if "level/test_acc" in h] == pytest.approx([m["test_acc"]])
