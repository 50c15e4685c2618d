"""SeedModels: how one seed of an experiment builds its models and masks, and reads its rewind point and its
levels' trained weights. The runner builds every level's model with it, and so does every branch."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lottery.core import rewind
from lottery.core.errors import LotteryError
from lottery.core.files import load_tensors
from lottery.core.layout import SeedDir
from lottery.core.masks import MaskManager
from lottery.core.methods import Penalty, Strategy
from lottery.core.schema import ExperimentConfig
from lottery.models import HF, create_model, output_layer
from lottery.models.presets import preset_names
from lottery.sparsity.distributions import dense_layers, layer_densities
from lottery.sparsity.schedule import UpdateSchedule
from lottery.sparsity.updaters import MethodSpec


class SeedModels:
    """The models of seed `files.seed` of experiment `cfg` on `data` (for its classes and input shape), pruned by
    `strategy` (the record of prune.strategy, with its options)."""

    def __init__(self, cfg: ExperimentConfig, files: SeedDir, data, strategy: Strategy):
        self.cfg, self.files, self.data, self.seed, self.strategy = cfg, files, data, files.seed, strategy
        self._own_densities: dict[str, dict | None] = {}

    @property
    def fraction(self) -> float:
        """The share of the remaining weights each IMP level removes (prune.fraction)."""
        return self.cfg.prune.fraction

    def fresh(self, seed: int, pretrained: bool = True) -> nn.Module:
        """A freshly initialised model; the same seed gives the same weights.

        A pretrained model (hf:, lottery.models.hf) holds its checkpoint's weights and a head drawn from `seed`;
        with pretrained=False it is its architecture's own random initialisation instead (the reinit control, and
        models whose weights are loaded next, which need not read the checkpoint).
        """
        torch.manual_seed(seed)
        options = self.cfg.model.options
        if not pretrained and self.cfg.model.name.startswith(HF):
            options = {**options, "weights": "random"}
        return create_model(self.cfg.model.name, self.data.num_classes, self.data.input_shape, options)

    def with_weights(self, path: Path) -> nn.Module:
        """The seed's architecture holding the weights of a file of this seed (a level's final.safetensors ...)."""
        model = self.fresh(self.seed, pretrained=False)
        model.load_state_dict(load_tensors(path))
        return model

    def rewind_point(self) -> rewind.RewindPoint:
        """The weights at the rewind iteration k (k = 0: the initial weights)."""
        k = self.cfg.rewind.step
        return rewind.RewindPoint(k, load_tensors(self.files.rewind(k)))

    def rewound(self) -> nn.Module:
        """The seed's architecture at its rewind point."""
        model = self.fresh(self.seed, pretrained=False)
        rewind.restore(model, self.rewind_point())
        return model

    def masks_for(self, model: nn.Module) -> MaskManager:
        """The experiment's prunable tensors of `model` and their rates (the output layer's, prune.rates)."""
        p = self.cfg.prune
        include = p.include if p.preset is None else preset_names(p.preset, dict(model.named_parameters()))
        prunable = MaskManager(model, include=include, exclude=p.exclude).names
        out = output_layer(model)  # its rate applies only if the output layer is pruned at all
        rates = {**({out: p.output_rate} if out in prunable else {}), **p.rates}
        return MaskManager(model, include=include, exclude=p.exclude, rates=rates, input_shape=self.data.input_shape)

    @property
    def penalty(self) -> Penalty | None:
        """The term every training of the run adds to its loss, if the strategy has one (network slimming's)."""
        return self.strategy.training_penalty(self.fresh(self.seed, pretrained=False))

    # -- the sparse-training branches (lottery.sparsity) ---------------------------------------------------
    def dense_layers(self, names: list[str]) -> set[str]:
        """The tensors sparse.dense_layers keeps dense: patterns, and "first" / "output" for the first and last."""
        return set(dense_layers(names, self.cfg.sparse.dense_layers))

    def layer_densities(self, masks: MaskManager, density: float, distribution: str | None = None) -> dict[str, float]:
        """Each masked tensor's density when `density` of them all is kept, shared by the experiment's distribution."""
        shapes = {n: tuple(m.shape) for n, m in masks.masks.items()}
        return layer_densities(distribution or self.cfg.sparse.distribution, shapes, density, self.dense_layers(masks.names))

    def schedule(self, total_steps: int) -> UpdateSchedule:
        """When masks change in a training of `total_steps` steps (sparse.*; the end at 75% of it by default)."""
        s = self.cfg.sparse
        end = s.last_update(total_steps)
        return UpdateSchedule(end_step=end, interval=s.interval_steps, start_step=s.start_step, drop_fraction=s.drop_fraction)

    def own_density_of(self, name: str, compute) -> dict[str, float] | None:
        """The densities branch `name` fixes for itself (lottery.imp.branches.own_densities), computed once."""
        if name not in self._own_densities:
            self._own_densities[name] = compute()
        return self._own_densities[name]

    def sparse_training(self, method: str, density: dict[str, float], total_steps: int, seed: int,
                        options=None) -> MethodSpec:
        """The spec of `method` (a name in lottery.sparsity.updaters.SPARSE_TRAINING, with its `options`) towards
        `density` per tensor."""
        return MethodSpec(method, tuple(density.items()), self.schedule(total_steps), seed, options)
