"""Issue 36: `featx reproduce` under hostile input -- its reports are outputs under the
driver's rules (writability checked before minutes of work, written atomically), the offline
report describes the photos it ran on, and its arguments are checked before any warning or
work."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from featx.errors import OutputError
from tests.test_reproduce import _featx_reproduce, _photos

pytestmark = pytest.mark.reliability


def test_reports_on_a_read_only_file_system_are_refused_before_the_work(reproduce, tmp_path,
                                                                        monkeypatch):
    """Issue 36.4: all the work (minutes), then an OSError traceback when the report was
    written. Now the reports folder's place is checked writable first (access(2) says EROFS
    on a read-only mount as it says EACCES on a folder of another user's), nothing made."""
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode: False if Path(p) == ro else real(p, mode))
    (tmp_path / "empty").mkdir()
    res = _featx_reproduce(tmp_path / "empty", tmp_path, "--offline", str(_photos(tmp_path / "p")),
                           "--weights", "none", "--input-size", "64", "--only", "CNN-Global",
                           "--reports", str(ro / "reports"))
    assert res.exit_code == 1 and res.stderr.strip() == (
        f"Error: --reports {ro / 'reports'} cannot be written: {ro} is not writable (a "
        "read-only file system?); name a folder featx can write"), res.stderr
    assert not (tmp_path / "w").exists() and not (ro / "reports").exists()


def test_reports_may_not_be_inside_the_photos(reproduce, tmp_path):
    photos = _photos(tmp_path / "p")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match="is inside the input"):
        reproduce.reproduce(tmp_path / "empty", tmp_path / "w", photos / "reports",
                            offline=photos)


def test_the_offline_report_describes_the_photos_it_ran_on(reproduce, tmp_path):
    """Issue 36.5: --data emptydata --offline imgs wrote a report describing the shipped
    250-photo flower set, not the folder given."""
    photos = _photos(tmp_path / "p")
    note = reproduce.offline_setup(photos).note
    assert f"the 12 photos in {photos} (2 classes: daisy, tulips; 8 training and 4 test " \
           "photos)" in note
    assert "250" not in note and "flowers-demo" not in note
    shipped = reproduce.offline_setup(Path(__file__).parents[2] / "data" / "flowers-demo")
    assert "on 250 real photos shipped in data/flowers-demo" in shipped.note


def test_the_offline_warning_names_the_photos_and_comes_after_the_rows_are_checked(
        reproduce, tmp_path, caplog, monkeypatch):
    """Issue 36 (weak): --only NOPE --offline imgs first warned about "the shipped flower
    photos", then refused the row. (The run is stopped at its plan, which comes after the
    warning: the plan's calibration would extract images.)"""
    from featx.errors import InputError

    class Planned(Exception):
        pass

    def plan(rep):
        raise Planned

    photos = _photos(tmp_path / "p")
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING, "featx"), pytest.raises(InputError, match="NOPE"):
        reproduce.reproduce(tmp_path / "empty", tmp_path / "w", tmp_path / "r",
                            offline=photos, only={"NOPE"}, plan_only=True)
    assert "OFFLINE" not in caplog.text
    monkeypatch.setattr(reproduce, "plan", plan)
    with caplog.at_level(logging.WARNING, "featx"), pytest.raises(Planned):
        reproduce.reproduce(tmp_path / "empty", tmp_path / "w", tmp_path / "r",
                            offline=photos, only={"CNN-Global"}, plan_only=True)
    assert f"OFFLINE chain on the photos in {photos}" in caplog.text
    assert "shipped" not in caplog.text


def test_an_empty_spread_is_refused_not_read_as_none(reproduce, tmp_path):
    """Issue 36 (weak): --spread '' silently meant no spread."""
    (tmp_path / "empty").mkdir()
    res = _featx_reproduce(tmp_path / "empty", tmp_path, "--spread", "")
    assert res.exit_code == 1 and "Error: --spread takes configuration names" in res.stderr
    assert not (tmp_path / "w").exists()
