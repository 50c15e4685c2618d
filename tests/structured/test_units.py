"""The groups of units Torch-Pruning's dependency graph gives, as parameter names and indices: residual channels,
neurons, attention heads, and the groups that must stay whole (lottery.structured.units)."""
import pytest
import torch

from lottery.core.errors import LotteryError
from lottery.structured.units import unit_groups


def _by_root(model, masks, shape):
    return {g.root: g for g in unit_groups(model, shape, masks.names)}


def test_resnet_stage_channels_are_one_group_over_the_residual_connections(structured_model):
    model, masks, shape = structured_model("resnet20")
    groups = _by_root(model, masks, shape)
    stage1 = groups["conv"]  # the stem and every block of stage 1 add into the same 16 channels
    produce = {m.name for m in stage1.producers}
    read = {m.name for m in stage1.members if m.dim == 1}
    assert produce == {"conv.weight", "blocks.0.conv2.weight", "blocks.1.conv2.weight", "blocks.2.conv2.weight"}
    assert read == {"blocks.0.conv1.weight", "blocks.1.conv1.weight", "blocks.2.conv1.weight",
                    "blocks.3.conv1.weight", "blocks.3.shortcut.0.weight"}
    assert {m.name for m in stage1.norms} == {"bn.weight", "blocks.0.bn2.weight", "blocks.1.bn2.weight", "blocks.2.bn2.weight"}
    inner = groups["blocks.4.conv1"]  # inside a block: conv1's channels, its BatchNorm, conv2's inputs
    assert [(m.name, m.dim) for m in inner.members] == [("blocks.4.conv1.weight", 0), ("blocks.4.conv2.weight", 1)]
    assert groups["fc"].fixed == "fc gives the model's output"
    assert all(not g.fixed for root, g in groups.items() if root != "fc") and stage1.kind == "channel"


def test_a_flatten_gives_a_channel_every_position_of_the_next_linear(structured_model):
    model, masks, shape = structured_model("conv2")
    last = _by_root(model, masks, shape)["features.2"]  # 64 channels of 4x4 after the pool: 1,024 inputs of fc 1
    reader = next(m for m in last.members if m.name == "classifier.1.weight")
    assert reader.dim == 1 and len(reader.index) == 1024
    assert torch.equal(reader.unit.bincount(), torch.full((64,), 16))


def test_attention_heads_group_query_key_value_rows_and_output_columns(structured_model):
    model, masks, shape = structured_model("bert")
    heads = [g for g in unit_groups(model, shape, masks.names) if g.kind == "head"]
    assert len(heads) == 2 and all(g.units == 4 and g.width == 8 and not g.fixed for g in heads)
    layer0 = next(g for g in heads if ".layer.0." in g.root)
    assert sorted((m.name.split("layer.0.")[1], m.dim) for m in layer0.members) == [
        ("attention.output.dense.weight", 1), ("attention.self.key.weight", 0), ("attention.self.query.weight", 0),
        ("attention.self.value.weight", 0)]
    assert all(torch.equal(m.unit, torch.arange(32) // 8) for m in layer0.members)  # head h: channels 8h .. 8h + 7
    hidden = next(g for g in unit_groups(model, shape, masks.names) if g.fixed and "LayerNorm" in g.fixed)
    assert hidden.kind == "channel"  # the residual stream: its LayerNorms would see fewer channels


def test_a_classifier_outside_the_prunable_set_keeps_the_units_it_reads(structured_model):
    model, masks, shape = structured_model("vit")
    groups = unit_groups(model, shape, masks.names)
    assert {g.kind for g in groups if not g.fixed} == {"head", "channel"}  # heads and MLP neurons of both blocks
    assert sum(not g.fixed for g in groups) == 4


def test_a_layer_whose_weight_is_used_outside_its_forward_is_named(structured_model):
    class Functional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

        def forward(self, x):
            return torch.nn.functional.linear(torch.relu(self.fc1(x)), self.fc2.weight, self.fc2.bias)

    with pytest.raises(LotteryError, match="has no layer 'fc2': its weight is used outside the layer's forward"):
        unit_groups(Functional(), (4,), ["fc1.weight", "fc2.weight"])
