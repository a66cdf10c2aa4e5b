"""Invalid parameters, generated: every constrained setting of every stage config (featx.params)
refused by name from Python, and every option of every command refused on the command line
with one ``Error:`` line naming the option or the value (scikit-learn's
``check_param_validation`` is the model). A new option without an invalid value here fails
``test_every_option_of_every_command_is_covered``."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from featx.api import _parameter_names
from featx.cli import all_commands, main
from featx.errors import InputError
from featx.params import constrained, flag_of
from featx.stages import stages

pytestmark = pytest.mark.reliability

# the settings a config cannot be made without
REQUIRED = {"FitPCAConfig": {"layer": "conv4"}, "FitGMMConfig": {"pca": "p.h5"},
            "EncodeConfig": {"pca": "p.h5"}, "EvaluateConfig": {"model": "m.h5"},
            "MapsConfig": {"layer": "conv5"}}
PYTHON_NAMES = {"--memory": "memory_gb"}  # where the option is not the field's name


def _configs() -> list[type]:
    out = []
    for cls in stages().values():
        module = importlib.import_module(cls.__module__)
        cfg = getattr(module, f"{cls.__name__}Config")  # a stage's config, wherever defined
        assert dataclasses.is_dataclass(cfg)
        out.append(cfg)
    return out


CASES = [(cfg, f, bad) for cfg in _configs() for f in constrained(cfg)
         for bad in f.metadata["constraint"].invalid()]


def test_every_stage_config_has_constraints():
    assert {cfg.__name__ for cfg in _configs()} == {
        "ExtractConfig", "FitPCAConfig", "FitGMMConfig", "FitGuidanceConfig", "EncodeConfig",
        "JoinConfig", "TrainSVMConfig", "EvaluateConfig", "MapsConfig"}
    assert all(constrained(cfg) for cfg in _configs())


@pytest.mark.parametrize(("cfg", "field", "bad"), CASES,
                         ids=[f"{c.__name__}.{f.name}={b!r}" for c, f, b in CASES])
def test_an_invalid_setting_is_refused_naming_it(cfg, field, bad):
    base = REQUIRED.get(cfg.__name__, {})
    cfg(**base)  # the defaults are valid
    with pytest.raises(InputError) as exc:
        cfg(**base, **{field.name: bad})
    flag = flag_of(field)
    assert str(exc.value).startswith(f"{flag} must be "), exc.value
    # from Python the message names the parameter, not the option
    with pytest.raises(InputError) as exc, _parameter_names():
        cfg(**base, **{field.name: bad})
    name = PYTHON_NAMES.get(flag, field.name)
    assert str(exc.value).startswith(f"{name} must be ") and "--" not in str(exc.value)


# --- the command line: every option of every command ------------------------------------------

def _base(chain: Path, tmp: Path) -> dict[str, list]:
    """A valid invocation of each command on the reliability chain (what an option is added to)."""
    return {
        "extract": [chain / "ds", "--weights", "none", "--workers", "0", "-o", tmp / "o"],
        "fit-pca": [chain / "acts", "--layer", "conv4", "-o", tmp / "o.h5"],
        "fit-gmm": [chain / "acts", "--pca", chain / "pca.h5", "-o", tmp / "o.h5"],
        "fit-guidance": [chain / "acts", "-o", tmp / "o.h5"],
        "encode": [chain / "acts", "--pca", chain / "pca.h5", "-o", tmp / "o"],
        "join": [chain / "enc", chain / "enc", "-o", tmp / "o"],
        "train-svm": [chain / "enc", "-o", tmp / "o.h5"],
        "evaluate": [chain / "enc", "--model", chain / "svm.h5"],
        "maps": [chain / "acts", "--layer", "conv5", "-o", tmp / "o"],
        "layers": ["alexnet"],
        "reproduce": ["--work", tmp / "w", "--reports", tmp / "r", "--plan"],
    }


# options whose values no type or constraint describes: a value each that must be refused
EXPLICIT = {
    ("extract", "--dataset"): "nope", ("extract", "--root"): "/nonexistent",
    ("extract", "--split"): "nope", ("extract", "--backbone"): "nope",
    ("extract", "--weights"): "/nonexistent.pt", ("extract", "--layers"): "nope",
    ("extract", "--views"): "nope", ("extract", "--scales"): "0", ("extract", "--device"): "nope",
    ("extract", "--encode"): "nope", ("extract", "--encode-views"): "nope",
    ("fit-pca", "--layer"): "nope", ("fit-pca", "--view"): "nope", ("fit-pca", "--local"): "nope",
    ("fit-pca", "--device"): "nope", ("fit-gmm", "--device"): "nope",
    ("fit-guidance", "--layer"): "nope", ("fit-guidance", "--scales"): "a",
    ("fit-guidance", "--device"): "nope",
    ("encode", "--method"): "nope", ("encode", "--views"): "nope", ("encode", "--layers"): "a",
    ("encode", "--fc-layer"): "nope", ("encode", "--device"): "nope",
    ("train-svm", "--C"): "0", ("train-svm", "--device"): "nope",
    ("evaluate", "--json"): "{dir}", ("evaluate", "--plots"): "{file}",
    ("evaluate", "--scores"): "{dir}",
    ("maps", "--layer"): "nope", ("maps", "--channels"): "a", ("maps", "--classes"): "nope",
    ("maps", "--device"): "nope",
    ("layers", "--input-size"): "31",
    ("reproduce", "--work"): "{file}", ("reproduce", "--reports"): "{file}",
    ("reproduce", "--backbone"): "nope", ("reproduce", "--weights"): "/nonexistent.pt",
    ("reproduce", "--input-size"): "31", ("reproduce", "--scales"): "0",
    ("reproduce", "--only"): "nope", ("reproduce", "--spread"): "avx9000",
}
# options needing others to mean anything: what goes with them
WITH = {("extract", "--root"): ["--dataset", "folder"],
        ("extract", "--split"): ["--dataset", "folder"],
        ("extract", "--dataset"): [],
        ("extract", "--encode-views"): ["--encode", "cross-layer", "--pca", "{chain}/pca.h5"],
        ("maps", "--classes"): ["--model", "{chain}/svm.h5", "--pca", "{chain}/pca.h5"]}


def _constraint_of(command: str, flag: str):
    from featx.stages import stages as all_stages

    cls = all_stages().get(command)
    if cls is None:
        return None
    cfg = getattr(importlib.import_module(cls.__module__), f"{cls.__name__}Config")
    return next((f.metadata["constraint"] for f in constrained(cfg) if flag_of(f) == flag), None)


def _invalid(command: str, opt: click.Option) -> list[str]:
    flag = max(opt.opts, key=len)
    if (command, flag) in EXPLICIT:
        return [EXPLICIT[(command, flag)]]
    c = _constraint_of(command, flag)
    if c is not None:
        return [str(v) for v in c.invalid()]
    if flag == "--seed":
        return ["-1", str(2**32)]
    if isinstance(opt.type, click.Path) and opt.type.exists:
        return ["/nonexistent/x"]
    if isinstance(opt.type, click.Choice):
        return ["nope"]
    if isinstance(opt.type, (click.IntRange, click.FloatRange)):
        low = opt.type.min if opt.type.min is not None else opt.type.max
        return [str(low - 1 if low is not None else "x")]
    return []


def _options():
    for name, cmd in sorted(all_commands().items()):
        for opt in cmd.params:
            if isinstance(opt, click.Option) and not opt.is_flag and "-o" not in opt.opts \
                    and "--help" not in opt.opts:
                yield name, opt


OPTIONS = list(_options())


def test_every_option_of_every_command_is_covered():
    missing = [(c, o.opts) for c, o in OPTIONS if not _invalid(c, o)]
    assert not missing, f"give these options an invalid value here: {missing}"
    assert {c for c, _ in OPTIONS} >= set(stages())


@pytest.mark.parametrize(("command", "opt"), OPTIONS,
                         ids=[f"{c} {max(o.opts, key=len)}" for c, o in OPTIONS])
def test_an_invalid_option_is_one_error_line_naming_it(chain, tmp_path, command, opt):
    flag = max(opt.opts, key=len)
    (tmp_path / "file").write_text("not a folder")
    base = [str(a) for a in _base(chain, tmp_path)[command]]
    with_ = [a.format(chain=chain) for a in WITH.get((command, flag), [])]
    if with_[:1] == ["--model"]:  # class evidence instead of channel overlays
        base = [a for a in base if a not in ("--layer", "conv5")]
    if (command, flag) == ("extract", "--dataset") or with_[:1] == ["--dataset"]:
        base = [a for a in base if a != str(chain / "ds")] + (["--root", str(chain / "ds")]
                                                              if flag != "--root" else [])
    for bad in _invalid(command, opt):
        bad = bad.format(file=tmp_path / "file", dir=tmp_path)
        res = CliRunner().invoke(main, ["-q", command, *base, *with_, flag, bad])
        err = res.stderr.strip()
        assert res.exit_code in (1, 2), (flag, bad, res.exit_code, err, res.exception)
        assert err.startswith("Error: ") and len(err.splitlines()) == 1, (flag, bad, err)
        named = flag in err or bad in err or (bad.lower() == "nan" and "nan" in err.lower())
        assert named, (flag, bad, err)
        assert not any(p.name == "o" or p.name.startswith("o.") for p in tmp_path.iterdir())


def test_nan_passes_clicks_range_but_not_the_config(chain, tmp_path):
    """click's FloatRange lets NaN through (it compares false); the config refuses it."""
    res = CliRunner().invoke(main, ["-q", "fit-gmm", str(chain / "acts"), "--pca",
                                    str(chain / "pca.h5"), "--tol", "nan", "-o",
                                    str(tmp_path / "g.h5")])
    assert res.exit_code == 1 and "--tol must be a finite number >= 0, got nan" in res.stderr
