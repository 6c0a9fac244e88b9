"""Process-level defaults that must be in place before MindSpore runs its first kernel.

MindSpore 2.10 bundles oneDNN v3.10, which on AVX-512 machines without AMX dispatches every
convolution larger than 1x1 to its reference kernel (``jit_uni_ncsp:conv+ref:any``): a ResNet-50
forward at batch 8 takes 31 s instead of 0.56 s. Capping the ISA at AVX2 makes oneDNN use its
``gemm:jit`` convolutions, with identical numerics. oneDNN reads the variable when it creates its
first primitive, so setting it here (at ``import convattn``) is early enough as long as no
convolution has run yet. A value the user has set always wins.
"""
import os

ONEDNN_ISA_VAR = "ONEDNN_MAX_CPU_ISA"
ONEDNN_ISA_DEFAULT = "AVX2"


def apply_cpu_defaults() -> None:
    """Set ``ONEDNN_MAX_CPU_ISA=AVX2`` unless the user chose a value (``ONEDNN_MAX_CPU_ISA=ALL`` restores oneDNN's own choice)."""
    os.environ.setdefault(ONEDNN_ISA_VAR, ONEDNN_ISA_DEFAULT)
