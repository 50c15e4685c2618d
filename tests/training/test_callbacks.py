"""The MaskCallback on a user's own LightningModule, with a real Trainer and real checkpoints."""
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lottery import MaskCallback, MaskManager


class UserModule(pl.LightningModule):
    """What a user already has: nothing lottery-specific in it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
        self.head_norm = nn.LayerNorm(3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.head_norm(self.net(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5, momentum=0.9)


def _loader():
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(64, 8, generator=g), torch.randint(0, 3, (64,), generator=g)), batch_size=16)


class _CheckZeros(pl.Callback):
    """Runs after MaskCallback: pruned weights must be zero after every optimizer step."""

    def __init__(self, masks_cb):
        self.masks_cb, self.checked = masks_cb, 0

    def on_train_batch_end(self, trainer, pl_module, *args):
        for n, m in self.masks_cb.masks.masks.items():
            assert (self.masks_cb.masks.model.get_parameter(n)[~m] == 0).all()
        self.checked += 1


def _trainer(tmp_path, callbacks, steps):
    return pl.Trainer(max_steps=steps, callbacks=callbacks, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")


def test_callback_keeps_pruned_weights_zero_and_checkpoints_the_masks(tmp_path):
    module = UserModule()
    masks = MaskManager(module.net)
    masks.prune(0.75)
    cb = MaskCallback(masks)
    check = _CheckZeros(cb)
    trainer = _trainer(tmp_path, [cb, check], steps=8)
    trainer.fit(module, _loader())
    assert check.checked == 8
    assert masks.sparsity() == 0.75 and module.head_norm.weight.ne(0).all()  # norms are never pruned
    path = tmp_path / "user.ckpt"
    trainer.save_checkpoint(path)

    # Resume into a fresh module whose callback builds its own (dense) manager: the masks come from the checkpoint.
    fresh_cb = MaskCallback(lambda m: MaskManager(m.net))
    fresh = UserModule()
    resumed = _trainer(tmp_path, [fresh_cb, _CheckZeros(fresh_cb)], steps=12)
    resumed.fit(fresh, _loader(), ckpt_path=path)
    for n, m in masks.masks.items():
        assert torch.equal(fresh_cb.masks.masks[n], m)
        assert (fresh.net.get_parameter(n)[~m] == 0).all()
    assert resumed.global_step == 12


def test_default_callback_masks_the_whole_module(tmp_path):
    module = UserModule()
    cb = MaskCallback()
    _trainer(tmp_path, [cb], steps=1).fit(module, _loader())
    assert cb.masks.names == ["net.0.weight", "net.2.weight"]


def test_an_updater_changes_a_users_masks_while_it_trains(tmp_path):
    """RigL on a user's module (automatic optimization): updates at steps 0, 4, 8, exact counts, zeros throughout."""
    from lottery.sparsity.schedule import UpdateSchedule
    from lottery.sparsity.updaters import RigL

    module = UserModule()
    masks = MaskManager(module.net)
    density = {"0.weight": 0.25, "2.weight": 0.5}
    masks.prune_to(density, "layer_random", torch.Generator().manual_seed(0))
    start = {n: m.clone() for n, m in masks.masks.items()}
    rigl = RigL(UpdateSchedule(end_step=8, interval=4), density)
    cb = MaskCallback(masks, updater=rigl)
    check = _CheckZeros(cb)
    _trainer(tmp_path, [cb, check], steps=12).fit(module, _loader())
    assert check.checked == 12
    assert any(not torch.equal(masks.masks[n], start[n]) for n in masks.names)
    assert {n: int(m.sum()) for n, m in masks.masks.items()} == {n: round(m.numel() * density[n]) for n, m in start.items()}
    assert "updater" in cb.state_dict()
