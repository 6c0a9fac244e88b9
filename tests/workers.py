"""Independent, compile-heavy pieces of a test file run in two spawned worker processes.

MindSpore compiles a graph on one thread, so on the 2 CI cores two fresh interpreters running different models
(the Ascend representatives' audits, the per-model exports) take about half the wall time of one process running
them in turn. Each worker imports the package from disk, as a separate test process would.
"""
import concurrent.futures
import multiprocessing
import os

__all__ = ["quiet", "run_in_workers", "unwrap"]


def quiet(*_args, **_kwargs) -> None:
    """A log function that prints nothing (picklable, unlike a lambda)."""


def run_in_workers(fn, calls: dict) -> dict:
    """``{key: fn(*args, **kwargs)}`` for ``calls = {key: (args, kwargs)}``, in up to two spawned processes;
    the value of a call that raised is its exception (for the test of that key to raise)."""
    workers = max(1, min(2, os.cpu_count() or 1))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {key: pool.submit(fn, *args, **kwargs) for key, (args, kwargs) in calls.items()}
        return {key: future.exception() or future.result() for key, future in futures.items()}


def unwrap(value):
    """A value of :func:`run_in_workers`'s result: raised where its call raised (in the test of that key),
    returned otherwise."""
    if isinstance(value, BaseException):
        raise value
    return value
