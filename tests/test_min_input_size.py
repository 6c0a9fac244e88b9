"""Inputs too small for the reflection-padded attention of ACmix-ResNet and SAN fail at the model level, naming the
input size and the smallest size the network accepts (which is exact: that size runs, one pixel less does not)."""
import numpy as np
import pytest
import mindspore as ms

import convattn

CASES = [
    # (model, kwargs, smallest accepted side): ACmix k_att=7 pads by 3, so the map entering the last ACmix layer
    # (stride 16; stride 32 once stage 4 has a second block) must be at least 4 pixels wide
    ("acmix_resnet26", {"layers": [1, 1, 1, 1]}, 49),
    ("acmix_resnet26", {"layers": [1, 1, 1, 2]}, 97),
    # SAN: stage i runs at 1/2^(i+1); a 7x7 footprint at stage 3 (stride 16) pads by 3
    ("san10_pairwise", {"layers": [1, 1, 1, 1, 1], "kernels": [3, 7, 7, 7, 3], "base_width": 32}, 64),
    ("san10_patchwise", {"layers": [1, 1, 1, 1, 1], "base_width": 32}, 128),
]


@pytest.fixture(autouse=True)
def _keep_mode():
    previous = ms.get_context("mode")
    yield
    ms.set_context(mode=previous)


def _x(side):
    return ms.Tensor(np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32))


@pytest.mark.parametrize("name, kwargs, side", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_too_small_input_names_size_and_minimum(name, kwargs, side):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = convattn.create_model(name, num_classes=10, **kwargs)
    net.set_train(False)
    assert net.min_input_size == side
    for bad in (8, side - 1):
        with pytest.raises(ValueError, match=f"at least {side}x{side}.*got {bad}x{bad}"):
            net(_x(bad))
    with pytest.raises(ValueError, match=f"at least {side}x{side}.*got {side}x{side - 1}"):
        net(ms.Tensor(np.zeros((1, 3, side, side - 1), np.float32)))
    if side <= 64:  # the smallest accepted size runs (the 97/128 cases follow the same arithmetic)
        assert net(_x(side)).shape == (1, 10)


def test_graph_mode_reports_the_same_error():
    ms.set_context(mode=ms.GRAPH_MODE)
    net = convattn.create_model("acmix_resnet26", num_classes=10, layers=[1, 1, 1, 1])
    net.set_train(False)
    with pytest.raises(ValueError, match="ResNet needs inputs of at least 49x49.*got 8x8"):
        net(_x(8))


def test_plain_resnet_has_no_minimum():
    assert convattn.create_model("resnet26", num_classes=10, layers=[1, 1, 1, 1]).min_input_size == 1
