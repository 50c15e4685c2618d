"""Lanes: K runs of one architecture trained as one batched network on one device (torch only).

    layers  the batched Linear, Conv2d and BatchNorm2d of a packed lane network
    trace   a model traced with torch.fx into its packed lane network
    net     LaneNet (packed, or vmap for any model), the masks and the loss of K lanes
    optimizer  LaneOptimizer: each lane its own optimizer (state, steps) over its slice of the stacked parameters
    count   how many lanes pay (`choose_lanes`) and what a lane needs in memory

The Lightning side (a lane group's module, data and training) is lottery.training.
"""
from lottery.lanes.count import choose_lanes
from lottery.lanes.net import LaneNet, lane_loss, stack_masks, unstack_masks

__all__ = ["LaneNet", "lane_loss", "stack_masks", "unstack_masks", "choose_lanes"]
