"""Deployment: deploy-time transforms, export-safe operators, MINDIR/ONNX export with built-in verification."""
from .export import (FORMATS, TOLERANCES, ExportError, ExportResult, ExportVerificationError, export_model,
                     parse_formats, weights_sha256)
from .gelu import ExportSafeGELU
from .pool import ExportSafeMaxPool2d
from .transforms import (ascend_grouped_conv_report, fold_bn_into_conv, fuse_conv_bn, prepare_for_export,
                         replace_cells, switch_to_deploy, to_ascend_legal)

__all__ = ["FORMATS", "TOLERANCES", "ExportError", "ExportResult", "ExportVerificationError", "export_model",
           "parse_formats", "weights_sha256", "ExportSafeGELU", "ExportSafeMaxPool2d", "ascend_grouped_conv_report",
           "fold_bn_into_conv", "fuse_conv_bn", "prepare_for_export", "replace_cells", "switch_to_deploy",
           "to_ascend_legal"]
