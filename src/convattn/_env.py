"""The CPU speed default for MindSpore's oneDNN, applied only where it helps and never on import.

MindSpore 2.10 bundles oneDNN v3.10, which on AVX-512 machines dispatches every convolution larger than 1x1 to its
reference kernel (``jit_uni_ncsp:conv+ref:any``): a ResNet-50 forward at batch 8 takes 31 s instead of 0.56 s (AMD
EPYC, AVX-512 without AMX). AMX does not save it: on an Intel Xeon with AMX (2026-12-07) one 3x3 convolution
(8x64x56x56, 2 threads) took 4.7 s with oneDNN's own choice and with the cap at AVX512_CORE, AVX512_CORE_BF16 or
AVX512_CORE_AMX, and 49 ms at AVX2. Capping the ISA at AVX2 makes oneDNN use its ``gemm:jit`` convolutions, with identical
numerics. oneDNN reads the variable when it creates its first primitive, so it must be set before the first
convolution runs.

:func:`apply_cpu_defaults` sets ``ONEDNN_MAX_CPU_ISA=AVX2`` on x86-64 CPUs with AVX-512, AMX or not (never on
aarch64 or AVX2-only CPUs, where oneDNN's own choice is already the AVX2 one or the variable means nothing), and
never over a value the user set. The command-line tools call it at start;
library users call ``convattn.apply_cpu_defaults()`` themselves, and :func:`convattn.create_model` calls it when
it builds a network for the CPU target (saying so in one line, once). ``import convattn`` changes nothing.
"""
import os
import platform
import sys
from typing import Optional

__all__ = ["apply_cpu_defaults", "cpu_default_reason", "cpu_flags", "ONEDNN_ISA_VAR", "ONEDNN_ISA_DEFAULT"]

ONEDNN_ISA_VAR = "ONEDNN_MAX_CPU_ISA"
ONEDNN_ISA_DEFAULT = "AVX2"
_SAID = {"done": False}


def cpu_flags() -> set:
    """The CPU feature flags of /proc/cpuinfo (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_default_reason(flags=None, machine: Optional[str] = None) -> Optional[str]:
    """Why the AVX2 cap helps on this CPU (None where it does not: not x86-64, or no AVX-512)."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64"):
        return None
    flags = cpu_flags() if flags is None else set(flags)
    if "avx512f" not in flags:
        return None
    return "AVX-512 CPU: oneDNN 3.10 runs k>1 convolutions on its reference kernel above AVX2"


def apply_cpu_defaults(say: bool = False) -> bool:
    """Set ``ONEDNN_MAX_CPU_ISA=AVX2`` where it helps (:func:`cpu_default_reason`) and the user set no value;
    returns True when it set it. ``say``: print one line to stderr the first time it does."""
    if os.environ.get(ONEDNN_ISA_VAR) is not None:
        return False
    reason = cpu_default_reason()
    if reason is None:
        return False
    os.environ[ONEDNN_ISA_VAR] = ONEDNN_ISA_DEFAULT
    if say and not _SAID["done"]:
        _SAID["done"] = True
        print(f"convattn: set {ONEDNN_ISA_VAR}={ONEDNN_ISA_DEFAULT} for fast CPU convolutions ({reason}); "
              f"set {ONEDNN_ISA_VAR} yourself to choose otherwise", file=sys.stderr)
    return True
