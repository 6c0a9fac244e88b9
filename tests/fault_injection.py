"""Fault injection for the end-to-end training tests: callbacks the tests install, and a runner.

``python tests/fault_injection.py [--kill_at_step N] [--nan_at_step N] -- <train.py arguments>`` runs the training
command line (``convattn.engine.cli.train_main``, so the exit codes are the CLI's) with these callbacks passed to
``convattn.engine.trainer.train(cfg, callbacks=...)``. Product code has no test hooks; the faults live here.
"""
import os
import signal
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # the working tree, as conftest.py does

import convattn  # noqa: E402

convattn.apply_cpu_defaults()  # ONEDNN_MAX_CPU_ISA=AVX2 where it helps, before MindSpore runs a kernel
from convattn.engine.callbacks import Callback  # noqa: E402


class KillAtStep(Callback):
    """SIGKILL this process right after global micro-batch ``step`` (after any checkpoint due at that step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state):
        if state.global_step == self.step:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


class NaNAtStep(Callback):
    """Feed an all-NaN batch at global micro-batch ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, state):
        if state.global_step == self.step:
            state.images = np.full_like(state.images, np.nan)


FAULTS = {"--kill_at_step": KillAtStep, "--nan_at_step": NaNAtStep}


def main(argv) -> int:
    if "--" not in argv:
        raise SystemExit("usage: fault_injection.py [--kill_at_step N] [--nan_at_step N] -- <train.py arguments>")
    split = argv.index("--")
    ours, train_args = argv[:split], argv[split + 1:]
    faults = []
    for flag, value in zip(ours[::2], ours[1::2]):
        if flag not in FAULTS:
            raise SystemExit(f"unknown fault {flag}; choose from {', '.join(FAULTS)}")
        faults.append(FAULTS[flag](int(value)))
    from convattn.engine import cli, trainer
    product_train, installed = trainer.train, []

    def train_with_faults(cfg, callbacks=()):
        installed.append(True)
        return product_train(cfg, callbacks=list(callbacks) + faults)

    trainer.train = train_with_faults  # train_main looks train up in the trainer module when it runs
    code = cli.train_main(train_args)
    if not installed:
        print("fault_injection: train_main did not call convattn.engine.trainer.train; no fault was installed",
              file=sys.stderr)
        return 99
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
