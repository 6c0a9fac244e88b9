"""The package's imports point one way: layers <- models <- engine / deploy / bench / convert (data beside models).

Walks every module's import statements (top level and inside functions) without importing anything, so a new
upward or sideways import fails here with the file and line.
"""
import ast

from conftest import REPO

PACKAGE = REPO / "src" / "convattn"

# sub-package -> the other sub-packages it may import ('_env' and the package root's __version__ are always allowed)
ALLOWED = {
    "utils": set(),
    "layers": {"utils"},
    "models": {"layers", "utils"},
    "data": {"utils"},
    "engine": {"models", "layers", "data", "utils"},
    "deploy": {"models", "layers", "data", "utils"},
    "bench": {"models", "layers", "data", "utils", "deploy"},  # the harness times deploy forms (name@deploy)
    "convert": {"models", "layers", "utils"},
}
ALWAYS = {"_env", "__version__"}


def _imports(source: str, module: str):
    """(line, first component under convattn) of every convattn import in ``source``, the text of ``module``
    (its path under convattn with dots, e.g. 'models.van')."""
    package = module.split(".")[:-1]  # the module's package, as a list of components under convattn
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                full = base + (node.module.split(".") if node.module else [])
                if not full:  # "from .. import name" at the package root
                    full = [alias.name for alias in node.names]
                yield node.lineno, full[0]
            elif node.module and node.module.split(".")[0] == "convattn":
                rest = node.module.split(".")[1:] or [alias.name for alias in node.names]
                yield node.lineno, rest[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("convattn."):
                    yield node.lineno, alias.name.split(".")[1]


def test_imports_point_one_way():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:
            continue  # the package root (__init__, _env) wires the public API together
        me = rel.parts[0]
        assert me in ALLOWED, f"new sub-package {me}: add it to ALLOWED with the layers it may import"
        for line, dep in _imports(path.read_text(encoding="utf-8"), ".".join(rel.with_suffix("").parts)):
            if dep != me and dep not in ALWAYS and dep not in ALLOWED[me]:
                bad.append(f"src/convattn/{rel}:{line} imports convattn.{dep} ({me} may import {sorted(ALLOWED[me])})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_check_resolves_relative_imports():
    """An upward import is seen whether written relative or absolute; a sibling module is the same package."""
    assert [d for _, d in _imports("from ..engine.config import validate\n", "models.van")] == ["engine"]
    assert [d for _, d in _imports("from ...engine import x\n", "models.sub.mod")] == ["engine"]
    assert [d for _, d in _imports("import convattn.deploy.export\n", "layers.acmix")] == ["deploy"]
    assert [d for _, d in _imports("from .base import StagedClassifier\n", "models.van")] == ["models"]
    assert [d for _, d in _imports("from .. import __version__\n", "deploy.export")] == ["__version__"]
