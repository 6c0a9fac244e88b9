"""Deployment: MINDIR/ONNX export of networks built in their export form, with built-in verification."""
from ..layers.export_gelu import ExportSafeGELU
from ..layers.export_pool import ExportSafeMaxPool2d
from .export import (FORMATS, TOLERANCES, ExportError, ExportResult, ExportVerificationError, export_model,
                     parse_formats, weights_sha256)
from .transforms import ascend_grouped_conv_report, fold_bn_into_conv, fuse_conv_bn, switch_to_deploy

__all__ = ["FORMATS", "TOLERANCES", "ExportError", "ExportResult", "ExportVerificationError", "export_model",
           "parse_formats", "weights_sha256", "ExportSafeGELU", "ExportSafeMaxPool2d", "ascend_grouped_conv_report",
           "fold_bn_into_conv", "fuse_conv_bn", "switch_to_deploy"]
