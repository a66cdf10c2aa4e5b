"""Issue 36: the environment goes through one reader, as the options do. Every variable featx
reads is declared in :data:`featx.environment.VARIABLES` with its constraint; nothing else in
src/ reads ``os.environ`` (an AST walk below); every declared variable's invalid values are
one ``Error:`` line naming it, before any work, from the CLI and the Python API alike."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from click.testing import CliRunner

import featx
from featx import environment
from featx.cli import main
from featx.errors import InputError

SRC = Path(featx.__file__).parent


def _environ_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each read of the environment in a module: ``os.environ[...]`` loaded,
    ``os.environ.get``/``in os.environ``/any other use of ``os.environ`` but a store into it
    or a copy for a child process (``{**os.environ, ...}``), and ``os.getenv``."""
    passed_on = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            passed_on |= {id(v) for k, v in zip(node.keys, node.values) if k is None}
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            passed_on.add(id(node.value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            if node.attr == "getenv" or (node.attr == "environ" and id(node) not in passed_on):
                found.append((node.lineno, f"os.{node.attr}"))
    return found


def test_nothing_but_featx_environment_reads_the_environment():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "environment.py":
            continue
        for line, what in _environ_reads(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(SRC)}:{line} reads {what}")
    assert not offenders, ("read the environment through featx.environment.get (declare the "
                           "variable in VARIABLES): " + "; ".join(offenders))


def test_the_ast_walk_finds_a_read_and_passes_a_store_and_a_copy():
    """The walk above is honest: it catches each kind of read, and only reads."""
    reads = ("os.environ.get('X')", "os.environ['X']", "'X' in os.environ", "os.getenv('X')")
    for src in reads:
        assert _environ_reads(ast.parse(src)), src
    for src in ("os.environ['X'] = '1'", "env = {**os.environ, 'A': '1'}"):
        assert not _environ_reads(ast.parse(src)), src


def test_every_variable_read_through_the_reader_is_declared():
    """``environment.get("NAME")`` with a literal NAME: NAME is declared."""
    undeclared = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("get", "is_set") \
                    and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "environment" and node.args \
                    and isinstance(node.args[0], ast.Constant):
                if node.args[0].value not in environment.VARIABLES:
                    undeclared.append(f"{path.relative_to(SRC)}:{node.lineno} "
                                      f"{node.args[0].value}")
    assert not undeclared, undeclared
    with pytest.raises(KeyError):
        environment.get("FEATX_NOT_DECLARED")


CASES = [(name, bad) for name, var in environment.VARIABLES.items() for bad in var.invalid()]


def test_every_variable_has_an_invalid_value_to_try():
    """A new variable gets its generated cases from its constraint, or this fails."""
    assert {name for name, _ in CASES} == set(environment.VARIABLES)


@pytest.mark.parametrize("name,bad", CASES)
def test_an_invalid_value_is_one_line_naming_the_variable(monkeypatch, name, bad):
    monkeypatch.setenv(name, bad)
    with pytest.raises(InputError) as err:
        environment.check()
    text = str(err.value)
    assert f"environment variable {name}={bad!r}" in text and "\n" not in text


@pytest.mark.parametrize("name", sorted(environment.VARIABLES))
def test_the_cli_refuses_a_bad_variable_before_any_work(chain, tmp_path, name):
    """From the command line: one Error line, exit 1, nothing written."""
    bad = environment.VARIABLES[name].invalid()[0]
    out = tmp_path / "pca.h5"
    res = CliRunner().invoke(main, ["-q", "fit-pca", str(chain / "acts"), "--layer", "conv4",
                                    "--dim", "4", "-o", str(out)], env={name: bad})
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and name in lines[0], res.stderr
    assert not out.exists()


def test_the_python_api_refuses_a_bad_variable_before_any_work(chain, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATX_DIST_TIMEOUT", "inf")
    with pytest.raises(InputError, match="FEATX_DIST_TIMEOUT='inf'"):
        featx.fit_pca(chain / "acts", tmp_path / "pca.h5", layer="conv4", dim=4)
    assert not (tmp_path / "pca.h5").exists()


@pytest.mark.parametrize("value", ["inf", "1e20", "abc", "0", "1e-9", "-5", "nan"])
def test_dist_timeout_out_of_range_is_named_not_an_overflow(monkeypatch, value):
    """Issue 36.2 and its weak class: inf / 1e20 raised OverflowError on every rank; abc, 0
    and 1e-9 read as a failed join or C++ frames."""
    monkeypatch.setenv("FEATX_DIST_TIMEOUT", value)
    with pytest.raises(InputError, match=r"FEATX_DIST_TIMEOUT=.* must be a finite number "
                                         r">= 1 and <= 2592000 \(seconds\)"):
        environment.check()


@pytest.mark.parametrize("value", ["5", "1800", "2592000"])
def test_dist_timeout_in_range_is_taken(monkeypatch, value):
    from featx import dist

    monkeypatch.setenv("FEATX_DIST_TIMEOUT", value)
    assert dist.timeout_seconds() == float(value)


def test_a_rank_at_or_beyond_the_world_size_is_refused(monkeypatch):
    """The weak class: RANK=2 of WORLD_SIZE=2 waited for the timeout, then C++ frames."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(InputError, match="RANK=2 must be below WORLD_SIZE=2"):
        environment.check()
    monkeypatch.setenv("RANK", "1")
    environment.check()


@pytest.mark.parametrize("target", ["/proc/nonexistent/t.json", "FOLDER"])
def test_an_unwritable_trace_is_refused_before_the_model_is_written(chain, tmp_path,
                                                                   monkeypatch, target):
    """Issue 36.3: FEATX_DIST_TRACE unwritable (or a folder) wrote the model, then a
    traceback and rc 1, the model's path never printed."""
    trace = str(tmp_path) if target == "FOLDER" else target
    out = tmp_path / "svm.h5"
    res = CliRunner().invoke(main, ["-q", "train-svm", str(chain / "enc"), "-o", str(out)],
                             env={"FEATX_DIST_TRACE": trace})
    assert res.exit_code == 1 and "FEATX_DIST_TRACE" in res.stderr, res.output
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_trace_that_fails_after_the_work_is_one_line(chain, tmp_path, monkeypatch):
    """A trace that checked writable but cannot be appended to when the stage ends (the disk
    filled meanwhile): one line that says the output is complete."""
    from featx import dist
    from featx.errors import OutputError

    monkeypatch.setenv("FEATX_DIST_TRACE", str(tmp_path / "t.jsonl"))

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(OutputError, match="could not append to FEATX_DIST_TRACE=.*No space "
                                          "left on device.*output is complete"):
        dist.trace("fit-pca", dist.SINGLE, 1.0)


def test_progress_every_is_checked_not_silently_defaulted(monkeypatch):
    """FEATX_PROGRESS_EVERY=abc read as 30 s before; now it is named."""
    from featx.cli.progress import every_seconds

    monkeypatch.setenv("FEATX_PROGRESS_EVERY", "abc")
    with pytest.raises(InputError, match="FEATX_PROGRESS_EVERY='abc'"):
        every_seconds()
    monkeypatch.setenv("FEATX_PROGRESS_EVERY", "2.5")
    assert every_seconds() == 2.5
