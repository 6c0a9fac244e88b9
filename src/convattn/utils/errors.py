"""The one error path of the command-line tools.

Every tool's ``main`` is wrapped by :func:`command`: a failure ends as one ``error:`` line (plus at most one
``hint:`` line) on stderr and exit code 2 (a bad command line or config) or 1 (anything else), never a traceback;
``--debug`` (any tool) or ``CONVATTN_DEBUG=1`` prints the traceback first. Ctrl-C is exit 130 with one line.
MindSpore's graph dumps (``rank_0/om/analyze_fail.ir``) go to a temporary folder, not the working directory.

* :class:`UserError` is a mistake the user can fix; the project's own error classes derive from it, so the
  message they carry is printed as it is.
* :func:`describe` turns any exception into (message, hint, exit code). Errors raised by the framework whose
  cause is known are translated: an undecodable image met by a dataset worker, a graph compile that failed on an
  input-size check or out of memory, a file MindSpore or protobuf cannot parse, YAML syntax. Errors raised by
  the project's own code (a ``ValueError`` with a message written for users) keep their message; anything else is
  named as an unexpected error with the hint to rerun with ``--debug``.
"""
import functools
import os
import re
import sys
import tempfile
import traceback
from typing import Callable, Optional, Sequence, Tuple

__all__ = ["UserError", "UsageError", "describe", "command", "debug_requested", "check_writable_dir", "check_writable_file"]

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class UserError(Exception):
    """A failure the user can fix: printed as ``error: <message>`` (+ ``hint: <hint>``), exit ``exit_code``."""

    exit_code = 1
    hint: Optional[str] = None

    def __init__(self, *args, hint: Optional[str] = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint


class UsageError(UserError, ValueError):
    """A bad command-line value (exit code 2, as argparse's own errors)."""

    exit_code = 2


def debug_requested(argv: Optional[Sequence[str]] = None) -> bool:
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("CONVATTN_DEBUG", "") not in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _split(text: str) -> Tuple[str, Optional[str]]:
    """A message's first paragraph line as the error, the remaining lines (if any) as the hint."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    if not lines:
        return "", None
    return lines[0], (" ".join(lines[1:]) or None)


def _raised_by_project(exc: BaseException) -> bool:
    """The innermost frame of ``exc``'s traceback is convattn's code (a message written for users)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(_PACKAGE_DIR)


_DECODE = re.compile(r"cannot (?:decode|read) image file (.+?)(?:: |\. |$)", re.M)
_FRAMEWORK_NOISE = re.compile(r"\n-+\n- (?:C\+\+ Call Stack|The Traceback of Net Construct Code|Framework Unexpected)"
                              r".*", re.S)


def _framework_message(text: str) -> str:
    """A MindSpore error's own words, without the C++ call stack and construct traceback it appends."""
    text = _FRAMEWORK_NOISE.sub("", str(text))
    text = re.sub(r"\(See file '[^']*analyze_fail\.ir'.*", "", text, flags=re.S)
    return text.strip()


def _translate(exc: BaseException) -> Optional[Tuple[str, Optional[str], int]]:
    """Known framework failures -> (message, hint, code); None when the cause is not known."""
    text = str(exc)
    name = type(exc).__name__
    m = _DECODE.search(text)
    if m:  # an undecodable image raised inside a dataset worker, wrapped by MindSpore's pipeline
        return (f"cannot decode image file {m.group(1).strip()}",
                "delete or replace the file, or set bad_images: skip to skip and count undecodable images", 1)
    inner = re.search(r"ValueError: '?(.+? needs inputs of at least \d+x\d+.+?)'?\s*$", _framework_message(text), re.M)
    if inner:  # a model's input-size check raised while MindSpore compiled the graph
        return _split(inner.group(1)) + (2,)
    if isinstance(exc, MemoryError) or re.search(r"out of memory|Memory not enough|cannot allocate memory",
                                                 text, re.I):
        return ("out of memory", "lower batch_size (accumulation_steps keeps the global batch), or image_size", 1)
    if name == "DecodeError" and type(exc).__module__.startswith("google.protobuf"):
        return (f"a file could not be parsed as the expected protobuf format: {_one_line(text)}",
                "check that the file is a complete MINDIR/ONNX/checkpoint written by this tool (not truncated)", 1)
    if type(exc).__module__.startswith("yaml"):
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        src = f" in {mark.name}" if mark is not None and mark.name and not mark.name.startswith("<") else ""
        return (f"YAML syntax error{src}{where}: {getattr(exc, 'problem', None) or _one_line(text)}",
                "fix the file (flat 'key: value' lines; lists as [a, b])", 2)
    if isinstance(exc, PermissionError):
        return (f"permission denied: {exc.filename or _one_line(text)}",
                "choose a folder you can write to (or fix its permissions)", 1)
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        return (f"no space left on the device writing {exc.filename or ''}".rstrip(),
                "free space or write elsewhere", 1)
    return None


def describe(exc: BaseException) -> Tuple[str, Optional[str], int]:
    """(message, hint, exit code) for any exception, as the command-line tools print it."""
    if isinstance(exc, UserError):
        message, rest = _split(exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc))
        return message, exc.hint or rest, exc.exit_code
    known = _translate(exc)
    if known is not None:
        return known
    if isinstance(exc, (ValueError, TypeError, FileNotFoundError, FileExistsError, IsADirectoryError,
                        NotADirectoryError, KeyError)) and _raised_by_project(exc):
        message, rest = _split(str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc))
        return message, rest, 1
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
        return f"{exc.strerror or 'cannot open'}: {exc.filename}", None, 1
    first, _ = _split(_framework_message(str(exc)))
    return (f"unexpected {type(exc).__name__}: {first[:400]}",
            "rerun with --debug for the traceback; if the input looks right, please report it", 1)


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a tool's ``main(argv=None) -> int`` in the one error path (see the module doc)."""

    @functools.wraps(main)
    def run(argv: Optional[Sequence[str]] = None) -> int:
        debug = debug_requested(argv)
        # MindSpore writes a failed graph compile's analyze_fail.ir under $MS_OM_PATH (default: the working
        # directory, as ./rank_0/om/); a tool keeps it out of the user's folder, for the length of the call only
        # (a notebook or test that calls main() keeps its environment)
        own_dump_dir = "MS_OM_PATH" not in os.environ
        if own_dump_dir:
            os.environ["MS_OM_PATH"] = os.path.join(tempfile.gettempdir(), "convattn-graph-dumps")
        try:
            return main(argv)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            print("\ninterrupted (Ctrl-C)", file=sys.stderr, flush=True)
            return 130
        except Exception as exc:  # noqa: BLE001 (the point of this function)
            if debug:
                traceback.print_exc()
            message, hint, code = describe(exc)
            print(f"error: {message}", file=sys.stderr, flush=True)
            if hint:
                print(f"hint: {hint}", file=sys.stderr, flush=True)
            return code
        finally:
            if own_dump_dir:
                os.environ.pop("MS_OM_PATH", None)

    return run


def check_writable_dir(path: str, what: str = "output folder") -> str:
    """Prove, before any work, that files can be written into ``path`` (a probe file in it, or write permission on
    its nearest existing parent, which is left as it was: nothing is created); a :class:`UserError` otherwise."""
    path = os.path.abspath(path)
    probe_dir = path
    while not os.path.exists(probe_dir):
        probe_dir = os.path.dirname(probe_dir)
    if not os.path.isdir(probe_dir):
        raise UserError(f"{what} {path} cannot be created: {probe_dir} is a file", "choose another folder")
    if probe_dir != path:
        if not os.access(probe_dir, os.W_OK | os.X_OK):
            raise UserError(f"{what} {path} cannot be created: {probe_dir} is not writable",
                            "choose another folder, or fix its permissions")
        return path
    try:
        probe = os.path.join(path, f".convattn-write-test-{os.getpid()}")
        with open(probe, "w", encoding="utf-8"):
            pass
        os.remove(probe)
    except OSError as exc:
        raise UserError(f"{what} {path} is not writable ({exc.strerror or exc})",
                        "choose another folder, or fix its permissions") from None
    return path


def check_writable_file(path: str, what: str = "output file") -> str:
    """The folder of ``path`` exists (or can be made) and is writable, checked before any work."""
    folder = os.path.dirname(os.path.abspath(path))
    check_writable_dir(folder, f"the folder of the {what}")
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a folder", "give a file name")
    return path
