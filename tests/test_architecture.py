"""docs/architecture.md's arrows, checked on the source: who may import whom."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "featx"
FRONT = ("featx.cli", "featx.api", "featx.reproduce", "featx.transformer")
MATHS = ("encoders", "methods", "fit", "backbones", "svm", "metrics", "images", "datasets",
         "windows", "plots", "device", "linalg", "dist")
LEAVES = ("featx.errors", "featx.interrupt", "featx.digest", "featx.params", "featx.environment")


def _imports(path: Path) -> set[str]:
    """Every featx module ``path`` imports (at any depth of the file)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("featx"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("featx"))
    return out


def _files(*parts: str) -> list[Path]:
    base = SRC.joinpath(*parts)
    return sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]


def _under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_no_stage_imports_another_or_a_front_end():
    for path in _files("stages"):
        own = f"featx.stages.{path.stem}"
        for m in _imports(path):
            assert not _under(m, *FRONT), (path.name, m)
            if _under(m, "featx.stages") and m not in ("featx.stages", own):
                assert m.split(".")[2] in ("Output", "Stage", "FILE", "FOLDER", "OPTIONAL_FILE",
                                           "Progress", "start"), (path.name, m)


def test_maths_imports_neither_io_nor_stages_nor_front_ends():
    for part in MATHS:
        for path in _files(part):
            for m in _imports(path):
                assert not _under(m, "featx.io", "featx.stages", *FRONT), (path, m)


def test_encoders_do_not_import_fit():
    for path in _files("encoders"):
        assert not any(_under(m, "featx.fit") for m in _imports(path)), path


def test_cli_imports_stages_front_ends_registries_and_leaves_only():
    registries = {"featx.backbones.BACKBONES", "featx.backbones.FAMILIES",
                  "featx.backbones.get_backbone", "featx.backbones.list_models",
                  "featx.datasets.DATASETS", "featx.methods.METHODS"}
    for path in _files("cli"):
        for m in _imports(path):
            if m in ("featx", "featx.backbones", "featx.datasets", "featx.methods",
                     "featx.interrupt") or m in registries:
                continue
            assert _under(m, "featx.cli", "featx.stages", "featx.configs", *FRONT, *LEAVES), \
                (path.name, m)


def test_io_imports_only_the_leaves_and_fit_in_its_model_readers():
    for path in _files("io"):
        for m in _imports(path):
            assert _under(m, "featx.io", "featx.fit", *LEAVES) or m == "featx", (path.name, m)


def test_h5py_only_in_io():
    for path in SRC.rglob("*.py"):
        if "io" not in path.relative_to(SRC).parts[:1]:
            assert "import h5py" not in path.read_text(), path


def test_importing_featx_io_loads_no_scikit_learn_or_scipy():
    code = ("import sys, featx.io; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_command_lines_names_are_the_registries():
    """featx.configs states the registries' names (the command line's choices and help,
    without torch); each must be its registry's, in order."""
    from featx import configs
    from featx.backbones import BACKBONES, FAMILIES
    from featx.datasets import DATASETS
    from featx.methods import METHODS

    assert configs.METHODS == tuple(METHODS)
    assert configs.DATASETS == tuple(DATASETS)
    assert configs.FAMILIES == FAMILIES
    curated = {n: (b.input_size, b.description) for n, b in BACKBONES.items() if ":" not in n}
    assert configs.BACKBONES == curated and list(configs.BACKBONES) == list(curated)


def test_help_version_layers_and_completion_load_no_torch():
    """Issue 28.4: `featx --help`, every command's --help, `featx --version`, the curated
    `featx layers` and shell completion answer without importing torch."""
    from featx.cli import COMMANDS

    runs = [["--help"], ["--version"], ["layers"], ["layers", "--json"],
            *([name, "--help"] for name in COMMANDS)]
    code = ("import sys; from click.testing import CliRunner; from featx.cli import main\n"
            "for args in %r:\n"
            "    r = CliRunner().invoke(main, args)\n"
            "    assert r.exit_code == 0, (args, r.output)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'timm', 'h5py', 'sklearn')))" % runs)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- every module in a layer; no circle, counting the imports inside functions too -----------

# the layers, lowest first: a module imports, at module level, only its own layer and those
# below (io and the maths are side by side: the tests above keep each from the other)
LAYERS = (
    ("leaves", ("featx", "featx.errors", "featx.interrupt", "featx.digest", "featx.params",
                "featx.environment")),
    ("configs", ("featx.configs",)),
    ("io and maths", ("featx.io", *(f"featx.{m}" for m in MATHS))),
    ("glue", ("featx.sampling", "featx.encoding", "featx.inference", "featx.extraction",
              "featx.pyramids")),
    ("stages", ("featx.stages",)),
    ("front ends", ("featx.api", "featx.transformer", "featx.reproduce")),
    ("command line", ("featx.cli", "featx.__main__")),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _edges(path: Path, modules: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(module-level, inside-a-function) featx modules ``path`` imports: ``from P import M``
    of a submodule M is an import of P.M."""
    def target(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    top, inner = set(), set()

    def visit(node, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            deeper = nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
                continue  # annotations only: never run
            found = []
            if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("featx"):
                for a in child.names:
                    sub = f"{child.module}.{a.name}"
                    found.append(sub if sub in modules else target(child.module))
            elif isinstance(child, ast.Import):
                found = [target(a.name) for a in child.names if a.name.startswith("featx")]
            (inner if deeper else top).update(found)
            visit(child, deeper)

    visit(ast.parse(path.read_text()), False)
    return top, inner


def _layer(module: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        if any(_under(module, m) if m != "featx" else module == m for m in members):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py's LAYERS "
                         "(and docs/architecture.md): place it")


def test_every_module_is_in_a_layer_and_imports_none_above_it():
    modules = _modules()
    for name, path in modules.items():
        own = _layer(name)
        for m in _edges(path, modules)[0] - {name}:
            assert _layer(m) <= own, (f"{name} ({LAYERS[own][0]}) imports {m} "
                                      f"({LAYERS[_layer(m)][0]}) at module level")


def test_no_import_circle_even_through_imports_inside_functions():
    """No module reaches itself through imports, counting those inside functions: a lazy
    import never exists to break a circle. (The package root's lazy attributes -- the API
    loaded on first use -- are the one entry that may import anything; modules that import
    the root read its version.)"""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        top, inner = _edges(path, modules)
        graph[name] = {m for m in top | inner if m != name and m != "featx"}
    graph.pop("featx")
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def strong(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    assert not circles, circles
