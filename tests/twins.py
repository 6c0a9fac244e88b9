"""Registered models whose small test instance is the same network as another model's.

The depth/width variants of a family differ in ``layers`` / ``depths`` / widths, which their small instance
(``convattn.models.small_instance_kwargs``: the ``default_cfg`` ``small_kwargs`` at ``small_input_size``) sets to the
same small values; for the models below the test instance is then the identical network
(the same cells under the same names, the same parameter names and shapes, the same input size) as its twin's.
Running a per-model check on both runs the same graph twice, so the every-model loops run the twin only and mark
these ``slow``; ``test_export.py::test_export_plan_lists_registered_models_once`` checks that each pair really is
identical (a variant whose small_kwargs change stops being a twin there, and has to be run by default again).
"""
import pytest

from convattn.bench.ascend_audit import network_signature  # noqa: F401  (cells and parameter shapes of a network)

TWINS = {
    "acmix_pvt_small": "acmix_pvt_tiny",
    "acmix_resnet38": "acmix_resnet26", "acmix_resnet50": "acmix_resnet26",
    "acmix_san15": "acmix_san10", "acmix_san19": "acmix_san10",
    "pvt_small": "pvt_tiny",
    "resnet38": "resnet26", "resnet50": "resnet26",
    "san15_pairwise": "san10_pairwise", "san19_pairwise": "san10_pairwise",
    "san15_patchwise": "san10_patchwise", "san19_patchwise": "san10_patchwise",
    "van_b2": "van_b1", "van_b4": "van_b3",
}


def every_model(names):
    """``names`` as pytest params, the twins marked ``slow`` (their twin runs the same network by default)."""
    return [pytest.param(n, marks=pytest.mark.slow) if n in TWINS else n for n in names]
