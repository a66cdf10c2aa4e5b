"""featx reproduce --spread's failure paths: a configuration that does not exist is refused
before any work; a rerun that fails is one Error line with its log, the main run's rows kept."""

from __future__ import annotations

import pytest

from tests.test_reproduce import _featx_reproduce, _photos

pytestmark = pytest.mark.reliability


def test_a_failed_spread_rerun_is_one_error_with_its_log(reproduce, tmp_path, monkeypatch):
    """A rerun that fails is named with its exit code, its last line and its log; the main
    run's rows stay (a rerun of the command resumes)."""
    from featx.reproduce import spread

    monkeypatch.setitem(spread.CONFIGS, "1-thread", {"PYTHONHOME": str(tmp_path / "nowhere")})
    (tmp_path / "empty").mkdir()
    res = _featx_reproduce(tmp_path / "empty", tmp_path, "--offline", str(_photos(tmp_path / "p")),
                           "--weights", "none", "--input-size", "64", "--only", "CNN-Global",
                           "--spread", "1-thread")
    assert res.exit_code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: the --spread rerun under 1-thread") and "spread-1-thread.log" in line
    assert next((tmp_path / "w").glob("flowers-demo-*/rows/cnn-global.json")).is_file()
    assert not (tmp_path / "r" / "flowers-demo.md").exists()


def test_an_unknown_spread_configuration_is_refused_before_any_work(reproduce, tmp_path):
    (tmp_path / "empty").mkdir()
    res = _featx_reproduce(tmp_path / "empty", tmp_path, "--spread", "capped,avx9000")
    assert res.exit_code == 1 and "Error: unknown --spread configuration(s) avx9000" in res.stderr
    assert not (tmp_path / "w").exists()
