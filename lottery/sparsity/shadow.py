"""Methods whose mask is learned through a tensor of their own: every pruned weight has a shadow that the run's
optimizer trains in the weight's place, and the mask is recomputed from the shadow at every step.

    edgepopup  (lottery.sparsity.edgepopup)  the shadow is a score per weight; the weights keep their initial values
    srste      (lottery.sparsity.srste)      the shadow is the dense weight; the mask its top N of every M

Around the run's own optimizer step of every iteration (MaskCallback's two calls, or a plain loop's):

    before_step  the weight's gradient becomes the shadow's (`shadow_grad`, the method's straight-through estimator;
                 autograd gives the gradient of every entry of the masked weight, pruned ones too), and the shadow
                 goes into the parameter, so that optimizer.step() updates it with the parameter's state: momentum
                 and Adam's moments are the shadow's, as in the papers' code, which trains the shadow as a parameter
    update       the stepped parameter goes back into the shadow, the new mask comes from it (`new_mask`), and the
                 parameter gets the weights the next forward uses (`effective`): zero where pruned, as everywhere

Between steps the parameters hold the masked weights (what evaluation, checkpoints and exports see) and the shadows
live in the updater's state_dict, which MaskCallback keeps in the resume checkpoint. A shadow is shaped as its
parameter: [K, ...] for K lanes, each row its own run's. Tensors at density 1 have no shadow.
"""
from __future__ import annotations

import torch

from lottery.core.errors import LotteryError
from lottery.core.masks import MaskManager
from lottery.sparsity.updaters import MaskUpdater, Rows, _rows


class ShadowUpdater(MaskUpdater):
    """The base of methods that train a shadow of each pruned tensor through the run's optimizer. Subclasses write
    `first_shadow`, `shadow_grad`, `effective` and `new_mask`; `freezes_others`: every parameter without a shadow
    keeps its value (edge-popup trains no weight at all)."""

    trains_pruned = True
    freezes_others = False

    def __init__(self, schedule, density, seeds=(0,), options=None):
        super().__init__(schedule, density, seeds, options)
        self.shadow: dict[str, torch.Tensor] = {}
        self.shadowed = [n for n, d in self.density.items() if d < 1.0]

    # -- what a method writes ------------------------------------------------------------------------------
    def first_shadow(self, index: int, name: str, weight: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The shadow of parameter `name` before any step, from its initial value `weight` (K lanes' [K, *shape], or
        one run's of `shape`)."""
        raise NotImplementedError

    def shadow_grad(self, name: str, grad: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The shadow's gradient from the masked weight's `grad` (every entry) and the mask the forward used."""
        raise NotImplementedError

    def effective(self, name: str, mask: torch.Tensor) -> torch.Tensor:
        """The weights the next forward uses: zero where `mask` is False."""
        raise NotImplementedError

    # -- the interface -------------------------------------------------------------------------------------
    def is_update(self, step: int) -> bool:
        return True  # the mask follows the shadow at every step

    def done(self, step: int) -> bool:
        return False

    def update_steps(self, total_steps: int) -> list[int]:
        return list(range(total_steps))

    @torch.no_grad()
    def start(self, masks: MaskManager) -> None:
        """The shadows of the initial weights and the first masks from them, before the first forward; nothing when
        they exist already (a second call, or state loaded from a checkpoint)."""
        if self.shadow:
            return
        if pruned := [n for n in self.shadowed if not bool(masks.masks[n].all())]:
            raise LotteryError(f"{type(self).__name__}.start needs the dense initial weights, but {pruned} are pruned "
                               "already: start it on the unpruned model (its record starts dense)")
        lanes = getattr(masks.model, "lanes", None)  # a LaneNet's parameters are stacked [K, ...], even for K = 1
        new = dict(masks.masks)
        for index, name in enumerate(self.density):
            if name not in self.shadowed:
                continue
            param = masks.model.get_parameter(name)
            shape = tuple(param.shape[1:]) if lanes is not None else tuple(param.shape)
            self.shadow[name] = self.first_shadow(index, name, param.detach().clone(), shape)
            new[name] = self.new_mask(0, self._rows(index, name, masks, lanes or 1)).view_as(param)
            param.copy_(self.effective(name, new[name]))
        masks.replace_masks(new, self.density)  # the targets with the masks: a resumed run checks the two

    @torch.no_grad()
    def before_step(self, step: int, masks: MaskManager, optimizer: torch.optim.Optimizer) -> None:
        if self.shadowed and not self.shadow:
            raise LotteryError(f"{type(self).__name__}.start(masks) must run before the first step (MaskCallback "
                               "calls it at setup; in a plain loop call it once before the loop)")
        own = set()
        for name in self.shadowed:
            param = masks.model.get_parameter(name)
            shadow = self._on(name, param)
            if param.grad is not None:
                param.grad = self.shadow_grad(name, param.grad, masks.masks[name]).to(param.grad.dtype)
            param.copy_(shadow)
            own.add(id(param))
        if self.freezes_others:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if id(p) not in own:
                        p.grad = None  # the optimizer skips a parameter without a gradient: no step, no decay

    @torch.no_grad()
    def update(self, step: int, masks: MaskManager, optimizer: torch.optim.Optimizer | None = None) -> None:
        lanes = getattr(masks.model, "lanes", 1)
        new = dict(masks.masks)
        for index, name in enumerate(self.density):
            if name not in self.shadowed:
                continue
            param = masks.model.get_parameter(name)
            self._on(name, param).copy_(param)
            new[name] = self.new_mask(step, self._rows(index, name, masks, lanes)).view_as(param)
            param.copy_(self.effective(name, new[name]))
        masks.replace_masks(new, self.density)  # the targets with the masks: a resumed run checks the two

    def _rows(self, index: int, name: str, masks: MaskManager, lanes: int) -> Rows:
        mask, density = masks.masks[name], self.density[name]
        return Rows(name, index, _rows(mask, lanes), _rows(self.shadow[name], lanes), None, {}, density,
                    round(mask.numel() // lanes * density))

    def _on(self, name: str, param: torch.Tensor) -> torch.Tensor:
        """The shadow of `name` on the parameter's device and dtype (a loaded state is on the CPU)."""
        shadow = self.shadow[name]
        if shadow.device != param.device or shadow.dtype != param.dtype:
            shadow = self.shadow[name] = shadow.to(device=param.device, dtype=param.dtype)
        return shadow

    # -- state: the shadows, in the resume checkpoint ------------------------------------------------------
    def state_dict(self) -> dict:
        return {"shadow": {n: t.detach().cpu().clone() for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        if "shadow" in state:
            self.shadow = {n: t.clone() for n, t in state["shadow"].items()}
