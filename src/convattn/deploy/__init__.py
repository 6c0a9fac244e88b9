"""Deployment: deploy-time transforms, export-safe operators, MINDIR/ONNX export with built-in verification."""
from .export import (FORMATS, TOLERANCES, ExportError, ExportResult, ExportVerificationError, export_model,
                     parse_formats, weights_sha256)
from .gelu import ExportSafeGELU
from .transforms import (ascend_grouped_conv_report, fold_bn_into_conv, fuse_conv_bn, prepare_for_export,
                         replace_cells, switch_to_deploy)

__all__ = ["FORMATS", "TOLERANCES", "ExportError", "ExportResult", "ExportVerificationError", "export_model",
           "parse_formats", "weights_sha256", "ExportSafeGELU", "ascend_grouped_conv_report", "fold_bn_into_conv",
           "fuse_conv_bn", "prepare_for_export", "replace_cells", "switch_to_deploy"]
