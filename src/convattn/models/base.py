"""What every staged classifier in the zoo shares (mindcv's ``forward_features`` / ``forward_head`` / ``construct``)."""

__all__ = ["StagedClassifier"]


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
