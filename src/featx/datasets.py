"""Dataset adapters: the standard benchmarks in their real on-disk layouts, as image sources.

Each adapter returns an :class:`~featx.images.ImageSource` whose records carry the image id,
path and labels, with the class names and split, so ids and labels travel inside the shards and
later stages never need the dataset again. A missing or malformed file gets an error naming it.
(torchvision.datasets reads two of the five benchmarks, VOC without a class's 'difficult'
label: docs/architecture.md, "Hand-written, on purpose".)

| name | root | splits | labels |
|---|---|---|---|
| ``voc07`` | ``VOCdevkit/VOC2007`` (JPEGImages, ImageSets/Main/<class>_<split>.txt) | train, val, trainval, test | 20 x {1, -1, 0} (0 = difficult) |
| ``mit67`` | Images/<class>/..., TrainImages.txt, TestImages.txt | train, test | class index |
| ``cub200`` | ``CUB_200_2011`` (images.txt, train_test_split.txt, image_class_labels.txt, classes.txt, bounding_boxes.txt) | train, test | class index |
| ``flowers102`` | jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat | train, val, trainval, test | class index |
| ``h3d`` | <split>/labels.txt (``name x y w h a1..a9``), <split>/<name> (Bourdev et al.'s attributes of people) | train, test | 9 x {1, -1, 0} (0 = unspecified) |
| ``folder`` | <root>/[<split>/]<class>/<images>, or a CSV of path,label[,label...] | any | class index, or multi-label {1, -1} |
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from featx.configs import DATASETS as DATASET_NAMES
from featx.errors import InputError
from featx.images import IMAGE_SUFFIXES, ImageRecord, ImageSource, is_image_path
from featx.images import report_ignored

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]


def _need(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"dataset file {path} is missing")
    return path


def _lines(path: Path) -> list[list[str]]:
    return [ln.split() for ln in _need(path).read_text().splitlines() if ln.strip()]


def _check_split(name: str, split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise InputError(f"{name} has splits {', '.join(valid)}, not {split!r}")


def voc07(root: str | Path, split: str = "trainval", **_) -> ImageSource:
    root = Path(root)
    _check_split("voc07", split, ("train", "val", "trainval", "test"))
    labels: dict[str, list[int]] = {}
    for c, name in enumerate(VOC_CLASSES):
        path = root / "ImageSets" / "Main" / f"{name}_{split}.txt"
        for row in _lines(path):
            if len(row) != 2 or row[1] not in ("1", "-1", "0"):
                raise InputError(f"{path}: malformed line {' '.join(row)!r} (want 'id label', "
                                 "label 1, -1 or 0)")
            labels.setdefault(row[0], [-1] * len(VOC_CLASSES))[c] = int(row[1])
    records = [ImageRecord(i, str(_need(root / "JPEGImages" / f"{i}.jpg")), tuple(lab))
               for i, lab in sorted(labels.items())]
    return ImageSource(records, VOC_CLASSES, split, f"voc07 {split} in {root}")


def mit67(root: str | Path, split: str = "train", **_) -> ImageSource:
    root = Path(root)
    _check_split("mit67", split, ("train", "test"))
    listing = root / ("TrainImages.txt" if split == "train" else "TestImages.txt")
    names = [row[0] for row in _lines(listing)]
    classes = sorted({n.split("/")[0] for n in names} |
                     {p.name for p in (root / "Images").iterdir() if p.is_dir()}
                     if (root / "Images").is_dir() else {n.split("/")[0] for n in names})
    index = {c: i for i, c in enumerate(classes)}
    records = []
    for n in names:
        if "/" not in n:
            raise InputError(f"{listing}: malformed line {n!r} (want class/file.jpg)")
        records.append(ImageRecord(n, str(_need(root / "Images" / n)), index[n.split("/")[0]]))
    return ImageSource(records, classes, split, f"mit67 {split} in {root}")


def cub200(root: str | Path, split: str = "train", crop: bool = False, **_) -> ImageSource:
    root = Path(root)
    _check_split("cub200", split, ("train", "test"))
    images = {row[0]: row[1] for row in _lines(root / "images.txt")}
    is_train = {row[0]: row[1] == "1" for row in _lines(root / "train_test_split.txt")}
    label = {row[0]: int(row[1]) - 1 for row in _lines(root / "image_class_labels.txt")}
    classes = [row[1] for row in sorted(_lines(root / "classes.txt"), key=lambda r: int(r[0]))]
    boxes = {}
    if crop:
        boxes = {row[0]: tuple(float(v) for v in row[1:5])
                 for row in _lines(root / "bounding_boxes.txt")}
    records = []
    for key, rel in sorted(images.items(), key=lambda kv: int(kv[0])):
        if key not in is_train or key not in label:
            raise InputError(f"image {key} of {root / 'images.txt'} has no split or class")
        if is_train[key] != (split == "train"):
            continue
        box = None
        if crop:
            x, y, w, h = boxes[key]
            box = (x, y, x + w, y + h)
        records.append(ImageRecord(rel, str(_need(root / "images" / rel)), label[key], box))
    return ImageSource(records, classes, split, f"cub200 {split} in {root}"
                       + (" (bounding-box crops)" if crop else ""))


def flowers102(root: str | Path, split: str = "train", **_) -> ImageSource:
    from scipy.io import loadmat

    root = Path(root)
    _check_split("flowers102", split, ("train", "val", "trainval", "test"))
    try:
        labels = loadmat(_need(root / "imagelabels.mat"))["labels"].ravel()
        setid = loadmat(_need(root / "setid.mat"))
    except (ValueError, KeyError, OSError) as exc:
        raise InputError(f"cannot read flowers102 .mat files in {root}: {exc}") from exc
    keys = {"train": ["trnid"], "val": ["valid"], "test": ["tstid"], "trainval": ["trnid", "valid"]}
    ids = sorted(int(i) for k in keys[split] for i in setid[k].ravel())
    records = [ImageRecord(f"image_{i:05d}.jpg", str(_need(root / "jpg" / f"image_{i:05d}.jpg")),
                           int(labels[i - 1]) - 1) for i in ids]
    return ImageSource(records, [str(c) for c in range(1, 103)], split,
                       f"flowers102 {split} in {root}")


H3D_ATTRIBUTES = ["is_male", "has_long_hair", "has_glasses", "has_hat", "has_t-shirt",
                  "has_long_sleeves", "has_shorts", "has_jeans", "has_long_pants"]


def h3d(root: str | Path, split: str = "train", crop: bool = False, **_) -> ImageSource:
    """The attributes-of-people data set (Bourdev, Maji, Malik, ICCV 2011; Liu et al.'s
    "H3D", Table 4) as distributed: ``<split>/labels.txt`` with one line per person,
    ``NAME X Y W H A1 .. A9`` (the person's box, NaN when unknown; 9 attributes in 1 / -1 /
    0 = unspecified, left out of training and of AP like VOC's difficult), the images beside
    it. ``crop`` crops each image to its box where there is one."""
    root = Path(root)
    _check_split("h3d", split, ("train", "test"))
    listing = root / split / "labels.txt"
    records = []
    for row in _lines(listing):
        if len(row) != 5 + len(H3D_ATTRIBUTES) or any(v not in ("1", "-1", "0") for v in row[5:]):
            raise InputError(f"{listing}: malformed line {' '.join(row)!r} (want 'NAME X Y W H' "
                             f"and {len(H3D_ATTRIBUTES)} labels in 1, -1, 0)")
        try:
            x, y, w, h = (float(v) for v in row[1:5])
        except ValueError:
            raise InputError(f"{listing}: malformed box in {' '.join(row)!r}") from None
        box = (x, y, x + w, y + h) if crop and all(v == v for v in (x, y, w, h)) else None
        records.append(ImageRecord(row[0], str(_need(root / split / row[0])),
                                   tuple(int(v) for v in row[5:]), box))
    return ImageSource(records, list(H3D_ATTRIBUTES), split, f"h3d {split} in {root}"
                       + (" (person-box crops)" if crop else ""))


# folder names that are a dataset's splits, not its classes
SPLIT_NAMES = ("test", "train", "trainval", "val", "validation")


def folder(root: str | Path, split: str = "", **_) -> ImageSource:
    """Class sub-folders (under ``root/split`` when a split is given: refused when that folder
    does not exist), or a CSV path,label[,label] (one split a file: no ``split``). Without a
    split, a root whose folders look like splits (two or more of :data:`SPLIT_NAMES`, or
    nothing else) is refused; ``split="none"`` reads them as classes all the same."""
    root = Path(root)
    as_classes = split == "none"
    split = "" if as_classes else split
    if root.is_file():
        return _csv(root, split)
    if not root.is_dir():
        raise InputError(f"dataset folder {root} is missing")
    base = root / split if split else root
    if split and not base.is_dir():
        # never fall back to the root: its split folders would be read as classes
        folders = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise InputError(f"{root} has no split folder {split!r}; its folders are "
                         f"{', '.join(folders) or 'none'} (without --split they are read as "
                         "class folders)")
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if not classes:
        raise InputError(f"{base} has no class sub-folders")
    looks = [c for c in classes if c in SPLIT_NAMES]
    if not split and not as_classes and (len(looks) >= 2 or looks == classes):
        raise InputError(f"{root}'s folders look like splits ({', '.join(looks)}): pass "
                         "--split NAME, or --split none to read them as classes")
    files = [(c, p) for c, name in enumerate(classes) for p in sorted((base / name).rglob("*"))
             if not p.is_dir()]
    records = [ImageRecord(p.relative_to(base).as_posix(), str(p), c) for c, p in files
               if is_image_path(p)]
    report_ignored(base, [p for _, p in files if p.suffix.lower() not in IMAGE_SUFFIXES])
    return ImageSource(records, classes, split, f"folder {base}")


def _csv(path: Path, split: str) -> ImageSource:
    if split:  # a CSV lists one split: a --split would only relabel all of it
        raise InputError(f"{path} is one CSV of path,label rows with no split column; --split "
                         f"{split} cannot pick rows from it: give each split its own CSV and "
                         "no --split")
    # utf-8-sig: a spreadsheet's CSV starts with a byte-order mark, which would otherwise
    # make its header's "path" the invisible "\ufeffpath", read as an image and its label a class
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r and not r[0].startswith("#")]
    if rows and rows[0][0].strip().lower() == "path":
        rows = rows[1:]
    bad = [r for r in rows if len(r) < 2 or not any(x.strip() for x in r[1:])]
    if bad:
        raise InputError(f"{path}: line {bad[0]!r} needs path,label[,label...]")
    classes = sorted({lab.strip() for r in rows for lab in r[1:] if lab.strip()})
    index = {c: i for i, c in enumerate(classes)}
    multi = any(len([x for x in r[1:] if x.strip()]) > 1 for r in rows)
    records = []
    for r in rows:
        p = Path(r[0].strip())
        p = p if p.is_absolute() else path.parent / p
        names = [x.strip() for x in r[1:] if x.strip()]
        if multi:
            lab = [-1] * len(classes)
            for n in names:
                lab[index[n]] = 1
            labels = tuple(lab)
        else:
            labels = index[names[0]]
        records.append(ImageRecord(r[0].strip(), str(p), labels))
    return ImageSource(records, classes, split, f"csv {path}")


DATASETS: dict[str, Callable[..., ImageSource]] = {
    "voc07": voc07, "mit67": mit67, "cub200": cub200, "flowers102": flowers102, "h3d": h3d,
    "folder": folder,
}
if tuple(DATASETS) != DATASET_NAMES:  # what the command line offers without loading this
    raise RuntimeError("featx.configs.DATASETS must list featx.datasets.DATASETS, in order")


def open_dataset(name: str, root: str | Path, split: str, **options) -> ImageSource:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if not Path(root).exists():
        raise InputError(f"dataset root {root} does not exist")
    return DATASETS[name](root, split, **options)
