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
