"""Helpers for parity tests against the official-code fixtures (``../shared/reference/*.npz``)."""
import numpy as np
import mindspore as ms

from conftest import require_reference
from convattn.convert import load_official_state, read_official_state


def load_fixture(name: str):
    """(input, output, state) of a fixture; state keys are the official state_dict keys."""
    path = require_reference(name)
    with np.load(path) as f:
        inp, out = f["input"], f["output"]
    return inp, out, read_official_state(str(path))


def tolerance(out: np.ndarray) -> float:
    """The fixture README's rule: max|port - ref| <= 1e-5 * max|ref| (>= 16x the measured float32 error)."""
    return 1e-5 * max(1.0, float(np.abs(out).max()))


def run_parity(net, name: str, rules: str, classifier=None):
    """Load fixture ``name`` into ``net`` through the converter mapping, run eval forward, return (got, ref, tol)."""
    inp, ref, state = load_fixture(name)
    load_official_state(net, state, rules=rules, classifier=classifier)
    net.set_train(False)
    got = net(ms.Tensor(inp)).asnumpy()
    assert got.shape == ref.shape, f"{name}: output shape {got.shape} != official {ref.shape}"
    return got, ref, tolerance(ref)
