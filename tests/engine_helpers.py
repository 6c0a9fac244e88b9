"""Shared helpers for the engine tests: a tiny digits tree, a tiny model config, subprocess runs."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable

# a structurally complete but tiny VAN: 2 one-block stages, 16x16 input
TINY = {
    "dataset": "digits", "num_classes": 10, "image_size": 16, "crop_pct": 1.0, "interpolation": "bilinear",
    "model": "van_b0", "model_kwargs": "{embed_dims: [8, 16], depths: [1, 1], mlp_ratios: [2, 2]}",
    "drop_path_rate": 0.0, "batch_size": 16, "lr": 0.005, "min_lr": 0.0001, "warmup_epochs": 0,
    "hflip": 0.0, "scale": "[0.6, 1.0]", "log_interval": 1, "num_parallel_workers": 1,
}


def cli_args(**overrides):
    cfg = dict(TINY)
    cfg.update(overrides)
    args = []
    for k, v in cfg.items():
        args += [f"--{k}", str(v)]
    return args


def src_env(env=None):
    """The environment for a subprocess that runs this checkout's package (scripts/*.py import it; whichever
    checkout is installed editable, or none, does not matter)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src")] + [p for p in [full_env.get("PYTHONPATH")] if p])
    return full_env


def run_script(script, args, env=None, timeout=300):
    full_env = src_env(env)
    return subprocess.run([PY, str(REPO / "scripts" / script)] + list(args), cwd=str(REPO), env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def run_train_with_faults(args, kill_at_step=None, nan_at_step=None, timeout=300):
    """scripts/train.py's command line with test-only fault callbacks (tests/fault_injection.py) installed."""
    faults = []
    if kill_at_step is not None:
        faults += ["--kill_at_step", str(kill_at_step)]
    if nan_at_step is not None:
        faults += ["--nan_at_step", str(nan_at_step)]
    return subprocess.run([PY, str(REPO / "tests" / "fault_injection.py")] + faults + ["--"] + list(args),
                          cwd=str(REPO), env=dict(os.environ), capture_output=True, text=True, timeout=timeout)


def ckpt_arrays(path):
    import mindspore as ms
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items()}
