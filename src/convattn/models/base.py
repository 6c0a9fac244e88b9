"""What every staged classifier in the zoo shares (mindcv's ``forward_features`` / ``forward_head`` / ``construct``)."""

__all__ = ["StagedClassifier", "reflect_padding", "smallest_input_side", "check_min_input_size", "set_recompute"]


class StagedClassifier:
    """Mixin for a network (``nn.Cell``) that defines ``forward_stages(x)`` -> tuple of stage maps and
    ``forward_head(x)``, plus ``features_only`` and ``out_indices``: classification runs the last stage into the head;
    ``features_only=True`` returns the selected stage maps (for detection / segmentation necks).

    Token networks (Swin, PVT) whose ``forward_stages`` also returns the last token sequence override
    ``feature_maps`` (the NCHW stage maps) and ``forward_features`` (the tokens the head reads)."""

    def feature_maps(self, x):
        return self.forward_stages(x)

    def forward_features(self, x):
        return self.forward_stages(x)[-1]

    def construct(self, x):
        if self.features_only:
            feats = self.feature_maps(x)
            return tuple(feats[i] for i in self.out_indices)
        return self.forward_head(self.forward_features(x))


def reflect_padding(cell) -> int:
    """The largest reflection padding of the local-window gathers inside ``cell`` (0 if none). Reflection padding
    by ``p`` needs a feature map larger than ``p`` on each side, so such a layer bounds the input size from below."""
    from ..layers.window_gather import LocalWindowGather
    return max((int(c.padding) for _, c in cell.cells_and_names()
                if isinstance(c, LocalWindowGather) and c.pad_mode == "reflect"), default=0)


def smallest_input_side(fits, limit: int = 8192) -> int:
    """The smallest image side ``s`` with ``fits(s)`` (a monotone predicate that follows the side through the
    network's strides); ``limit`` if none up to it."""
    for side in range(1, limit + 1):
        if fits(side):
            return side
    return limit


def check_min_input_size(model: str, min_side: int, h: int, w: int, why: str) -> None:
    """Raise a ValueError naming the input size and the smallest the network accepts."""
    if h < min_side or w < min_side:
        raise ValueError(f"{model} needs inputs of at least {min_side}x{min_side} ({why}); got {h}x{w}. "
                         f"Resize the images to {min_side} or more (image_size in the config)")


def set_recompute(net) -> int:
    """Mark every residual block of ``net`` for MindSpore's recompute (``Cell.recompute()``): the backward pass
    rebuilds a block's activations from its input instead of keeping them from the forward pass, at the cost of one
    more forward of the block. The block types are the network class's ``recompute_unit`` (its repeated residual
    block, as timm's ``set_grad_checkpointing`` picks its stage blocks). Returns how many cells were marked; a network
    without ``recompute_unit`` is refused with a ValueError.

    What it saves is graph memory (MindSpore's memory pool, what an Ascend/GPU allocator holds): two Swin-T stage-1
    blocks in the Ascend form, batch 4 -> 12 on CPU, 55 -> 32 MB per image (``scripts/README.md``). A CPU process's
    RSS does not fall: the recomputed kernels' private scratch outside the pool grows instead."""
    units = getattr(net, "recompute_unit", None)
    if not units:
        raise ValueError(f"{type(net).__name__} declares no recompute unit (class attribute recompute_unit); "
                         f"recompute is not available for this network")
    marked = 0
    for _, cell in net.cells_and_names():
        if isinstance(cell, units):
            cell.recompute()
            marked += 1
    return marked
