"""A mask updater's step in a plain PyTorch loop, as lottery's MaskCallback orders it in a training: the gradient,
the updater's `before_step` (which may withhold it), the optimizer's step, the updater's `update` (which may change the
masks), the masks applied. The tests' runs alone and lane networks step through this one function."""
import torch
import torch.nn.functional as F

from lottery.lanes.net import lane_loss


def updater_step(model, masks, opt, updater, step: int, x, y, loss=F.cross_entropy) -> None:
    """One iteration at schedule step `step`; updater None: a plain masked step (fixed masks)."""
    opt.zero_grad()
    loss(model(x), y).backward()
    if updater is not None:
        updater.before_step(step, masks, opt)
    opt.step()
    if updater is not None:
        updater.update(step, masks, opt)
    masks.apply()


def lanes_loss(logits, y):
    """The loss a lane network minimises: the sum of its lanes' mean cross-entropies (each lane's gradient its own)."""
    return lane_loss(logits, y)[0]


def random_batch(g: torch.Generator, features: int = 16, classes: int = 4, size: int = 32):
    """A batch of the tests' 16-feature, 4-class MLP task, from `g`."""
    return torch.randn(size, features, generator=g), torch.randint(0, classes, (size,), generator=g)
