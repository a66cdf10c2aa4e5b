"""Issue 36: `featx reproduce` under hostile input -- its reports are outputs under the
driver's rules (writability checked before minutes of work, written atomically), the offline
report describes the photos it ran on, and its arguments are checked before any warning or
work."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from featx.errors import OutputError
from tests.test_reproduce import _featx_reproduce, _photos

pytestmark = pytest.mark.reliability


def test_reports_on_a_read_only_file_system_are_refused_before_the_work(reproduce, tmp_path,
                                                                        monkeypatch):
    """Issue 36.4: all the work (minutes), then an OSError traceback when the report was
    written. Now the reports folder is made and checked writable first."""
    reports = tmp_path / "r"
    real = Path.mkdir

    def read_only(self, *a, **k):
        if self == reports:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match=r"cannot create output folder .*r: Read-only file "
                                          r"system"):
        reproduce.reproduce(tmp_path / "empty", tmp_path / "w", reports,
                            offline=_photos(tmp_path / "p"), weights="none", input_size=64,
                            only={"CNN-Global"})
    assert not list((tmp_path / "w").glob("flowers-demo-*")), "no work was done"


def test_reports_in_a_folder_it_cannot_write_are_refused_before_the_work(reproduce, tmp_path,
                                                                        monkeypatch):
    import os

    from featx.io import output

    reports = tmp_path / "r"
    real = os.access
    monkeypatch.setattr(output.os, "access",
                        lambda p, mode: False if Path(p) == reports else real(p, mode))
    (tmp_path / "empty").mkdir()
    res = _featx_reproduce(tmp_path / "empty", tmp_path, "--offline", str(_photos(tmp_path / "p")),
                           "--weights", "none", "--input-size", "64", "--only", "CNN-Global")
    assert res.exit_code == 1 and res.stderr.strip() == f"Error: output folder {reports} is " \
                                                        "not writable", res.stderr
    assert not list((tmp_path / "w").glob("flowers-demo-*"))


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
        reproduce, tmp_path, caplog):
    """Issue 36 (weak): --only NOPE --offline imgs first warned about "the shipped flower
    photos", then refused the row."""
    from featx.errors import InputError

    photos = _photos(tmp_path / "p")
    (tmp_path / "empty").mkdir()
    with caplog.at_level(logging.WARNING, "featx"), pytest.raises(InputError, match="NOPE"):
        reproduce.reproduce(tmp_path / "empty", tmp_path / "w", tmp_path / "r",
                            offline=photos, only={"NOPE"}, plan_only=True)
    assert "OFFLINE" not in caplog.text
    with caplog.at_level(logging.WARNING, "featx"):
        reproduce.reproduce(tmp_path / "empty", tmp_path / "w", tmp_path / "r",
                            offline=photos, only={"CNN-Global"}, plan_only=True,
                            weights="none", input_size=64)
    assert f"OFFLINE chain on the photos in {photos}" in caplog.text
    assert "shipped" not in caplog.text


def test_an_empty_spread_is_refused_not_read_as_none(reproduce, tmp_path):
    """Issue 36 (weak): --spread '' silently meant no spread."""
    (tmp_path / "empty").mkdir()
    res = _featx_reproduce(tmp_path / "empty", tmp_path, "--spread", "")
    assert res.exit_code == 1 and "Error: --spread takes configuration names" in res.stderr
    assert not (tmp_path / "w").exists()
