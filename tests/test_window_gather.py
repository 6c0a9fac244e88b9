"""The shared local-window gather: fast (unfold) and export-safe (slices) paths equal a direct numpy reading."""
import numpy as np
import pytest
import mindspore as ms

from convattn.layers.window_gather import LocalWindowGather


def numpy_gather(x, k, s, d, p, mode):
    """Loop transliteration of the official kernels' index arithmetic (fixture README, SAN semantics)."""
    n, c, h, w = x.shape
    ho = (h + 2 * p - (d * (k - 1) + 1)) // s + 1
    wo = (w + 2 * p - (d * (k - 1) + 1)) // s + 1
    out = np.zeros((n, c, k * k, ho, wo), x.dtype)

    def fix(i, size):
        if 0 <= i < size:
            return i
        if mode == "zeros":
            return None
        return -i if i < 0 else 2 * (size - 1) - i

    for kh in range(k):
        for kw in range(k):
            for oh in range(ho):
                for ow in range(wo):
                    ih, iw = fix(-p + oh * s + kh * d, h), fix(-p + ow * s + kw * d, w)
                    if ih is not None and iw is not None:
                        out[:, :, kh * k + kw, oh, ow] = x[:, :, ih, iw]
    return out


CASES = [(3, 1, 1, None, "reflect"), (7, 1, 1, None, "reflect"), (7, 2, 1, 3, "reflect"), (5, 1, 1, None, "zeros"),
         (3, 2, 2, 2, "reflect"), (5, 1, 1, 2, "reflect")]


@pytest.mark.parametrize("k,s,d,p,mode", CASES)
def test_gather_paths_agree_with_reference(ms_mode, k, s, d, p, mode):
    x = np.random.RandomState(0).randn(2, 3, 9, 8).astype(np.float32)
    fast = LocalWindowGather(k, s, d, p, mode, export_safe=False)
    safe = LocalWindowGather(k, s, d, p, mode, export_safe=True)
    ref = numpy_gather(x, k, s, d, fast.padding, mode)
    got_fast = fast(ms.Tensor(x)).asnumpy()
    got_safe = safe(ms.Tensor(x)).asnumpy()
    assert got_fast.shape == ref.shape
    np.testing.assert_array_equal(got_fast, ref)
    np.testing.assert_array_equal(got_safe, ref)


def test_gather_rejects_bad_arguments():
    with pytest.raises(ValueError, match="pad_mode"):
        LocalWindowGather(3, pad_mode="circular")
    with pytest.raises(ValueError, match=">= 1"):
        LocalWindowGather(0)
