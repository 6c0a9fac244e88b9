"""Registry, default configs, checkpoint loading (incl. a new class count) and the MAC counter."""
import os
import stat

import numpy as np
import pytest
import mindspore as ms

import convattn
from convattn.bench.macs import count_macs, count_params
from convattn.models.helpers import CheckpointMismatchError, load_checkpoint
from convattn.models.registry import small_instance_kwargs

SMALL = small_instance_kwargs("van_b0")[0]  # every VAN's small instance: one block per stage


def test_list_models_and_patterns():
    names = convattn.list_models()
    assert names == sorted(names)
    assert convattn.list_models("van_b[0-3]") == ["van_b0", "van_b1", "van_b2", "van_b3"]
    assert "van_b6" in names and convattn.is_model("van_b6") and not convattn.is_model("van_b9")


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match=r"Unknown model 'van_bO'.*van_b0"):
        convattn.create_model("van_bO")


def test_unknown_architecture_argument_lists_accepted():
    with pytest.raises(TypeError, match=r"does not accept \['depth'\].*depths"):
        convattn.create_model("van_b0", depth=(1, 1, 1, 1))


def test_default_cfg_attached_and_complete():
    net = convattn.create_model("van_b1", num_classes=10, **SMALL)
    cfg = net.default_cfg
    assert cfg["architecture"] == "van_b1" and cfg["num_classes"] == 10
    for key in ("input_size", "crop_pct", "interpolation", "mean", "std", "classifier", "paper", "upstream"):
        assert cfg[key] is not None, key
    assert convattn.get_model_cfg("van_b1")["num_classes"] == 1000  # a copy, not the registry's own


def _save(net, path):
    ms.save_checkpoint(net, str(path))
    return str(path)


def test_pretrained_roundtrip(tmp_path):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    src = convattn.create_model("van_b0", num_classes=10, **SMALL)
    ckpt = _save(src, tmp_path / "a.ckpt")
    dst = convattn.create_model("van_b0", num_classes=10, pretrained=ckpt, **SMALL)
    for p, q in zip(src.get_parameters(), dst.get_parameters()):
        assert p.name == q.name
        np.testing.assert_array_equal(p.asnumpy(), q.asnumpy())


def test_pretrained_with_other_class_count_loads_all_but_head(tmp_path, caplog):
    src = convattn.create_model("van_b0", num_classes=1000, **SMALL)
    ckpt = _save(src, tmp_path / "in1k.ckpt")
    with caplog.at_level("WARNING"):
        dst = convattn.create_model("van_b0", num_classes=7, pretrained=ckpt, **SMALL)
    assert "except the classifier" in caplog.text and "head.weight" in caplog.text
    assert tuple(dst.head.weight.shape) == (7, 256)
    np.testing.assert_array_equal(dst.patch_embed1.proj.weight.asnumpy(), src.patch_embed1.proj.weight.asnumpy())
    feats = convattn.create_model("van_b0", features_only=True, pretrained=ckpt, **SMALL)
    np.testing.assert_array_equal(feats.norm4.gamma.asnumpy(), src.norm4.gamma.asnumpy())


def test_checkpoint_of_another_variant_is_refused(tmp_path):
    ckpt = _save(convattn.create_model("van_b1", **SMALL), tmp_path / "b1.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"(?s)does not match van_b0.*shape mismatch.*another variant"):
        convattn.create_model("van_b0", pretrained=ckpt, **SMALL)


def test_bad_checkpoint_files(tmp_path):
    net = convattn.create_model("van_b0", **SMALL)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(net, str(tmp_path / "missing.ckpt"))
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointMismatchError, match="not a readable MindSpore checkpoint.*convattn.convert"):
        load_checkpoint(net, str(junk))


def test_mac_counter_counts_conv_dense_and_declared_matmul():
    from mindspore import nn, ops

    class Toy(nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, pad_mode="pad", padding=1, group=1)
            self.dw = nn.Conv2d(8, 8, 5, pad_mode="pad", padding=2, group=8)
            self.fc = nn.Dense(8, 4)

        def extra_macs(self, inputs, output):
            return 1000  # e.g. an attention matmul

        def construct(self, x):
            x = self.dw(self.conv(x))
            return self.fc(ops.mean(x, axis=(2, 3)))

    got = count_macs(Toy(), (2, 3, 16, 16))
    assert got["conv"] == 16 * 16 * 8 * 3 * 9 + 16 * 16 * 8 * 1 * 25
    assert got["dense"] == 4 * 8
    assert got["extra"] == 500  # per image: 1000 for the batch of 2
    assert got["total"] == got["conv"] + got["dense"] + got["extra"]


def test_van_b0_gmacs_match_official_count():
    net = convattn.create_model("van_b0")
    assert count_params(net) == 4105800  # the fixture's official parameter count
    assert round(count_macs(net, (1, 3, 224, 224))["total"] / 1e9, 2) == 0.86  # model-facts §5.3


@pytest.mark.parametrize("name, stages", [("van_b0", "4 stages"), ("resnet26", "4 stages"), ("san10_pairwise", "5 stages"),
                                          ("swin_tiny", "4 stages"), ("pvt_tiny", "4 stages"), ("deit_tiny", "12 blocks"),
                                          ("xvolution_resnet34", "4 stages")])
def test_out_indices_are_checked_by_the_builder_for_every_family(name, stages):
    """One check (models.builder.check_out_indices) for every network; it raises before any stage is built."""
    with pytest.raises(ValueError, match=rf"out_indices \[99\] out of range for {stages}"):
        convattn.create_model(name, features_only=True, out_indices=(0, 99))


def test_variant_tables_register_factories_with_their_arguments():
    from convattn.models import builder, registry, resnet
    entry = registry.model_entrypoint("acmix_resnet26")
    assert entry is resnet.acmix_resnet26 and entry.variant_args == {"layers": (1, 2, 4, 1)}
    assert {"k_att", "head", "depthwise_conv", "layers", "block"} <= registry.accepted_kwargs(entry)
    assert "head_dim" in registry.accepted_kwargs(registry.model_entrypoint("acmix_san10"))
    with pytest.raises(KeyError, match="without a default_cfgs entry"):
        builder.register_variants(__name__, resnet.ResNet, {"resnet_nocfg": {}}, {})
    assert builder.check_out_indices(None, 3) == (0, 1, 2)
