"""Hugging Face models as lottery models: `model.name=hf:<hub name | local folder | model type>`.

    model.name=hf:bert-base-uncased                    pretrained weights, from a folder or the hub cache
    model.name=hf:/path/to/folder                      a folder written by `save_pretrained`
    model.name=hf:bert model.options={weights: random, num_hidden_layers: 2, hidden_size: 32, ...}
                                                       a named configuration with random weights and these sizes

The head is chosen by the data: a sequence-classification head for text (inputs `[B, 3, L]`: token ids,
attention mask, token type ids, as lottery.data.text packs them) and an image-classification head for images
(`[B, C, H, W]`), with `num_labels` from the data. `HFClassifier.forward(x)` takes that one tensor and returns
logits, so ClassificationModule, masks, rewinding, lanes and tickets work unchanged. Its parameters are the
Hugging Face model's own names (`bert.encoder.layer.0.attention.self.query.weight`): presets, tickets and
`save_pretrained` exports line up with the checkpoint.

Offline first: a local folder or the hub cache is read without the network; only when neither holds the
weights and HF_HUB_OFFLINE is unset does `from_pretrained` download them.
"""
from __future__ import annotations

import contextlib
import difflib
import inspect
from pathlib import Path

import torch
from torch import nn

from lottery.core.errors import LotteryError, require
from lottery.core.hub import from_hub

WEIGHTS = ("pretrained", "random")  # model.options.weights


class HFClassifier(nn.Module):
    """A transformers classifier whose forward takes one tensor (token ids, mask and types packed; or pixels).

    The transformers model's children are this module's children, so names, state_dict keys and masks are the
    checkpoint's own; `.hf` is the transformers model itself (for `save_pretrained`).
    """

    def __init__(self, hf_model: nn.Module, kind: str):
        super().__init__()
        for name, child in hf_model.named_children():
            self.add_module(name, child)
        for name, value in hf_model._parameters.items():
            self.register_parameter(name, value)
        self.__dict__["_hf"] = hf_model  # not a submodule: the weights are not listed twice
        self.train()  # from_pretrained returns a model in eval mode (dropout off); ours train like any model
        self.kind = kind
        self.token_types = "token_type_ids" in _forward_arguments(hf_model)

    @property
    def hf(self) -> nn.Module:
        return self._hf

    @property
    def config(self):
        return self._hf.config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "image":
            return self._hf(pixel_values=x).logits
        ids, keep, types = x.long().unbind(-2)
        mask = keep
        if torch._C._functorch.is_batchedtensor(x):
            # Lanes (torch.func.vmap): transformers would branch on the [B, L] mask's values (`mask.all()`), which vmap
            # cannot follow; the additive [B, 1, 1, L] mask it builds from it is used as it is.
            dtype = self.classifier_dtype()
            mask = (1.0 - keep[..., None, None, :].to(dtype)) * torch.finfo(dtype).min
        kwargs = {"token_type_ids": types} if self.token_types else {}
        return self._hf(input_ids=ids, attention_mask=mask, **kwargs).logits

    def classifier_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype


def _forward_arguments(model: nn.Module) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")  # a configuration's count of blocks, by model family


def _config(transformers, source: str, weights: str, fields: dict):
    """The configuration `source` names, with `fields` (model.options) set: each one a field it has (a misspelt
    name would be kept as a new attribute that nothing reads), and blocks left to prune."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    try:
        if weights == "random" and source in CONFIG_MAPPING and not Path(source).exists():
            config = transformers.AutoConfig.for_model(source)
        else:
            config = from_hub(transformers.AutoConfig.from_pretrained, source, "model.name=hf:")
        known = set(config.to_dict()) | set(inspect.signature(type(config).__init__).parameters) - {"self", "kwargs"}
        for name in fields:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                raise LotteryError(f"model.options.{name}: {type(config).__name__} (hf:{source}) has no field {name!r}"
                                   f"{f' (did you mean {close[0]!r}?)' if close else ''}; the options are fields of its "
                                   "configuration (num_hidden_layers, hidden_size, ...) or weights")
        config = type(config).from_dict({**config.to_dict(), **fields})
    except (TypeError, ValueError) as error:
        raise LotteryError(f"model.options for hf:{source}: {str(error).splitlines()[0]}; "
                           "the options are fields of its configuration (num_hidden_layers, hidden_size, ...)") from None
    layers = next((getattr(config, f) for f in LAYER_FIELDS if getattr(config, f, None) is not None), None)
    if layers is not None and layers < 1:
        field = next(f for f in LAYER_FIELDS if getattr(config, f, None) is not None)
        raise LotteryError(f"model.options.{field}={layers} leaves hf:{source} without blocks: only its embeddings and "
                           "head would train; choose 1 or more")
    return config


def _fit_inputs(config, source: str, input_shape: tuple, kind: str, weights: str) -> None:
    """Check (and for random weights set) the input sizes the model needs against the data's."""
    if kind == "text":
        length, limit = input_shape[1], getattr(config, "max_position_embeddings", None)
        if limit is not None and length > limit:
            raise LotteryError(f"data.options.max_length={length} is above the {limit} positions of model hf:{source} "
                               f"(max_position_embeddings); choose data.options.max_length <= {limit}")
        return
    channels, size = input_shape[0], input_shape[1]
    if weights == "random":
        config.num_channels, config.image_size = channels, size
    if getattr(config, "num_channels", channels) != channels or getattr(config, "image_size", size) != size:
        raise LotteryError(f"model hf:{source} takes {config.num_channels}-channel images of {config.image_size} pixels, "
                           f"the data has {channels} channels of {size}; choose a dataset or model of that size")


def create_hf_model(source: str, num_classes: int, input_shape: tuple, weights: str = "pretrained",
                    **fields) -> HFClassifier:
    """The classifier `source` names, for `num_classes` classes and the data's input shape (see the module doc).

    weights: "pretrained" (the checkpoint's, a new head) or "random" (the configuration's own initialisation,
    drawn from torch's global generator: seed it first). fields: configuration fields (sizes, dropout ...).
    """
    transformers = require("transformers", f"model hf:{source}", "hf")
    if weights not in WEIGHTS:
        raise LotteryError(f"model.options.weights={weights!r} must be one of {', '.join(WEIGHTS)}")
    kind = "text" if len(input_shape) == 2 else "image"
    config = _config(transformers, source, weights, fields)
    config.num_labels = num_classes
    _fit_inputs(config, source, tuple(input_shape), kind, weights)
    auto = transformers.AutoModelForSequenceClassification if kind == "text" else transformers.AutoModelForImageClassification
    try:
        with _quiet(transformers):
            if weights == "random":
                model = auto.from_config(config)
            else:
                model = from_hub(auto.from_pretrained, source, "model.name=hf:", config=config, ignore_mismatched_sizes=True)
    except ValueError as error:
        first = str(error).splitlines()[0][:200]
        if "Unrecognized configuration class" in first:  # a configuration without such a head
            raise LotteryError(f"model hf:{source} has no {'sequence' if kind == 'text' else 'image'}-classification "
                               f"head in transformers ({first[:160]}); choose another model") from None
        raise LotteryError(f"model hf:{source} cannot be built with model.options={fields}: {first}") from None
    return HFClassifier(model, kind)


@contextlib.contextmanager
def _quiet(transformers):
    """No load report or progress bar per model built: a run builds one per level and branch. That the
    classifier is new is by design (docs/pretrained.md), not news."""
    logging = transformers.utils.logging
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
