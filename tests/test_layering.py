"""The package's imports point one way: layers <- models <- engine / deploy <- bench, and convert (data beside models).

Walks every module's import statements (top level and inside functions) without importing anything, so a new
upward or sideways import fails here with the file and line. Also: no module imports another module's private
(``_name``) names, and a model family (``models/<family>.py``) imports ``layers`` and the shared model modules
(builder, registry, helpers, base), not another family, except the few listed in ``FAMILY_BASES``.
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
    # the harness times deploy forms (name@deploy); the harness and the Ascend audit run the trainer's training step
    "bench": {"models", "layers", "data", "utils", "deploy", "engine"},
    "convert": {"models", "layers", "utils"},
    # official weights: download, verify, convert (through convert, which builds networks), cache
    "hub": {"models", "layers", "utils", "convert"},
}
ALWAYS = {"_env", "__version__"}

# The one upward import allowed, and only inside a function (never at import time): create_model(pretrained=True
# or an official .pth) calls the hub, which sits above models because it converts through convattn.convert.
LAZY_UPWARD = {("models/builder.py", "hub")}


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


def _function_import_lines(source: str) -> set:
    """Lines of the import statements that run only when a function is called."""
    lines = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines |= {n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def test_imports_point_one_way():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:
            continue  # the package root (__init__, _env) wires the public API together
        me = rel.parts[0]
        assert me in ALLOWED, f"new sub-package {me}: add it to ALLOWED with the layers it may import"
        source = path.read_text(encoding="utf-8")
        lazy = _function_import_lines(source)
        for line, dep in _imports(source, ".".join(rel.with_suffix("").parts)):
            if (rel.as_posix(), dep) in LAZY_UPWARD and line in lazy:
                continue
            if dep != me and dep not in ALWAYS and dep not in ALLOWED[me]:
                bad.append(f"src/convattn/{rel}:{line} imports convattn.{dep} ({me} may import {sorted(ALLOWED[me])})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_lazy_upward_import_is_seen_only_inside_functions():
    source = "from ..hub import a\n\ndef f():\n    from ..hub import b\n"
    assert _function_import_lines(source) == {4}


def test_the_check_resolves_relative_imports():
    """An upward import is seen whether written relative or absolute; a sibling module is the same package."""
    assert [d for _, d in _imports("from ..engine.config import validate\n", "models.van")] == ["engine"]
    assert [d for _, d in _imports("from ...engine import x\n", "models.sub.mod")] == ["engine"]
    assert [d for _, d in _imports("import convattn.deploy.export\n", "layers.acmix")] == ["deploy"]
    assert [d for _, d in _imports("from .base import StagedClassifier\n", "models.van")] == ["models"]
    assert [d for _, d in _imports("from .. import __version__\n", "deploy.export")] == ["__version__"]


# models/ modules every family may import; every other models/*.py is a family
SHARED_MODEL_MODULES = {"__init__", "builder", "registry", "helpers", "base"}

# (family, family it builds on): the only sideways imports between model families, each a documented design
FAMILY_BASES = {
    # ACmix-SAN is SAN with another bottleneck (ACmixBottleneck subclasses san.Bottleneck, built by san.SAN)
    ("acmix_san", "san"),
    # XVolutionResNet is the shared ResNet with X-volution spatial layers (subclass of resnet.ResNet)
    ("xvolution", "resnet"),
    # the dynamic-convolution Swin variants are variant-table entries of swin.SwinTransformer
    ("swin_dynconv", "swin"),
}

# private names still imported across modules, to be made public by their owners: (importing module, name)
def _module_names(source: str, module: str):
    """(line, imported module under convattn as a dotted path, names imported from it) of every convattn import."""
    package = module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                full = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "convattn":
                full = node.module.split(".")[1:]
            else:
                continue
            yield node.lineno, ".".join(full), [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("convattn."):
                    yield node.lineno, ".".join(alias.name.split(".")[1:]), []


def _private_imports(source: str, module: str):
    """(line, 'from X import _name') for every private name ``module`` imports from another module of the package
    (the package-root ``_env`` module, imported for its side effect, is allowed)."""
    for line, src, names in _module_names(source, module):
        for name in names:
            if name.startswith("_") and not name.startswith("__") and not (src == "" and name in ALWAYS):
                yield line, f"from {src or 'convattn'} import {name}", name


def _family_imports(source: str, module: str):
    """(line, other family) for every import of another model family by the family ``module`` ('models.<family>')."""
    me = module.split(".")[-1]
    for line, src, names in _module_names(source, module):
        parts = src.split(".")
        if parts[0] != "models":
            continue
        targets = [parts[1]] if len(parts) > 1 else names  # "from . import swin" names the module
        for t in targets:
            if t != me and t not in SHARED_MODEL_MODULES:
                yield line, t


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        yield path, rel, ".".join(rel.with_suffix("").parts)


def test_no_private_names_imported_across_modules():
    bad = []
    for path, rel, module in _modules():
        for line, what, name in _private_imports(path.read_text(encoding="utf-8"), module):
            bad.append(f"src/convattn/{rel}:{line} {what} (a private name: make it public in its module, or "
                       "keep the code that needs it there)")
    assert not bad, "private names imported across modules:\n" + "\n".join(bad)


def test_model_families_import_layers_not_each_other():
    bad = []
    for path, rel, module in _modules():
        if rel.parts[0] != "models" or len(rel.parts) != 2 or rel.stem in SHARED_MODEL_MODULES:
            continue
        for line, other in _family_imports(path.read_text(encoding="utf-8"), module):
            if (rel.stem, other) not in FAMILY_BASES:
                bad.append(f"src/convattn/{rel}:{line} imports the model family '{other}': move what it shares into "
                           "layers/ (or the builder), or add the pair to FAMILY_BASES with the reason")
    assert not bad, "model families importing each other:\n" + "\n".join(bad)


def test_the_private_and_family_checks_see_both_spellings():
    assert [w for _, w, _ in _private_imports("from .san import SAN, _san\n", "models.acmix_san")] == [
        "from models.san import _san"]
    assert [w for _, w, _ in _private_imports("from convattn.models.registry import _x\n", "engine.config")] == [
        "from models.registry import _x"]
    assert not list(_private_imports("from .. import _env\nfrom .base import __doc__\n", "models.van"))
    assert [o for _, o in _family_imports("from .swin import trunc_normal\n", "models.pvt")] == ["swin"]
    assert [o for _, o in _family_imports("from . import swin, builder\n", "models.pvt")] == ["swin"]
    assert [o for _, o in _family_imports("from convattn.models.san import SAN\n", "models.acmix_san")] == ["san"]
    assert not list(_family_imports("from .builder import register_variants\nfrom ..layers import Mlp\n", "models.van"))
