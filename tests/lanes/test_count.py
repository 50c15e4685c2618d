"""How many lanes pay (the auto rule) and what one lane needs in memory."""
import pytest

from lottery import LotteryError
from lottery.core.macs import step_macs
from lottery.lanes.count import choose_lanes
from lottery.models import create_model


def test_choose_lanes_picks_lanes_only_where_they_pay():
    lenet = step_macs(create_model("lenet_300_100", 10, (1, 28, 28)), (1, 28, 28), 60)
    assert lenet == 60 * (784 * 300 + 300 * 100 + 100 * 10)
    assert choose_lanes(15, "cpu", lenet)[0] == 15
    assert choose_lanes(15, "cpu", lenet, cap=4)[0] == 4
    conv2 = step_macs(create_model("conv2", 10, (3, 32, 32)), (3, 32, 32), 60)
    lanes, reason = choose_lanes(15, "cpu", conv2)
    assert lanes == 1 and "compute-bound" in reason
    assert choose_lanes(15, "cuda", conv2, lane_bytes=2**30, free_bytes=6 * 2**30) == (6, "6 lanes: the most that fit in 6.0 GiB (1.00 GiB each)")
    with pytest.raises(LotteryError, match="GiB are free"):
        choose_lanes(15, "cuda", conv2, lane_bytes=2**31, free_bytes=2**30)


def test_lane_memory_estimate_and_a_count_that_does_not_fit():
    from lottery.lanes.count import lane_bytes, lanes_that_fit

    model = create_model("lenet_300_100", 10, (1, 28, 28))
    params = sum(p.numel() for p in model.parameters())
    one = lane_bytes(model, (1, 28, 28), 60)
    assert 21 * params < one < 21 * params + 2 * 4 * 60 * 10_000  # weights/grads/moments/masks + kept activations
    assert lane_bytes(model, (1, 28, 28), 120) > one  # activations grow with the batch
    assert lanes_that_fit(8, one, 8 * one) == 8 and lanes_that_fit(8, None, None) == 8
    with pytest.raises(LotteryError, match=r"trainer.lanes=8: 8 lanes of .* do not fit .*; 3 fit: set trainer.lanes=3"):
        lanes_that_fit(8, one, 3 * one + 1)
