"""The package's imports point one way: layers <- models <- engine / deploy <- bench, and convert / hub (data beside
models).
The optional CPU backend (``convattn.cpu``) imports no other sub-package, and ``layers`` reaches it only lazily,
inside the functions of :mod:`convattn.layers.targets` listed in ``LAZY_BACKEND``; its C++ and its ``ops.Custom``
primitives live nowhere else. ``import convattn`` changes no environment variable.

Walks every module's import statements (top level and inside functions) without importing anything, so a new
upward or sideways import fails here with the file and line. Also: no module imports another module's private
(``_name``) names, and a model family (``models/<family>.py``) imports ``layers`` and the shared model modules
(builder, registry, helpers, base), not another family, except the few listed in ``FAMILY_BASES``.
"""
import ast
import os
import subprocess
import sys

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
    "cpu": set(),  # the CPU backend: fused kernels built from MindSpore alone
    # official weights: download, verify, convert (through convert, which builds networks), cache
    "hub": {"models", "layers", "utils", "convert"},
}
ALWAYS = {"_env", "__version__", "apply_cpu_defaults"}  # the CLIs apply the CPU default of _env at start
# the only imports of the CPU backend outside it: inside these functions of layers/targets.py (never at module
# level), so that a network built without the backend never imports it: decide_form (the runtime, when a CPU
# network may use the backend), cpu_cell (a fused cell, when the network being built uses it) and
# set_cpu_backend_threads (the tools' --threads, only while the backend is switched on)
LAZY_BACKEND = {("layers.targets", "decide_form"), ("layers.targets", "cpu_cell"),
                ("layers.targets", "set_cpu_backend_threads")}
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


def test_the_lazy_upward_import_is_seen_only_inside_functions():
    source = "from ..hub import a\n\ndef f():\n    from ..hub import b\n"
    assert _function_import_lines(source) == {4}


def test_imports_point_one_way():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if len(rel.parts) == 1:
            continue  # the package root (__init__, _env) wires the public API together
        me = rel.parts[0]
        assert me in ALLOWED, f"new sub-package {me}: add it to ALLOWED with the layers it may import"
        module = ".".join(rel.with_suffix("").parts)
        source = path.read_text(encoding="utf-8")
        lazy = _function_import_lines(source)
        for line, dep in _imports(source, module):
            if dep == "cpu" and any(line in lines for (m, _), lines in _backend_import_sites(module, path).items()):
                continue  # the lazy imports of the backend (test_cpu_backend_is_imported_only_lazily)
            if (rel.as_posix(), dep) in LAZY_UPWARD and line in lazy:
                continue
            if dep != me and dep not in ALWAYS and dep not in ALLOWED[me]:
                bad.append(f"src/convattn/{rel}:{line} imports convattn.{dep} ({me} may import {sorted(ALLOWED[me])})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def _backend_import_sites(module: str, path) -> dict:
    """``{(module, function): lines}`` of the convattn.cpu imports of ``module`` that sit inside one of the
    functions of :data:`LAZY_BACKEND`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    sites = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and (module, node.name) in LAZY_BACKEND:
            lines = {line for line, dep in _node_imports(ast.walk(node), module) if dep == "cpu"}
            if lines:
                sites[(module, node.name)] = lines
    return sites


def _node_imports(nodes, module: str):
    """(line in the file, first component under convattn) of the import statements among ``nodes``."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for _, dep in _imports(ast.unparse(node), module):
                yield node.lineno, dep


def _top_level_imports(source: str, module: str):
    """(line, first component under convattn) of the imports ``module`` runs when it is imported (module level,
    class bodies, ``if``/``try`` blocks; not inside functions)."""
    tree = ast.parse(source)

    def walk(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield from _node_imports([node], module)
            else:
                yield from walk(ast.iter_child_nodes(node))

    for line, dep in walk(tree.body):
        yield line, dep


def test_cpu_backend_is_imported_only_lazily():
    """convattn.layers and convattn.models never import convattn.cpu when they are imported: only the functions
    of LAZY_BACKEND (targets.decide_form, targets.cpu_cell, targets.set_cpu_backend_threads) do, inside their
    bodies. Nothing else imports it."""
    eager, lazy, elsewhere = [], set(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "cpu":
            continue
        module = ".".join(rel.with_suffix("").parts)
        source = path.read_text(encoding="utf-8")
        eager += [f"src/convattn/{rel}:{line}" for line, dep in _top_level_imports(source, module) if dep == "cpu"]
        sites = _backend_import_sites(module, path)
        lazy |= set(sites)
        allowed = set().union(*sites.values()) if sites else set()
        elsewhere += [f"src/convattn/{rel}:{line}" for line, dep in _imports(source, module)
                      if dep == "cpu" and line not in allowed]
    assert not eager, f"convattn.cpu imported at module level: {eager}"
    assert not elsewhere, f"convattn.cpu imported outside the functions of LAZY_BACKEND: {elsewhere}"
    assert lazy == LAZY_BACKEND, lazy  # both lazy entry points exist (the check above is not vacuous)
    # the walker sees through functions but not module-level blocks
    text = ("import os\ntry:\n    from ..cpu import runtime\nexcept ImportError:\n    pass\n"
            "def f():\n    from .. import cpu\n")
    assert list(_top_level_imports(text, "layers.targets")) == [(3, "cpu")]


def _python(code: str, **env) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on the working tree's package, with ``env`` over this environment
    (a value None: the variable unset)."""
    full = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run([sys.executable, "-c", code], env=full, cwd=str(REPO), capture_output=True, text=True,
                          timeout=600)


def test_import_convattn_changes_no_environment_variable():
    """``import convattn`` sets nothing (it used to set ONEDNN_MAX_CPU_ISA); apply_cpu_defaults() does, where it
    helps."""
    code = ("import mindspore, os; e = dict(os.environ); import convattn; import convattn.layers, convattn.models; "
            "assert e == dict(os.environ), sorted(set(os.environ.items()) ^ set(e.items())); "
            "assert 'ONEDNN_MAX_CPU_ISA' not in os.environ")
    done = _python(code, ONEDNN_MAX_CPU_ISA=None)
    assert done.returncode == 0, done.stderr[-3000:]


def test_network_built_without_the_backend_never_imports_it():
    """With CONVATTN_FUSED_KERNELS=0 building a CPU network (acmix_resnet26, small) imports no convattn.cpu
    module; with the switch on, the same build does consult the backend (the check is not vacuous)."""
    code = """
import os, sys
import convattn
small = convattn.models.small_instance_kwargs("acmix_resnet26")[0]
net = convattn.create_model("acmix_resnet26", target="CPU", num_classes=10, **small)
loaded = sorted(m for m in sys.modules if m == "convattn.cpu" or m.startswith("convattn.cpu."))
assert not loaded, loaded
assert not net.form.cpu_backend and net.form.note == "CONVATTN_FUSED_KERNELS=0", net.form
assert not [n for n, c in net.cells_and_names() if type(c).__module__.startswith("convattn.cpu")]
os.environ["CONVATTN_FUSED_KERNELS"] = "1"
net = convattn.create_model("acmix_resnet26", target="CPU", num_classes=10, **small)
assert "convattn.cpu.runtime" in sys.modules
print("backend", net.form.cpu_backend)
"""
    done = _python(code, CONVATTN_FUSED_KERNELS="0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "backend" in done.stdout


def _code_uses_custom(source: str) -> bool:
    """The code (not its docstrings or comments) names ``Custom``: ``ops.Custom``, ``from ... import Custom``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "Custom":
            return True
        if isinstance(node, ast.Name) and node.id == "Custom":
            return True
        if isinstance(node, ast.ImportFrom) and any(a.name == "Custom" for a in node.names):
            return True
    return False


def test_custom_kernels_live_only_in_the_cpu_backend():
    """No ops.Custom primitive and no C/C++ source outside src/convattn/cpu (the rest of the package builds
    standard MindSpore cells)."""
    backend = PACKAGE / "cpu"
    skip = {".git", ".venv", "venv", "__pycache__", "build", "dist", "node_modules"}

    def files(*suffixes):
        for root, dirs, names in os.walk(REPO):
            dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
            for name in names:
                if name.endswith(suffixes):
                    yield os.path.join(root, name)

    native = [os.path.relpath(p, REPO) for p in files(".cc", ".cpp", ".cxx", ".c", ".h", ".hpp", ".cu")
              if not p.startswith(str(backend) + os.sep)]
    assert not native, f"C/C++ sources outside src/convattn/cpu: {native}"
    custom = [os.path.relpath(p, REPO) for p in files(".py")
              if not p.startswith(str(backend) + os.sep) and _code_uses_custom(open(p, encoding="utf-8").read())]
    assert not custom, f"ops.Custom outside src/convattn/cpu: {custom}"
    assert any(_code_uses_custom(p.read_text(encoding="utf-8")) for p in backend.rglob("*.py"))
    assert list(backend.rglob("*.cc"))
    assert _code_uses_custom("from mindspore import ops\nops.Custom(f)\n")
    assert not _code_uses_custom('"""an ops.Custom kernel"""\n# ops.Custom\n')


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
