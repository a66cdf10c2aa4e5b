"""Every number docs/reproduce.md and docs/classify.md quote from a real-photo measurement
equals the committed printout or report it comes from (issue 23; the rule that a doc quotes
only checked numbers).

A quoting table names its source in each column header, in parentheses: ``(dev-224)`` is the
benchmark printout ``reports/real-photos/dev-224.txt`` (``python benchmarks/real_photos.py``),
``(flowers-demo.md)`` the offline report ``reports/flowers-demo.md``. Each cell of such a
column is the top-1 of its row there; in a printout of several classifiers a column headed by
a classifier's name (``logistic+std (classifiers-flowers)``) is that classifier's top-1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "reproduce.md"
DOCS = [DOC, REPO / "docs" / "classify.md"]
SOURCE = re.compile(r"\(([\w.-]+)\)")
CLASSIFIERS = ("hinge", "logistic", "logistic+std", "hinge+std")  # benchmarks/real_photos.py


def printout_rows(path: Path, column: str = "ours") -> dict[str, str]:
    """Row name -> top-1 as printed: a benchmark printout's table, or a report's tables
    (``column``: ours, or another column of the report's tables, e.g. spread)."""
    rows = {}
    head: list[str] = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if path.suffix == ".md":
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
                head = cells  # each table's own header
            elif head[:2] == ["row", "ours"] and column in head and len(cells) == len(head) \
                    and re.fullmatch(r"\d+\.\d+", cells[1]):
                rows.setdefault(cells[0], cells[head.index(column)])
        elif line.startswith("row "):
            head = line.split()  # a printout of several classifiers: row, each name, dims
        else:
            m = re.match(r"^(\S.*?)\s{2,}(\d+\.\d)\s", line)
            if m and column in head[1:]:  # that classifier's "top-1 (difference) C"
                cells = re.findall(r"(\d+\.\d) \(\s*[+-]\d+\.\d\)", line[len(m.group(1)):])
                # the probe's line has one top-1 and no difference to itself
                rows[m.group(1).strip()] = cells[head.index(column) - 1] if cells else m.group(2)
            elif m:
                rows[m.group(1).strip()] = m.group(2)
    return rows


def source_file(stem: str) -> Path:
    return REPO / "reports" / stem if stem.endswith(".md") else \
        REPO / "reports" / "real-photos" / f"{stem}.txt"


def quoting_tables(text: str):
    """(header cells, data rows) of every table with a source named in a header cell."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or i + 1 >= len(lines) or not lines[i + 1].startswith("|---"):
            continue
        head = [c.strip() for c in line.strip().strip("|").split("|")]
        if not any(SOURCE.search(h) for h in head[1:]):
            continue
        body = []
        for row in lines[i + 2:]:
            if not row.startswith("|"):
                break
            body.append([c.strip().strip("*") for c in row.strip().strip("|").split("|")])
        yield head, body


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_doc_quotes_real_photo_numbers_from_committed_printouts(doc):
    tables = list(quoting_tables(doc.read_text()))
    assert tables, f"docs/{doc.name} quotes no real-photo measurement"
    checked = 0
    for head, body in tables:
        for col, h in enumerate(head):
            m = SOURCE.search(h)
            if col == 0 or not m:
                continue
            source = source_file(m.group(1))
            assert source.is_file(), f"{h!r} names {source}, which is not committed"
            label = h.split("(")[0].strip()
            rows = printout_rows(source, "spread" if h.startswith("spread") else
                                 label if label in CLASSIFIERS else "ours")
            for cells in body:
                value = cells[col]
                if value in ("", "—"):
                    continue
                assert cells[0] in rows, f"{cells[0]!r} is not in {source.name}"
                assert value == rows[cells[0]], \
                    f"docs/{doc.name} quotes {cells[0]} = {value} from {source.name}, " \
                    f"which says {rows[cells[0]]}"
                checked += 1
    assert checked >= 10


@pytest.mark.parametrize("printout", sorted((REPO / "reports" / "real-photos").glob("*.txt")),
                         ids=lambda p: p.stem)
def test_each_committed_printout_is_a_whole_benchmark_run(printout):
    """Each printout says the command that made it and ends with its figures."""
    lines = printout.read_text().splitlines()
    assert lines[0].startswith("# made by: python benchmarks/")
    script = lines[0].split()[4]
    figure = {"benchmarks/real_photos.py": "figure: best_featx_minus_probe",
              "benchmarks/backbone_accuracy.py": "figure: efficientnet_lite0_top1"}[script]
    assert lines[-1].startswith(figure)


def test_backbones_doc_quotes_the_committed_top1_printout():
    """docs/backbones.md's Lite0 table is benchmarks/backbone_accuracy.py --ablate's printout."""
    lines = (REPO / "reports" / "real-photos" / "imagenet-top1.txt").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("efficientnet_lite0 "))
    lite, ablated = lines[i].split(), lines[i + 1].split()  # --ablate's line follows
    assert "ImageNet mean/std, bilinear" in lines[i + 1]
    featx, peer, differ = lite[2], lite[3], lite[4]
    wrong, wrong_differ = ablated[-2], ablated[-1]
    doc = (REPO / "docs" / "backbones.md").read_text()
    assert f"| featx, the weights' preprocessing (mean/std 0.5, bicubic) | {featx} | {differ} |" \
        in doc
    assert f"| timm's own transform and network (peer) | {peer} | — |" in doc
    assert f"| featx before issue 23 (ImageNet mean/std, bilinear) | {wrong} | {wrong_differ} |" \
        in doc


def test_the_reports_reason_for_scheme_2_quotes_the_committed_printout():
    """featx.reproduce.spread.WHY says how far the guidance moves; the number is the
    printout's (benchmarks/guidance_stability.py)."""
    from featx.reproduce.spread import WHY

    lines = (REPO / "reports" / "benchmarks" / "guidance-stability.txt").read_text().splitlines()
    assert lines[0].startswith("# made by: python benchmarks/guidance_stability.py")
    figure = next(ln for ln in lines if ln.startswith("figure: guidance_moved_1_thread"))
    moved = figure.split("=")[1].split()[0]
    assert f"{moved}% away" in WHY["Scheme 2 (trained guidance)"]


def test_the_plan_against_the_time_taken_is_the_committed_reports():
    """docs/reproduce.md quotes the offline report's fc phase, planned and taken, and how
    close the other phases came: both from reports/flowers-demo.md's table."""
    doc = " ".join(DOC.read_text().split())
    m = re.search(r"fc (\d+\.\d) min planned, (\d+\.\d) taken; the others within (\d+)%", doc)
    assert m, "docs/reproduce.md no longer quotes the plan's accuracy"
    report = (REPO / "reports" / "flowers-demo.md").read_text()
    assert f"| fc | {m[1]} min | {m[2]} min |" in report

    def seconds(cell: str) -> float:
        value, unit = cell.split()
        return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]

    rows = [line.strip("|").split("|") for line in report.splitlines()
            if re.match(r"\| (cl|pyr)\w* \| ", line)]
    assert rows
    for _, planned, took in rows:
        assert abs(seconds(planned) / seconds(took) - 1) <= int(m[3]) / 100, (planned, took)
