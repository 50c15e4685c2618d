import json

import pytest
import torch
from torch import nn

from lottery import (
    LotteryError,
    MaskManager,
    Ticket,
    load_into,
    load_ticket,
    save_ticket,
)
from lottery.core.ticket import pack_bits, unpack_bits


def _ticket(mlp):
    model = mlp()
    masks = MaskManager(model)
    masks.prune(0.8)
    rewind = {k: v.clone() for k, v in mlp(1).state_dict().items()}
    rewind.update({n: rewind[n] * m for n, m in masks.masks.items()})
    return Ticket(dict(masks.masks), rewind, model.state_dict(), {"architecture": "mlp", "level": 7, "density": 0.2})


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (3, 5), (4, 3, 3, 3)])
def test_bits_pack_and_unpack_like_numpy(shape):
    import numpy as np

    mask = torch.rand(shape) > 0.5
    packed = pack_bits(mask)
    assert packed.numel() == -(-mask.numel() // 8)
    assert np.array_equal(packed.numpy(), np.packbits(mask.numpy().ravel()))
    assert torch.equal(unpack_bits(packed, shape), mask)


def test_ticket_round_trips_bit_for_bit(mlp, tmp_path):
    ticket = _ticket(mlp)
    path = save_ticket(ticket, tmp_path / "t.safetensors")
    back = load_ticket(path)
    for part in ("masks", "rewind", "final"):
        a, b = getattr(ticket, part), getattr(back, part)
        assert a.keys() == b.keys()
        for k in a:  # bit for bit: compare the raw bytes, so -0.0 and NaN payloads count too
            assert a[k].dtype == b[k].dtype and torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8))
    assert back.metadata == ticket.metadata


def test_shared_tensors_are_saved(mlp, tmp_path):
    ticket = _ticket(mlp)
    ticket.final = ticket.rewind  # the same tensors twice, as with tied weights
    back = load_ticket(save_ticket(ticket, tmp_path / "t.safetensors"))
    assert all(torch.equal(back.final[k], v) for k, v in ticket.rewind.items())


def test_masks_take_an_eighth_of_a_byte_per_weight(mlp, tmp_path):
    ticket = _ticket(mlp)
    path = save_ticket(ticket, tmp_path / "t.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.get_tensor("mask/0.weight").numel() == 16 * 32 // 8


def test_load_into_a_fresh_model_keeps_zeros_while_training(mlp, tmp_path):
    path = save_ticket(_ticket(mlp), tmp_path / "t.safetensors")
    model = mlp(5)
    masks = load_into(model, load_ticket(path))
    assert torch.equal(model[0].weight, load_ticket(path).rewind["0.weight"])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(torch.randn(4, 16)).sum().backward()
    opt.step()
    masks.apply()
    assert (model[0].weight[~masks.masks["0.weight"]] == 0).all()


def test_the_file_is_plain_safetensors_readable_without_lottery(mlp, tmp_path):
    import numpy as np
    from safetensors.numpy import load_file

    ticket = _ticket(mlp)
    path = save_ticket(ticket, tmp_path / "t.safetensors")
    arrays = load_file(str(path))
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
    shapes = json.loads(header["__metadata__"]["mask_shapes"])
    mask = np.unpackbits(arrays["mask/0.weight"])[: np.prod(shapes["0.weight"])].reshape(shapes["0.weight"]).astype(bool)
    assert np.array_equal(mask, ticket.masks["0.weight"].numpy())


def test_a_ticket_for_another_architecture_is_refused(mlp, tmp_path):
    path = save_ticket(_ticket(mlp), tmp_path / "t.safetensors")
    other = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    with pytest.raises(LotteryError, match="architecture 'mlp' and does not fit"):
        load_into(other, load_ticket(path))


def test_corrupt_and_foreign_files_are_refused(mlp, tmp_path):
    path = save_ticket(_ticket(mlp), tmp_path / "t.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:100])
    with pytest.raises(LotteryError, match="corrupt or truncated"):
        load_ticket(cut)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(LotteryError, match="not a lottery ticket"):
        load_ticket(tmp_path / "plain.safetensors")
    with pytest.raises(LotteryError, match="does not exist"):
        load_ticket(tmp_path / "missing.safetensors")
