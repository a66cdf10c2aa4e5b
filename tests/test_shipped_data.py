"""The shipped flower photos (data/flowers-demo): the offline `make reproduce` data. Every photo
is intact (SHA256SUMS), credited (CC BY 2.0 requires it: ATTRIBUTION.txt names each one's
photographer), and laid out as the folder adapter and the offline setup read it."""

from __future__ import annotations

import hashlib
from pathlib import Path

from featx.datasets import open_dataset

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "data" / "flowers-demo"
CLASSES = ["daisy", "dandelion", "roses", "sunflowers", "tulips"]


def _photos() -> list[Path]:
    return sorted(p for p in DEMO.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def test_every_photo_is_listed_in_the_checksums_and_intact():
    sums = {}
    for line in (DEMO / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.removeprefix("./")] = digest
    photos = _photos()
    assert len(photos) == 250
    for p in photos:
        rel = p.relative_to(DEMO).as_posix()
        assert rel in sums, f"{rel} is not in SHA256SUMS"
        assert hashlib.sha256(p.read_bytes()).hexdigest() == sums[rel], f"{rel} has changed"


def test_every_photo_is_credited_under_its_licence():
    text = (DEMO / "ATTRIBUTION.txt").read_text()
    assert "creativecommons.org/licenses/by/2.0" in text
    # one line a photo, verbatim from flower_photos' LICENSE.txt: "class/file CC-BY by NAME -
    # URL" (a few: "class/file CC-BY URL - by NAME")
    credited = {line.split()[0] for line in text.splitlines()
                if " CC-BY " in line and " by " in line and "/" in line.split()[0]}
    for p in _photos():
        assert f"{p.parent.name}/{p.name}" in credited, f"{p} has no photographer credited"
    readme = (REPO / "README.md").read_text()
    assert "data/flowers-demo/ATTRIBUTION.txt" in readme and "Attribution 2.0" in readme


def test_the_folder_adapter_reads_both_splits():
    train = open_dataset("folder", DEMO, "train")
    test = open_dataset("folder", DEMO, "test")
    assert train.classes == test.classes == CLASSES
    assert [sum(r.labels == k for r in train.records) for k in range(5)] == [30] * 5
    assert [sum(r.labels == k for r in test.records) for k in range(5)] == [20] * 5


def test_the_offline_reproduction_runs_on_them(reproduce):
    setup = reproduce.offline_setup(DEMO)
    assert setup.root == DEMO and setup.dataset == "folder"
    assert setup.backbone == "efficientnet_lite0" and setup.input_size == 224
    assert "CC BY 2.0" in setup.note and "ATTRIBUTION.txt" in setup.note
    report = REPO / "reports" / f"{setup.name}.md"
    assert report.is_file(), "the offline report of the shipped photos is committed"
    assert str(REPO) not in report.read_text()  # no machine's absolute path
