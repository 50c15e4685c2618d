"""Atomic files, safetensors, the per-seed lock."""
import os
import stat

import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.core.files import (
    exclusive,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)


def test_writes_are_atomic_and_leave_no_temporary_file(tmp_path):
    path = tmp_path / "a" / "b.json"
    write_json(path, {"x": 1})
    write_json(path, {"x": 2})
    assert read_json(path) == {"x": 2} and os.listdir(path.parent) == ["b.json"]
    assert stat.S_IMODE(path.stat().st_mode) & 0o600 == 0o600


def test_tensors_round_trip_bit_exactly_and_damage_is_a_clear_error(tmp_path):
    tensors = {"w": torch.randn(3, 4), "m": torch.rand(5) > 0.5}
    path = save_tensors(tmp_path / "t.safetensors", tensors, {"step": "7"})
    back, meta = load_tensors(path, with_metadata=True)
    assert meta == {"step": "7"} and all(torch.equal(back[k], v) for k, v in tensors.items())
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(LotteryError, match=r"t.safetensors is damaged \(.*\); delete .*t.safetensors and run"):
        load_tensors(path)


def test_one_holder_of_a_lock_at_a_time(tmp_path):
    with exclusive(tmp_path / ".lock", "seed 0 of runs/x"):
        with pytest.raises(LotteryError, match="seed 0 of runs/x is being run by another process"):
            with exclusive(tmp_path / ".lock", "seed 0 of runs/x"):
                pass
    with exclusive(tmp_path / ".lock", "seed 0 of runs/x"):  # released
        pass
