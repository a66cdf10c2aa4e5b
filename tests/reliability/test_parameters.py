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
            "MapsConfig": {"layer": "conv5"}, "ExportConfig": {"model": "m.h5"},
            "PredictConfig": {"bundle": "b.h5"}}
PYTHON_NAMES = {"--memory": "memory_gb", "--method": "method", "--C": "C"}  # where the option is not the field's name


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
        "JoinConfig", "TrainSVMConfig", "EvaluateConfig", "MapsConfig", "ExportConfig",
        "PredictConfig"}
    assert all(constrained(cfg) for cfg in _configs())


@pytest.mark.parametrize(("cfg", "field", "bad"), CASES,
                         ids=[f"{c.__name__}.{f.name}={b!r}" for c, f, b in CASES])
def test_an_invalid_setting_is_refused_naming_it(cfg, field, bad):
    base = REQUIRED.get(cfg.__name__, {})
    cfg(**base)  # the defaults are valid
    with pytest.raises(InputError) as exc:
        cfg(**{**base, field.name: bad})
    flag = flag_of(field)
    assert str(exc.value).startswith(f"{flag} must be "), exc.value
    # from Python the message names the parameter, not the option
    with pytest.raises(InputError) as exc, _parameter_names():
        cfg(**{**base, field.name: bad})
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
        "export": ["--model", chain / "svm.h5", "--weights", chain / "weights.pt", "-o",
                   tmp / "o.h5"],
        "predict": [chain / "bundle.h5", chain / "ds", "--weights", chain / "weights.pt",
                    "--workers", "0", "-o", tmp / "o"],
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
    ("predict", "--root"): "/nonexistent", ("predict", "--split"): "nope",
    ("export", "--encodings"): "/nonexistent/x",
    ("predict", "--device"): "nope",
    ("layers", "--input-size"): "31",
    ("reproduce", "--work"): "{file}", ("reproduce", "--reports"): "{file}",
    ("reproduce", "--backbone"): "nope", ("reproduce", "--weights"): "/nonexistent.pt",
    ("reproduce", "--input-size"): "31", ("reproduce", "--scales"): "0",
    ("reproduce", "--only"): "nope", ("reproduce", "--spread"): "avx9000",
}
# options needing others to mean anything: what goes with them
WITH = {("extract", "--root"): ["--dataset", "folder"],
        ("predict", "--root"): ["--dataset", "folder"],
        ("predict", "--split"): ["--dataset", "folder"],
        ("predict", "--dataset"): [],
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
    if (command in ("extract", "predict") and flag == "--dataset") or with_[:1] == ["--dataset"]:
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


# --- the Python API: every argument of every public function ---------------------------------

def _api_functions():
    import inspect

    import featx.api as api

    return {name: getattr(api, name) for name in api.__all__
            if inspect.isfunction(getattr(api, name))}


def _own_parameters(fn) -> list[str]:
    import inspect

    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind is not p.VAR_KEYWORD]


def test_every_field_of_every_config_carries_a_constraint():
    """Issue 36: a setting without a constraint reached the stage unchecked (a str of C
    iterated as digits); every field but the provenance's `command` has one now."""
    bare = [f"{cfg.__name__}.{f.name}" for cfg in _configs() for f in dataclasses.fields(cfg)
            if f.name != "command" and "constraint" not in f.metadata]
    assert not bare, bare


def test_every_argument_of_every_api_function_has_a_rule():
    """A new argument of a featx.api function without a rule (and its bad values) fails here."""
    from featx.api import RULES

    missing = [f"{name}({p})" for name, fn in _api_functions().items()
               for p in _own_parameters(fn) if p not in RULES]
    assert not missing, missing
    assert all(RULES[p].bad for p in RULES)


API_CASES = [(name, p, bad) for name, fn in _api_functions().items()
             for p in _own_parameters(fn) for bad in __import__("featx.api").api.RULES[p].bad]


@pytest.mark.parametrize(("function", "param", "bad"), API_CASES,
                         ids=[f"{f}.{p}={b!r}" for f, p, b in API_CASES])
def test_a_wrong_api_argument_is_refused_naming_it(tmp_path, monkeypatch, function, param, bad):
    """Issue 36: every argument type-strict before any work ("55" is not 55, "no" is not
    False, bytes are not a path), the error naming the Python parameter."""
    from featx.api import RULES

    monkeypatch.chdir(tmp_path)
    fn = _api_functions()[function]
    good = {p: RULES[p].good for p in _own_parameters(fn)}
    assert RULES[param].ok(RULES[param].good) if param != "C" else True
    with pytest.raises(InputError) as exc:
        fn(**{**good, param: bad})
    assert str(exc.value).startswith(f"{param} must be "), exc.value
    assert "--" not in str(exc.value) and "\n" not in str(exc.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"spread": ["capped", 3]}, "spread must be"), ({"only": "CL-45"}, "only must be"),
    ({"data": "/nonexistent"}, "--data /nonexistent is not a folder"),
    ({"data": b"data"}, "data must be"), ({"plan_only": "no"}, "plan_only must be"),
    ({"scales": "3"}, "scales must be"), ({"spread": ""}, "--spread takes configuration"),
])
def test_reproduce_from_python_refuses_a_wrong_argument_before_any_work(tmp_path, kwargs, words):
    """Issue 36 (weak): reproduce(spread=["capped", 3]), only="CL-45" (a string) and
    data="/nonexistent" (ran the offline demo; the CLI refuses it) went on."""
    from featx.reproduce import reproduce

    args = {"data": tmp_path, "work": tmp_path / "w", "reports": tmp_path / "r", **kwargs}
    with pytest.raises(InputError, match=words):
        reproduce(args.pop("data"), args.pop("work"), args.pop("reports"), **args)
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists()


def test_extract_takes_the_fused_pass_as_the_command_line_does():
    """Issue 36 (weak): extract(encode="cross-layer", pca=...) was a TypeError, and
    extract(encode={"method": "cross-layer"}) named --pca, not pca."""
    from featx.api import _fused
    from featx.encoding import EncodeConfig

    cfg = _fused({"encode": "cross-layer", "pca": "p.h5", "views": ("whole", "blocks")})
    assert cfg == EncodeConfig(methods=("cross-layer",), views=("whole", "blocks"), pca="p.h5")
    assert _fused({"encode": {"method": "cross-layer", "pca": "p.h5"}}) == \
        EncodeConfig(methods=("cross-layer",), pca="p.h5")
    assert _fused({"encode": "fisher", "gmm": "g.h5", "pca": "p.h5", "encode_views": "whole"}) \
        == EncodeConfig(methods=("fisher",), gmm="g.h5", pca="p.h5")
    with pytest.raises(InputError, match="go with encode="):
        _fused({"pca": "p.h5"})


def test_extract_names_the_python_parameter_the_fused_pass_needs(tmp_path):
    import featx

    (tmp_path / "a.png").write_bytes(b"")
    with pytest.raises(InputError) as exc:
        featx.extract(tmp_path, tmp_path / "out", encode={"method": "cross-layer"})
    assert "needs pca" in str(exc.value) and "--" not in str(exc.value)
