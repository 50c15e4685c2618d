"""Channel spaces of a traced model: which tensors share channels, and which channels are constant.

`analyse` traces a model with torch.fx and follows its channels (dimension 1 of every activation):
a Linear or Conv starts a new space; BatchNorm, activations, pooling and flatten keep their input's
space; `a + b` (a residual connection) joins the spaces of a and b, whose channels must then be
removed together. For every activation it also records which channels are constant, i.e. the same
for every input and every position: a unit whose incoming weights are all pruned outputs its bias,
and BatchNorm, ReLU and pooling keep it constant. Anything else stops the analysis with an error
that suggests the compact export, which works for every model.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from lottery.core.errors import LotteryError

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# Applied to each element (so to each channel) on its own: a constant channel stays constant.
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
               nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d)
# Pooling within each channel: a spatially constant map stays constant (max-pool pads with -inf).
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
         nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)  # zero padding counted in: only zero stays constant
FUNCTIONS = {torch.relu, F.relu, F.relu6, F.gelu, F.silu, torch.sigmoid, torch.tanh, F.adaptive_avg_pool2d,
             F.adaptive_max_pool2d, F.max_pool2d}
METHODS = {"relu", "sigmoid", "tanh"}
ADDS = {operator.add, torch.add}


@dataclass
class Activation:
    """What the analysis knows about one activation: its space, and its constant features.

    `features` run along dimension 1; after a flatten each channel spans `per` consecutive features.
    """

    space: int
    per: int
    const: torch.Tensor  # bool, one per feature: the same value for every input and position
    value: torch.Tensor  # that value where const (measured on the example input)


@dataclass
class Graph:
    gm: fx.GraphModule
    acts: dict[fx.Node, Activation] = field(default_factory=dict)
    parent: list[int] = field(default_factory=list)  # union-find over spaces
    size: list[int] = field(default_factory=list)    # channels per space
    fixed: set[int] = field(default_factory=set)     # spaces that touch the input or output (not roots: use is_fixed)
    consumers: list[tuple[str, fx.Node]] = field(default_factory=list)  # (Linear/Conv, its input)
    producers: list[tuple[str, int]] = field(default_factory=list)      # (Linear/Conv, its output space)
    norms: list[tuple[str, int]] = field(default_factory=list)          # (BatchNorm, its space)

    def find(self, space: int) -> int:
        while self.parent[space] != space:
            space = self.parent[space]
        return space

    def is_fixed(self, root: int) -> bool:
        return any(self.find(s) == root for s in self.fixed)

    def new_space(self, channels: int) -> int:
        self.parent.append(len(self.parent))
        self.size.append(channels)
        return self.parent[-1]


def unsupported(model: nn.Module, what: str) -> LotteryError:
    return LotteryError(f"cannot shrink {type(model).__name__}: {what}. Export it with --format compact "
                        "(or save_compact), which works for every model")


def trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types (TraceError, TypeError, NotImplementedError ...)
        raise unsupported(model, f"torch.fx cannot trace its forward ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _record(gm: fx.GraphModule, example: torch.Tensor) -> dict[fx.Node, object]:
    """Every node's output on `example`, copied before any later in-place op can change it."""
    outputs = {}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            outputs[node] = out.detach().clone() if isinstance(out, torch.Tensor) else out
            return out

    with torch.no_grad():
        Recorder(gm).run(example)
    return outputs


def _first(out: torch.Tensor) -> torch.Tensor:
    """One value per feature (dimension 1): the first sample at the first position."""
    return out[0].reshape(out.shape[1], -1)[:, 0]


def _padded(conv: nn.Module) -> bool:
    """Zero padding: a constant input map gives a border pattern (other padding modes keep it constant)."""
    if conv.padding_mode != "zeros" or conv.padding == "valid":
        return False
    return math.prod(conv.kernel_size) > 1 if conv.padding == "same" else any(conv.padding)


def reads(layer: nn.Module) -> torch.Tensor:
    """(out, in) bool: which input features (Linear) or channels (Conv) each output unit reads."""
    nz = layer.weight.detach().ne(0)
    return nz if isinstance(layer, nn.Linear) else nz.flatten(2).any(2)


def foldable(layer: nn.Module, act: Activation) -> torch.Tensor:
    """Input features whose (constant) contribution to `layer` can move into its bias."""
    if isinstance(layer, nn.Linear) or not _padded(layer):
        return act.const
    return act.const & act.value.eq(0)  # zero padding turns a nonzero constant map into a border pattern


def analyse(model: nn.Module, example: torch.Tensor) -> Graph:
    """Trace `model` (in eval mode) and follow its channels on `example` (a batch of inputs)."""
    gm = trace(model)
    outputs = _record(gm, example)
    g, calls = Graph(gm), set()
    for node in gm.graph.nodes:
        out = outputs.get(node)
        if node.op == "output":  # the logits keep every unit
            g.fixed.update(g.acts[n].space for n in node.all_input_nodes if n in g.acts)
            continue
        if not isinstance(out, torch.Tensor) or out.dim() < 2:
            raise unsupported(model, f"node {node.name!r} ({node.op} {node.target}) does not give a batch of features")
        if node.op == "placeholder":
            space = g.new_space(out.shape[1])
            g.fixed.add(space)
            g.acts[node] = Activation(space, 1, torch.zeros(out.shape[1], dtype=torch.bool), _first(out))
            continue
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if module is not None and any(True for _ in [*module.parameters(recurse=False), *module.buffers(recurse=False)]):
            if node.target in calls:
                raise unsupported(model, f"module {node.target!r} is called more than once")
            calls.add(node.target)
        g.acts[node] = _step(model, g, node, module, out)
    return g


def _step(model, g: Graph, node: fx.Node, module, out: torch.Tensor) -> Activation:
    args = node.all_input_nodes
    if any(a not in g.acts for a in args) or not args:
        raise unsupported(model, f"node {node.name!r} ({node.op} {node.target}) reads something other than activations")
    first = g.acts[args[0]]
    value = _first(out)
    if isinstance(module, LAYERS):
        if isinstance(module, nn.Linear) and out.dim() != 2:
            raise unsupported(model, f"Linear {node.target!r} is applied to a {out.dim()}-d input")
        if not isinstance(module, nn.Linear) and module.groups != 1:
            raise unsupported(model, f"Conv {node.target!r} has groups={module.groups}")
        g.consumers.append((node.target, args[0]))
        space = g.new_space(out.shape[1])
        g.producers.append((node.target, space))
        # An output unit is constant when every input it reads is constant (and foldable, for a padded conv).
        const = ~(reads(module) & ~foldable(module, first)).any(1)
        return Activation(space, 1, const, value)
    if isinstance(module, NORMS):
        g.norms.append((node.target, first.space))
        return Activation(first.space, first.per, first.const, value)
    if isinstance(module, ELEMENTWISE + POOLS) or node.target in FUNCTIONS or (node.op == "call_method" and node.target in METHODS):
        return Activation(first.space, first.per, first.const, value)
    if isinstance(module, AVG_POOLS):
        keeps = not any(module.padding if isinstance(module.padding, tuple) else (module.padding,)) or not module.count_include_pad
        return Activation(first.space, first.per, first.const & (first.value.eq(0) | keeps), value)
    if _is_flatten(node, module):
        per = out.shape[1] // g.size[g.find(first.space)] if first.per == 1 else first.per
        return Activation(first.space, per, first.const.repeat_interleave(per // first.per), value)
    if node.target in ADDS and len(node.args) == 2 and not node.kwargs:
        return _add(model, g, node, args, value)
    raise unsupported(model, f"its graph has {node.op} {getattr(node.target, '__name__', node.target)!s} "
                             f"(node {node.name!r}), which the shrinker does not follow")


def _is_flatten(node: fx.Node, module) -> bool:
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    is_call = node.target is torch.flatten or (node.op == "call_method" and node.target == "flatten")
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return is_call and start == 1 and end == -1


def _add(model, g: Graph, node: fx.Node, args: list[fx.Node], value: torch.Tensor) -> Activation:
    """`a + b`: a residual connection joins two spaces (their channels go together); `a + scalar` keeps one."""
    if len(args) == 1:
        a = g.acts[args[0]]
        return Activation(a.space, a.per, a.const, value)
    a, b = g.acts[args[0]], g.acts[args[1]]
    if a.per != b.per or a.const.shape != b.const.shape:
        raise unsupported(model, f"node {node.name!r} adds tensors of different layouts")
    ra, rb = g.find(a.space), g.find(b.space)
    g.parent[rb] = ra
    return Activation(ra, a.per, a.const & b.const, value)
