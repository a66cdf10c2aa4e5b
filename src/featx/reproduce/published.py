"""The papers' published numbers (../shared/PAPER_TABLES.md), each with the table it comes
from, for ``make reproduce`` to print beside ours.

``PUBLISHED[(row, dataset)] = (value in %, reference)``; datasets are featx's adapter names
(``cub200`` = the papers' Birds-200, bounding-box crops). ``NOT_RUN`` lists the published rows
featx does not reproduce, with the reason.
"""

from __future__ import annotations

LIU = "Liu et al. CVPR 2015"
YOO = "Yoo et al. arXiv 1412.1628"
_LIU_T = {"mit67": "T1", "cub200": "T2", "voc07": "T3", "h3d": "T4"}
_LIU_COLS = ("mit67", "cub200", "voc07", "h3d")
_YOO_T = {"mit67": "T3a", "voc07": "T4a", "flowers102": "T6a"}
_YOO_COLS = ("mit67", "voc07", "flowers102")

# Liu Tables 1-4: one table per dataset, same rows
_LIU_1_4 = {
    "CNN-Global": (57.9, 59.2, 71.7, 74.1),
    "CNN-Jitter": (61.1, 60.5, 75.0, 74.6),
    "CL-45": (64.6, 72.4, 72.6, 75.3),
    "CL-45F": (65.8, 68.4, 71.3, 70.7),
    "CL-45C": (68.8, 73.5, 75.0, 77.3),
    "CL + CNN-Global": (70.0, 72.4, 76.5, 78.1),
    "CL + CNN-Jitter": (71.5, 73.0, 77.8, 78.3),
}
_LIU_6 = {"CL-34": (61.7, 64.6, 66.3, 74.7), "CL-34F": (61.4, 61.4, 64.9, 70.4),
          "CL-34C": (64.1, 66.8, 68.5, 75.9), "CL-45C": (68.8, 73.5, 75.0, 77.3)}
_LIU_7 = {"Direct Max": (42.6, 52.7, 48.0, 61.1), "Direct Sum-sqrt": (48.4, 49.0, 51.3, 66.4),
          "SPP": (56.3, 59.5, 67.3, 73.1), "CL-single": (65.8, 72.4, 72.6, 75.3)}
_LIU_8 = {"Sign-quantised": (65.2, 71.1, 71.2, 75.4), "Original": (65.8, 72.4, 71.3, 75.3)}
_YOO = {
    "Alex-FC7": (57.91, 72.36, 81.43), "AP10": (60.90, 73.75, 83.40),
    "AP50": (60.37, 73.60, 83.56), "NFK": (71.49, 74.96, 88.44), "CSF": (72.24, 78.46, 89.35),
    "MPP": (75.67, 79.54, 91.28), "MPP + SP": (75.97, 79.29, 90.05),
    "MPP (FC7, Pool5)": (77.56, None, None),
}

# table id -> (title, {row: {dataset: (value, ref)}})
TABLES: dict[str, tuple[str, dict[str, dict[str, tuple[float, str]]]]] = {}


def _liu(table: str, title: str, rows: dict, per_dataset_ref: bool = False) -> None:
    TABLES[table] = (title, {
        row: {d: (v, f"{LIU} {_LIU_T[d] if per_dataset_ref else table}")
              for d, v in zip(_LIU_COLS, vals)} for row, vals in rows.items()})


_liu("liu-1-4", "Liu et al. Tables 1-4: cross-layer pooling against fc baselines", _LIU_1_4,
     per_dataset_ref=True)
_liu("T6", "Liu et al. Table 6: conv3/conv4 against conv4/conv5", _LIU_6)
_liu("T7", "Liu et al. Table 7: pooling schemes at one resolution (MIT-67: blocks)", _LIU_7)
_liu("T8", "Liu et al. Table 8: sign-quantised against original (Table 7's setting)", _LIU_8)
TABLES["yoo"] = ("Yoo et al. Tables 3a/4a/6a: fc7 baselines and multi-scale pooling", {
    row: {d: (v, f"{YOO} {_YOO_T[d]}") for d, v in zip(_YOO_COLS, vals) if v is not None}
    for row, vals in _YOO.items()})

# Yoo Table 5: VOC07 per-class AP (VOC class order), mAP last
YOO_T5 = {
    "Alex-FC7": (85.0, 79.7, 82.8, 80.4, 39.7, 69.3, 82.9, 81.7, 58.7, 57.8, 68.5, 75.9, 83.0,
                 72.5, 90.6, 51.7, 71.1, 60.8, 85.0, 70.5, 72.4),
    "AP10": (85.7, 80.8, 83.3, 80.7, 40.4, 71.5, 83.8, 82.7, 60.7, 60.5, 70.6, 79.0, 84.5, 75.0,
             91.3, 53.4, 70.1, 62.6, 86.5, 72.1, 73.7),
    "MPP": (90.2, 86.9, 86.6, 84.4, 54.0, 80.0, 87.9, 86.0, 63.4, 72.2, 75.7, 83.1, 87.8, 83.9,
            93.0, 64.8, 75.8, 69.6, 89.9, 75.9, 79.5),
}

NOT_RUN = {
    "R-CNN SCFV": "needs R-CNN region proposals (selective search) and 100 forwards an image; "
                  "not part of featx (Liu T1-4)",
    "SCFV": "Liu's sparse-coding FV baseline (T7) needs a sparse-coding dictionary; not in featx",
    "MPP + DSFL": "DSFL (Zuo et al.) is a separate discriminative-feature learner (Yoo T3a)",
    "MPP (CNNS-FC7)": "the CNN-S backbone (Chatfield et al.) has no weights featx can load",
    "MPP (CNNS-FC7, FC8)": "the CNN-S backbone, as above",
}

# a table's footnote, and the dataset it is about (a report prints it for that dataset only)
NOTES = {
    "T8": ("voc07", "The paper's VOC07 'original' (71.3) equals its CL-45F number, not the CL-45 "
                    "(72.6) that Table 7's setting names: the paper's own inconsistency, shown "
                    "as printed."),
    "liu-1-4": ("cub200", "Birds-200 'CL + CNN-Jitter' is printed as '73%' in the paper."),
    "yoo": ("mit67", "MIT-67 'MPP (FC7, Pool5)' is 77.56 in the table and 77.76 in the text."),
}


def published(row: str, dataset: str) -> list[tuple[str, float, str]]:
    """Every (table, value, reference) published for ``row`` on ``dataset``."""
    return [(t, cells[dataset][0], cells[dataset][1]) for t, (_, rows) in TABLES.items()
            for r, cells in rows.items() if r == row and dataset in cells]
