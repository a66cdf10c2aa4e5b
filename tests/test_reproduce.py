"""featx reproduce (featx.reproduce): every published row is computed or listed as not run, and
the report puts the paper's number, with its table, beside ours."""

from __future__ import annotations

from pathlib import Path

import pytest

from click.testing import CliRunner

from featx.cli import main as cli
from featx.reproduce import published as paper

REPO = Path(__file__).resolve().parent.parent


def test_every_published_row_is_run_or_said_not_run(reproduce):
    setup = reproduce.Setup("voc07", "voc07", Path("."), "trainval", "test")
    ours = {r.name for r in reproduce.rows_of(setup)}
    published = {row for _, rows in paper.TABLES.values() for row in rows}
    assert published <= ours, published - ours
    for row in ("R-CNN SCFV", "SCFV", "MPP + DSFL", "MPP (CNNS-FC7)", "MPP (CNNS-FC7, FC8)"):
        assert row in paper.NOT_RUN


def test_paper_numbers_are_the_tables(reproduce):
    """Spot checks against ../shared/PAPER_TABLES.md, one per table."""
    assert paper.published("CL + CNN-Jitter", "voc07") == [("liu-1-4", 77.8, "Liu et al. CVPR 2015 T3")]
    assert paper.published("CL-34C", "h3d")[0][1] == 75.9
    assert paper.published("SPP", "mit67")[0][1:] == (56.3, "Liu et al. CVPR 2015 T7")
    assert paper.published("Original", "voc07")[0][1] == 71.3
    assert paper.published("MPP + SP", "flowers102")[0][1:] == (90.05, "Yoo et al. arXiv 1412.1628 T6a")
    assert paper.published("MPP (FC7, Pool5)", "voc07") == []
    assert paper.YOO_T5["MPP"][-1] == 79.5 and len(paper.YOO_T5["AP10"]) == 21


def test_report_lists_every_row_with_the_paper_number(reproduce, tmp_path):
    setup = reproduce.Setup("voc07", "voc07", tmp_path, "trainval", "test")
    rep = reproduce.Reproduction(setup, tmp_path / "work")
    results = {}
    for k, r in enumerate(rep.rows.values()):
        ap = [0.5 + 0.01 * k] * 20
        results[r.name] = {"metrics": {"mAP": ap[0], "AP": ap}, "dim": 100 + k, "C": 0.1}
    path = reproduce.write_report(rep, results, tmp_path / "reports", "plan text")
    text = path.read_text()
    for name in results:
        assert f"| {name} |" in text, name
    # CL-45C on VOC07 appears in Tables 1-4 (T3) and in Table 6, with ours and the delta
    k = list(results).index("CL-45C")
    ours = 100 * (0.5 + 0.01 * k)
    assert f"| CL-45C | {ours:.2f} | 75.00 | {ours - 75:+.2f} | Liu et al. CVPR 2015 T3 |" in text
    assert "| CL-45C |" in text.split("Table 6")[1]
    assert "Yoo et al. Table 5" in text and "| MPP (paper) | 90.2 |" in text
    for row in paper.NOT_RUN:
        assert f"| {row} |" in text
    assert "equals its CL-45F number" in text  # the Table 8 note


def _featx_reproduce(data: Path, tmp_path: Path, *args: str):
    """``featx -q reproduce`` on ``data``, work and reports under ``tmp_path``."""
    return CliRunner().invoke(cli, ["-q", "reproduce", "--data", str(data), "--work",
                                    str(tmp_path / "w"), "--reports", str(tmp_path / "r"),
                                    *args])


def _voc(root: Path, n: int = 4) -> Path:
    from PIL import Image

    from featx.datasets import VOC_CLASSES

    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (50, 40), (i * 40, 90, 30)).save(voc / "JPEGImages" / f"{i:06d}.jpg")
    for split in ("trainval", "test"):
        for c in VOC_CLASSES:
            (voc / "ImageSets" / "Main" / f"{c}_{split}.txt").write_text(
                "".join(f"{i:06d} {1 if i == 0 else -1}\n" for i in range(n)))
    return voc


@pytest.mark.reliability
def test_incomplete_benchmark_is_named_and_refused_before_any_work(reproduce, tmp_path, capsys):
    voc = _voc(tmp_path / "data")
    (voc / "JPEGImages" / "000002.jpg").unlink()
    res = _featx_reproduce(tmp_path / "data", tmp_path)
    assert res.exit_code == 1 and res.output.startswith("Error: voc07: ")
    assert "000002.jpg is missing" in res.output and len(res.output.splitlines()) == 1
    assert not any((tmp_path / "w").rglob("*.h5"))
    _voc(tmp_path / "data2")
    voc = tmp_path / "data2" / "VOCdevkit" / "VOC2007"
    (voc / "ImageSets" / "Main" / "dog_test.txt").unlink()
    res = _featx_reproduce(tmp_path / "data2", tmp_path)
    assert res.exit_code == 1 and "dog_test.txt is missing" in res.output


@pytest.mark.reliability
def test_run_refuses_to_start_without_the_disk_of_its_plan(reproduce, tmp_path, monkeypatch):
    _voc(tmp_path / "data")
    monkeypatch.setattr(reproduce.run, "_calibrate", lambda rep, phase, extra: {
        "seconds": 1.0, "bytes": 5e9, "vectors": 10, "rss": 1e9})
    free = type("Usage", (), {"free": int(2e9)})()
    monkeypatch.setattr(reproduce.shutil, "disk_usage", lambda path: free)
    res = _featx_reproduce(tmp_path / "data", tmp_path)
    msg = res.output
    assert res.exit_code == 1 and msg.startswith("Error: voc07 needs about ")
    assert "2.0 GB are free" in msg
    assert not any((tmp_path / "w").rglob("*.h5")) and not (tmp_path / "r").exists()


def test_h3d_cuts_2x1_blocks_and_every_other_dataset_2x2(reproduce, tmp_path):
    """Liu §4.1: M = N = 2 blocks, except M = 2, N = 1 for H3D; the report says which."""
    for name, (rows, cols) in (("h3d", (2, 1)), ("voc07", (2, 2)), ("mit67", (2, 2))):
        setup = next(s for s in reproduce.benchmarks(_all_layouts(tmp_path)) if s.name == name)
        rep = reproduce.Reproduction(setup, tmp_path / "work")
        for phase in ("cl45", "cl34"):
            views = rep.extraction(phase)["views"].split(",")
            assert views == ["whole", f"blocks:{rows}x{cols}"], (name, views)
        results = {r.name: {"metrics": {"mAP": 0.5, "AP": [0.5] * 20}, "dim": 1, "C": 1.0}
                   for r in rep.rows.values()}
        text = reproduce.write_report(rep, results, tmp_path / "r", "plan").read_text()
        assert f"blocks {rows}×{cols} (rows × columns)" in text
        assert "{" not in text.split("## ")[0]  # every field of the settings line filled


def _all_layouts(root: Path) -> Path:
    """Empty markers of every benchmark layout reproduce looks for."""
    for marker in ("VOCdevkit/VOC2007/ImageSets", "mit67/TrainImages.txt",
                   "attributes_dataset/train/labels.txt"):
        path = root / marker
        path.parent.mkdir(parents=True, exist_ok=True)
        if "." in path.name:
            path.touch()
        else:
            path.mkdir(exist_ok=True)
    return root


@pytest.mark.slow
def test_a_quick_run_on_a_small_folder_finishes_and_says_what_it_clamped(reproduce, tmp_path):
    """Issue 27.7: on 12 images no model may be larger than its sample: the cross-layer PCA's
    500 dimensions and the GMM's 256 components are clamped, and the report says so, with the
    sample sizes actually used; a dataset's report carries only its own footnotes."""
    _voc(tmp_path / "data", n=12)  # 12 trainval (and the same 12 as test) images
    res = _featx_reproduce(tmp_path / "data", tmp_path, "--backbone", "alexnet", "--weights",
                           "none", "--input-size", "96", "--scales", "2")
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(tmp_path / "r" / "voc07.md")]  # the report's path
    text = (tmp_path / "r" / "voc07.md").read_text()
    setup = reproduce.Setup("voc07", "voc07", tmp_path, "trainval", "test")
    for row in reproduce.rows_of(setup):
        assert f"| {row.name} |" in text, row.name
    assert "cl45: the cross-layer PCA's dimension = " in text and "instead of 500" in text
    assert "pyr1: K = " in text and "instead of 256" in text
    assert "of 12 sampled images" in text and "256 sampled" not in text
    assert "equals its CL-45F number" in text  # VOC07's own footnote
    assert "Birds-200" not in text and "MIT-67 'MPP" not in text
    # issue 27.5: fc7 at 227 and 321 px has no vector centred in the top or bottom third
    assert "MPP + SP's top and bottom thirds are empty" in text
    # issue 27.1: every row names its normalisation: the fc baselines L2 alone (Yoo T2)
    norms = {line.split("|")[1].strip(): line.rstrip(" |").rsplit("|", 1)[1].strip()
             for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert norms["CNN-Global"] == norms["AP50"] == norms["Alex-FC7"] == "L2"
    assert norms["CL-45"] == norms["MPP"] == "√+L2"
    assert norms["CL + CNN-Global"] == "√+L2 ⊕ L2"


def test_a_report_without_published_numbers_has_ours_only_and_its_own_notes(reproduce,
                                                                              tmp_path):
    """Issue 28.7: no empty paper/delta/reference columns, no AlexNet or Caffe-pyramid notes
    in the offline report; VOC07's report keeps them."""
    offline = reproduce.offline_setup(REPO / "data" / "flowers-demo")
    voc = reproduce.Setup("voc07", "voc07", tmp_path, "trainval", "test")
    texts = {}
    for setup in (offline, voc):
        rep = reproduce.Reproduction(setup, tmp_path / "work")
        results = {r.name: {"metrics": {"mAP": 0.5, "AP": [0.5] * 20}, "dim": 1, "C": 1.0}
                   for r in rep.rows.values()}
        texts[setup.name] = reproduce.write_report(rep, results, tmp_path / "r", "plan"
                                                   ).read_text()
    off = texts["flowers-demo"]
    assert "| row | ours | paper |" not in off and "not published" not in off
    assert "| row | ours | dims | C | normalisation |" in off and "| CL-45 | 50.00 | 1 |" in off
    assert "one weird trick" not in off and "227·√2^i with fc7" not in off
    assert "3 scales growing by √2" in off and "receptive-field centre" in off
    assert "| row | ours | paper |" in texts["voc07"] and "one weird trick" in texts["voc07"]


def test_the_spread_column_says_how_far_each_row_moved(reproduce, tmp_path):
    """Issue 30.1: with spreads, each row's table cell is max - min over the runs (its range
    when it moved), and the note names the rows that moved by more than one test image;
    without, no column and the report says it was not measured."""
    offline = reproduce.offline_setup(REPO / "data" / "flowers-demo")
    rep = reproduce.Reproduction(offline, tmp_path / "work")
    results = {r.name: {"metrics": {"metric": "accuracy", "top1": 0.9, "n_images": 100},
                        "dim": 1, "C": 1.0} for r in rep.rows.values()}
    spread = {r: {"min": 90.0, "max": 90.0} for r in results}
    spread["MPP"] = {"min": 88.0, "max": 90.0}
    spread["NFK"] = {"min": 89.0, "max": 90.0}
    text = reproduce.write_report(rep, results, tmp_path / "r", "plan", spread=spread,
                                  spread_configs=["capped"]).read_text()
    assert "| row | ours | spread | dims | C | normalisation |" in text
    assert "| MPP | 90.00 | 2.00 (88.00–90.00) | 1 |" in text
    assert "| NFK | 90.00 | 1.00 (89.00–90.00) | 1 |" in text
    assert "| CL-45 | 90.00 | 0 | 1 |" in text
    assert "ONEDNN_MAX_CPU_ISA=SSE41" in text
    assert "rows that moved by more than one: MPP (not explained yet)." in text
    plain = reproduce.write_report(rep, results, tmp_path / "r", "plan").read_text()
    assert "| spread |" not in plain and "not measured in this run" in plain


def _photos(root: Path) -> Path:
    """A tiny offline folder: train/ and test/ with two classes of generated photos."""
    from tests.conftest import class_folders

    for split, n in (("train", 4), ("test", 2)):
        class_folders(root / split, ("daisy", "tulips"), n, (80, 64), name=split + "{i}.png")
    return root


@pytest.mark.slow
def test_spread_reruns_the_run_under_each_configuration(reproduce, tmp_path):
    """Issue 30.1, wired end to end: --spread reruns the same rows in a child process under
    the configuration, in <work>/spread-NAME, and the report's spread cell is what the two
    runs' rows say."""
    import json

    (tmp_path / "empty").mkdir()
    res = _featx_reproduce(tmp_path / "empty", tmp_path, "--offline", str(_photos(tmp_path / "p")),
                           "--weights", "none", "--input-size", "64", "--only", "CNN-Global",
                           "--spread", "1-thread")
    assert res.exit_code == 0, res.output
    mine = next((tmp_path / "w").glob("flowers-demo-*/rows/cnn-global.json"))
    theirs = tmp_path / "w" / "spread-1-thread" / mine.parent.parent.name / "rows" / mine.name
    assert theirs.is_file()
    a, b = (100 * json.loads(p.read_text())["metrics"]["top1"] for p in (mine, theirs))
    cell = "0" if a == b else f"{abs(a - b):.2f} ({min(a, b):.2f}–{max(a, b):.2f})"
    assert f"| CNN-Global | {a:.2f} | {cell} |" in (tmp_path / "r" / "flowers-demo.md").read_text()
    assert "OMP_NUM_THREADS=1" in (tmp_path / "r" / "flowers-demo.md").read_text()



def test_a_resumed_run_reports_the_time_of_all_the_work_and_each_phase_planned_and_taken(
        reproduce, tmp_path):
    """Issue 28.7: the time table sums every run that made the work folder's rows (a resumed
    run added to, not replaced), and each phase's planned extraction stands beside what it
    took; durations below an hour in minutes, not 0.00 h."""
    setup = reproduce.offline_setup(REPO / "data" / "flowers-demo")
    rep = reproduce.Reproduction(setup, tmp_path / "work")
    rep.run.times, rep.run.phases = {"extract": 200.0, "encode": 4.0}, {"fc": 150.0}
    rep.record_times()
    again = reproduce.Reproduction(setup, tmp_path / "work")  # a resumed run
    again.run.times, again.run.phases = {"extract": 40.0}, {"pyr1": 40.0}
    again.record_times()
    assert again.times == {"stages": {"extract": 240.0, "encode": 4.0},
                           "phases": {"fc": 150.0, "pyr1": 40.0}}
    assert again.run.times == {} and again.run.phases == {}
    results = {r.name: {"metrics": {"metric": "accuracy", "top1": 0.9, "n_images": 100},
                        "dim": 1, "C": 1.0} for r in again.rows.values()}
    text = reproduce.write_report(again, results, tmp_path / "r", "plan", plan_rows=[
        {"phase": "fc", "seconds": 180.0}, {"phase": "cl45", "seconds": 5400.0},
        {"phase": "pyr1", "seconds": 30.0}]).read_text()
    assert "| extract | 240.0 |" in text and "| total | 244.0 |" in text
    assert "| fc | 3.0 min | 2.5 min |" in text and "| cl45 | 1.50 h | — |" in text
    assert "| pyr1 | 30 s | 40 s |" in text


def test_a_bare_spread_runs_every_configuration():
    """`featx reproduce --spread` without a value means every configuration there is."""
    from featx.cli.reproduce import reproduce as command
    from featx.reproduce.spread import CONFIGS

    option = next(p for p in command.params if p.name == "spread")
    assert option.flag_value.split(",") == list(CONFIGS)


def test_each_stage_under_reproduce_counts_what_its_command_counts(reproduce, monkeypatch):
    """Issue 38 (a newcomer trap): train-svm's progress counted `img` under reproduce and
    `class` on the command line; both take the stage's own unit now."""
    from contextlib import nullcontext

    from featx import api
    from featx.stages import stages

    units = []

    def bars(unit):
        units.append(unit)
        return nullcontext(None)

    for name in ("train_svm", "extract", "fit_guidance"):
        monkeypatch.setattr(api, name, lambda *a, progress=None, **k: None)
    runner = reproduce.Runner(bars)
    for stage in ("train-svm", "extract", "fit-guidance"):
        runner(stage, "in", "out")
    assert units == ["class", "img", "epoch"]
    assert units == [stages()[s].unit for s in ("train-svm", "extract", "fit-guidance")]


def test_the_report_links_the_pictures_it_drew_under_their_row(reproduce, tmp_path):
    """Issue 38 (a newcomer trap): the report did not link the pictures of
    <reports>/<setup>-maps; it links them now, relative to the report, under MPP."""
    setup = reproduce.offline_setup(REPO / "data" / "flowers-demo")
    reports = tmp_path / "r"
    rep = reproduce.Reproduction(setup, tmp_path / "work", maps_dir=reports / "flowers-demo-maps")
    (rep.maps_dir / "plots-mpp").mkdir(parents=True)
    (rep.maps_dir / "confidence").mkdir()
    (rep.maps_dir / "plots-mpp" / "confusion.png").write_bytes(b"png")
    for name in ("00001-dandelion_1", "00000-daisy_2"):
        (rep.maps_dir / "confidence" / f"{name}.png").write_bytes(b"png")
    results = {"MPP": {"metrics": {"metric": "accuracy", "top1": 0.9, "n_images": 100},
                       "dim": 10, "C": 1.0}}
    text = reproduce.write_report(rep, results, reports, "plan").read_text()
    assert ("- MPP: [its confusion matrix on the test split](flowers-demo-maps/plots-mpp/"
            "confusion.png); its SVM's confidence maps (Yoo et al. §4.5) of test photos: "
            "[00000-daisy_2](flowers-demo-maps/confidence/00000-daisy_2.png), "
            "[00001-dandelion_1](flowers-demo-maps/confidence/00001-dandelion_1.png).") in text
    for link in ("flowers-demo-maps/plots-mpp/confusion.png",
                 "flowers-demo-maps/confidence/00000-daisy_2.png"):
        assert (reports / link).is_file()
    bare = reproduce.Reproduction(setup, tmp_path / "work2")
    assert "## Pictures" not in reproduce.write_report(bare, results, tmp_path / "r2",
                                                       "plan").read_text()


def test_a_resumed_run_reports_the_plan_made_before_the_work(reproduce, tmp_path):
    """The report puts each phase's planned extraction beside what the work took over every
    run that made it; a resumed run's fresh calibration (of a machine busy or quiet now) is
    not that plan, so the first run's plan is kept in the work folder and reported."""
    setup = reproduce.offline_setup(REPO / "data" / "flowers-demo")
    first = reproduce.Reproduction(setup, tmp_path / "work")
    made = [{"phase": "fc", "seconds": 156.0}, {"phase": "cl45", "seconds": 18.0}]
    assert first.first_plan(made, "plan A") == (made, "plan A")
    again = reproduce.Reproduction(setup, tmp_path / "work")
    later = [{"phase": "fc", "seconds": 60.0}, {"phase": "cl45", "seconds": 24.0}]
    assert again.first_plan(later, "plan B") == (made, "plan A")
    other = [{"phase": "fc", "seconds": 60.0}]  # other phases (--only): a plan of its own
    assert again.first_plan(other, "plan C") == (other, "plan C")
