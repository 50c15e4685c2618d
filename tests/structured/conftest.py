"""What the structured tests share: real registered models on small inputs, and tiny transformers from a
configuration (no download)."""
import pytest
import torch

from lottery.core.masks import MaskManager
from lottery.models import create_model
from lottery.models.presets import preset_names

pytest.importorskip("torch_pruning")

TINY = {"weights": "random", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 40}
TRANSFORMERS = {"bert": ("hf:bert", (3, 16), {**TINY, "vocab_size": 100, "max_position_embeddings": 32}),
                "vit": ("hf:vit", (3, 16, 16), {**TINY, "patch_size": 4})}


def _model(name: str, shape=(1, 8, 8), seed: int = 0):
    """(model, its MaskManager with the input shape, the shape): a registered model or a tiny bert/vit; the output
    layer at half the rate, as the experiments prune it."""
    torch.manual_seed(seed)
    if name in TRANSFORMERS:
        hf, shape, options = TRANSFORMERS[name]
        pytest.importorskip("transformers")
        model = create_model(hf, 3, shape, options)
        return model, MaskManager(model, include=preset_names(name, dict(model.named_parameters())), input_shape=shape), shape
    model = create_model(name, 10, shape)
    last = [n for n, _ in model.named_parameters() if n.endswith("weight") and _.dim() > 1][-1]
    return model, MaskManager(model, rates={last: 0.5}, input_shape=shape), shape


@pytest.fixture
def structured_model():
    """`structured_model(name, shape=(1, 8, 8), seed=0)` -> (model, MaskManager, input shape)."""
    return _model


def inputs(name: str, shape, n: int = 4) -> torch.Tensor:
    """A batch the model takes: token ids within the vocabulary for bert, else random pixels."""
    g = torch.Generator().manual_seed(1)
    if name == "bert":
        x = torch.ones(n, *shape)
        x[:, 0] = torch.randint(0, 100, (n, shape[1]), generator=g)
        return x
    return torch.randn(n, *shape, generator=g)
