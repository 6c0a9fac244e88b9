"""Writing a folder all at once: a reader sees the old folder or the complete new one, never a half-written tree."""
import contextlib
import os
import shutil
import tempfile

__all__ = ["atomic_directory"]


@contextlib.contextmanager
def atomic_directory(root):
    """Yield a temporary sibling folder of ``root`` (a ``str`` path) to fill; on leaving the block without an error
    it replaces ``root`` (an existing one is removed first), on an error it is removed and ``root`` is untouched."""
    root = os.path.abspath(os.fspath(root))
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(root) + ".tmp-", dir=parent)
    try:
        yield tmp
        if os.path.exists(root):
            shutil.rmtree(root)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
