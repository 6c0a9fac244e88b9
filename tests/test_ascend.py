"""AMP O2 of the CPU forms (the Ascend forms follow)."""
import numpy as np
import mindspore as ms
from mindspore import nn

from convattn.layers.san_attention import SAM


def _copy_weights(src: nn.Cell, dst: nn.Cell) -> None:
    """Copy every parameter of ``src`` into the same-named one of ``dst`` (the depth-wise ACmix weight is the
    grouped one reshaped: same name, same element order)."""
    have = dict(src.parameters_and_names())
    for name, p in dst.parameters_and_names():
        assert name in have, f"{name} of the Ascend form has no counterpart in the CPU form"
        p.set_data(ms.Tensor(have[name].asnumpy().reshape(p.shape), p.dtype))


# ----------------------------------------------------------------------------------- AMP O2 of the CPU forms
def _o2_twin(build):
    """(float32 cell, its O2 twin with the same weights)."""
    ms.set_seed(0)
    ref, twin = build(), build()
    _copy_weights(ref, twin)
    return ref, ms.amp.auto_mixed_precision(twin, "O2", ms.float16)


def test_san_pairwise_runs_under_o2(ms_mode):
    """SAM pairwise under AMP O2 (BatchNorms wrapped in float32 cast cells, every other cell float16): eval mode
    (the fused path folds its BatchNorms from inside construct) and a training step, finite and close to float32.
    PYNATIVE also casts the inputs of every primitive of a float16 cell (LinSpace, the float32 fused kernels)."""
    ref, o2 = _o2_twin(lambda: SAM("pairwise", 16, 4, 16, 4, 3))
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 16, 6, 6)).astype(np.float32))
    ref.set_train(False)
    o2.set_train(False)
    want, got = ref(x).asnumpy(), o2(x).asnumpy()
    assert got.dtype == np.float32 and np.isfinite(got).all()
    err = float(np.abs(got - want).max())
    assert err <= 2e-2 * float(np.abs(want).max()), f"O2 SAM [{ms_mode}]: max|O2 - fp32| = {err:.3g}"
    o2.set_train(True)

    def objective(v):
        return (o2(v) ** 2).mean()

    loss, grads = ms.value_and_grad(objective, None, o2.trainable_params())(x)
    assert np.isfinite(loss.asnumpy()) and all(np.isfinite(g.asnumpy()).all() for g in grads)


def test_window_attention_masks_are_finite_in_float16():
    """The masks an O2 (float16) graph adds to attention logits stay finite (an -inf constant trips Ascend's
    overflow check, so the loss scaler would skip every step) and still zero the masked taps exactly."""
    from convattn.layers.local_attention import _mask_tensor, window_mask
    from convattn.layers.window_attention import shifted_window_mask
    for mask in (_mask_tensor(2, 3, 3, 2, ms.float16).asnumpy(), window_mask(2, 3, 3, 2).astype(np.float16),
                 shifted_window_mask(8, 8, 4, 2).astype(np.float16)):
        assert np.isfinite(mask).all()
    neg = window_mask(2, 3, 3, 2).min()
    assert np.exp(np.float16(neg) - np.float16(100)) == 0 and np.exp(np.float32(neg) + np.float32(1e3)) == 0
