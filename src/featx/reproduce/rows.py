"""What the reproduction runs: a benchmark's settings (:class:`Setup`), the benchmarks found
under a data folder, the offline run on the shipped photos, and every row of the papers' tables
that featx computes (:func:`rows_of`), grouped in phases that share activations."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from featx.errors import FeatxError, InputError

@dataclass
class Setup:
    name: str
    dataset: str
    root: Path
    train: str
    test: str
    backbone: str = "alexnet"
    weights: str = "imagenet"
    input_size: int | None = None
    # cross-layer pairs: the paper's conv4->conv5 ("45") and conv3->conv4 ("34")
    pairs: dict = field(default_factory=lambda: {"45": ("conv4", "conv5"),
                                                 "34": ("conv3", "conv4")})
    subarray: dict = field(default_factory=lambda: {"45": 3, "34": 3})
    fc_layer: str = "fc7"
    pyramid_layers: tuple = ("fc7", "pool5")  # MPP's layer, and the second of MPP (FC7, Pool5)
    scales: int = 7
    cl_dim: int = 500
    fv_dim: int = 128
    components: int = 256
    pca_vectors: int = 100_000  # local features the cross-layer PCA is fitted on
    gmm_vectors: int = 256_000  # as Yoo
    pyramid_sample: int = 256  # images whose unprojected pyramids the pyramid PCA sees
    crops: int = 5  # AP50: 5 x 5 crops and their mirrors
    guidance_channels: int = 64  # scheme 2: K of the trained guidance layer
    guidance_epochs: int = 30
    # scheme 2 trains on the smallest 6 of 7 scales: fit-guidance holds its training vectors in
    # memory (n x 1,917 regions x 128-d in float16 = 2.5 GB for VOC07 trainval; all 7 scales,
    # 4,417 regions, would be 5.7 GB on top of the stage's own)
    guidance_scales: int = 6
    C: str = "auto"
    # Liu §4.1: "For all datasets except H3D, we set M = N = 2 and we set M = 2, N = 1 for H3D"
    blocks: str = "2x2"
    # the fc baselines' normalisation: None is their paper's (L2 alone, Yoo et al. Table 2);
    # True adds the signed square root (featx's earlier default for them)
    fc_power: bool | None = None
    memory_gb: float = 2.0
    extra: list = field(default_factory=list)
    note: str = ""

    def key(self) -> str:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()
             if k not in ("note", "name")}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]


def benchmarks(data: Path) -> list[Setup]:
    found = []
    if (data / "VOCdevkit" / "VOC2007" / "ImageSets").is_dir():
        found.append(Setup("voc07", "voc07", data / "VOCdevkit" / "VOC2007", "trainval", "test"))
    if (data / "mit67" / "TrainImages.txt").is_file():
        found.append(Setup("mit67", "mit67", data / "mit67", "train", "test"))
    if (data / "CUB_200_2011" / "images.txt").is_file():
        found.append(Setup("cub200", "cub200", data / "CUB_200_2011", "train", "test",
                           extra=["--crop-boxes"]))
    if (data / "flowers102" / "setid.mat").is_file():
        found.append(Setup("flowers102", "flowers102", data / "flowers102", "trainval", "test"))
    if (data / "attributes_dataset" / "train" / "labels.txt").is_file():
        found.append(Setup("h3d", "h3d", data / "attributes_dataset", "train", "test",
                           blocks="2x1"))
    return found


# The offline backbone's default cross-layer pair (see docs/reproduce.md, "the offline pair")
OFFLINE_PAIRS = {"45": ("stage6", "stage7"), "34": ("stage4", "stage5")}


def offline_setup(data: Path) -> Setup:
    """The offline run: the shipped flower photos (or the photos in ``data``, laid out as
    they are: train/ and test/ of class folders) with the offline backbone. Its settings were
    chosen on the disjoint 500-photo development set (benchmarks/real_photos.py; the table
    in docs/reproduce.md, "Offline defaults"); the report's note describes the photos run."""
    return Setup(
        "flowers-demo", "folder", data, "train", "test",
        backbone="efficientnet_lite0", input_size=224, pairs=dict(OFFLINE_PAIRS),
        subarray={"45": 3, "34": 5}, fc_layer="pool", pyramid_layers=("head", "stage7"),
        scales=3, cl_dim=128, fv_dim=32, components=16, pca_vectors=20_000, gmm_vectors=40_000,
        pyramid_sample=100, crops=3, guidance_channels=16,
        note=SHIPPED_NOTE if _shipped(Path(data)) else _photos_note(data))


def _shipped(data: Path) -> bool:
    """Whether ``data`` is the shipped flower photos (data/flowers-demo, credited)."""
    return data.name == "flowers-demo" and (data / "ATTRIBUTION.txt").is_file()


def _photos_note(data: Path) -> str:
    """The offline report's note for photos other than the shipped ones: what they are."""
    from featx.datasets import open_dataset

    try:
        train, test = (open_dataset("folder", data, split) for split in ("train", "test"))
    except FeatxError as exc:  # not laid out as train/ and test/: the plan says what is wrong
        return f"Offline run on the photos in {data} ({exc})."
    n, m = len(train.records), len(test.records)
    return (f"Offline run: no benchmark dataset was found, so this is the chain on the "
            f"{n + m} photos in {data} ({len(train.classes)} classes: "
            f"{', '.join(train.classes)}; {n} training and {m} test photos) "
            "with the offline EfficientNet-Lite0 backbone at its own 224x224 input and "
            "preprocessing, under the settings chosen for the shipped flower photos. Layer "
            "names stand in for the paper's: 'CL-45' is the pair stage6->stage7, 'CL-34' "
            "stage4->stage5, fc7 is `pool`, the pyramid is `head` (and `stage7` for the "
            "'Pool5' part), AP50 uses 3x3 crops.")


SHIPPED_NOTE = ("Small offline run: no benchmark dataset was found, so this is the chain on 250 "
                "real photos shipped in data/flowers-demo (5 flower classes, 30 training + 20 "
                "test photos a class, from TensorFlow's flower_photos, CC BY 2.0: the "
                "photographers are credited in data/flowers-demo/ATTRIBUTION.txt) with the "
                "offline EfficientNet-Lite0 backbone at its own 224x224 input and preprocessing. "
                "The papers report no numbers for it; with 100 test photos one photo is one "
                "point, so rows closer than a few points are not told apart. Layer names "
                "stand in for the paper's: 'CL-45' is the pair stage6->stage7, 'CL-34' "
                "stage4->stage5, fc7 is `pool`, the pyramid is `head` (and `stage7` for the "
                "'Pool5' part), AP50 uses 3x3 crops.")


@dataclass
class Row:
    """A row of the papers' tables: its phase (the activations it reads), what
    :func:`featx.encode` takes for it (``"@guidance"``: the phase's model of that name), or
    the rows it joins, or the row it is another name of."""

    name: str
    phase: str = ""
    encode: dict = field(default_factory=dict)
    join: tuple = ()
    alias: str = ""


def rows_of(s: Setup) -> list[Row]:
    """Every row featx computes for setup ``s``, in phase order."""
    single = "blocks" if s.dataset == "mit67" else "whole"  # Liu Table 7's setting

    def cl(views: str, **more) -> dict:
        return {"method": "cross-layer", "views": views, **more}

    rows = [
        Row("CNN-Global", "fc", {"method": "global"}),
        Row("CNN-Jitter", "fc", {"method": "jitter"}),
        Row("AP10", alias="CNN-Jitter"),
        Row("Alex-FC7", "fc", {"method": "centre"}),
        Row("AP50", "fc", {"method": "crops"}),
        Row("CL-45", "cl45", cl("whole")),
        Row("CL-45F", "cl45", cl("blocks")),
        Row("CL-45C", "cl45", cl("whole,blocks")),
        Row("CL + CNN-Global", "cl45", join=("CL-45C", "CNN-Global")),
        Row("CL + CNN-Jitter", "cl45", join=("CL-45C", "CNN-Jitter")),
        Row("Direct Max", "cl45", {"method": "max", "views": single}),
        Row("Direct Sum-sqrt", "cl45", {"method": "sum-sqrt", "views": single}),
        Row("SPP", "cl45", {"method": "spp", "views": single}),
        Row("CL-single", alias="CL-45F" if single == "blocks" else "CL-45"),
        Row("Original", alias="CL-single"),
        # Liu §4.3.3's sign(P) as it is; and read back at unit L2 norm (featx's --quantize sign)
        Row("Sign-quantised", "cl45", cl(single, quantize="sign-raw")),
        Row("Sign-quantised (unit norm)", "cl45", cl(single, quantize="sign")),
        Row("CL-34", "cl34", cl("whole")),
        Row("CL-34F", "cl34", cl("blocks")),
        Row("CL-34C", "cl34", cl("whole,blocks")),
        Row("MPP", "pyr1", {"method": "mpp"}),
        Row("NFK", "pyr1", {"method": "nfk"}),
        Row("CSF", "pyr1", {"method": "csf"}),
        Row("MPP + SP", "pyr1", {"method": "mpp-sp"}),
        # Liu et al. 2016, scheme 2: cross-layer pooling of the fc pyramid's region features
        # under a trained guidance layer, and under the same layer untrained (the control)
        Row("Scheme 2 (trained guidance)", "pyr1", {"method": "cross-layer-guided",
                                                     "guidance": "@guidance"}),
        Row("Scheme 2 (random guidance)", "pyr1", {"method": "cross-layer-guided",
                                                    "guidance": "@guidance-random"}),
        Row("MPP (Pool5)", "pyr2", {"method": "mpp"}),
        Row("MPP (FC7, Pool5)", "pyr2", join=("MPP", "MPP (Pool5)")),
    ]
    # a cross-layer phase runs where the setup has its pair (AlexNet's conv3/conv4: offline too)
    return [r for r in rows if r.phase not in PHASE or PHASE[r.phase].kind != "cross-layer"
            or PHASE[r.phase].pair in s.pairs]  # an alias row has no phase of its own


@dataclass(frozen=True)
class Phase:
    """One extraction a reproduction runs, and the models fitted on it, shared by its rows.

    ``kind``: ``fc`` (the fc baselines' grid views), ``cross-layer`` (a pair's maps of the
    whole image and its blocks, and their PCA) or ``pyramid`` (dense vectors over the scales,
    their PCA and GMM); ``pair`` the cross-layer pair's key in :attr:`Setup.pairs`; ``level``
    which of :attr:`Setup.pyramid_layers`; ``guidance``: scheme 2's guidance layers are fitted
    on it; ``maps``: the confidence maps are drawn from its activations (the MPP row's);
    ``kept``: the plan counts its encodings as kept for the joins (CL-45C); ``pca``: the
    report's words for its PCA ({} the local features, {} the images)."""

    name: str
    kind: str
    pair: str = ""
    level: int = 0
    guidance: bool = False
    maps: bool = False
    kept: bool = False
    pca: str = ""


PHASE: dict[str, Phase] = {p.name: p for p in (
    Phase("fc", "fc"),
    Phase("cl45", "cross-layer", pair="45", kept=True,
          pca="the CL-45 PCA on {:,} local features of {:,} images"),
    Phase("cl34", "cross-layer", pair="34",
          pca="the CL-34 PCA on {:,} local features of {:,} images"),
    Phase("pyr1", "pyramid", level=0, guidance=True, maps=True,
          pca="the pyramid PCA on {:,} vectors of {:,} sampled images"),
    Phase("pyr2", "pyramid", level=1,
          pca="the pool5 pyramid's PCA on {:,} vectors of {:,} sampled images"),
)}
PHASES = tuple(PHASE)  # in the order a run takes them


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def backbone_defaults(name: str) -> dict:
    """Settings of another backbone: its cross-layer pair (no conv3/conv4 pair unless it is an
    AlexNet) and fc layer."""
    from featx.backbones import get_backbone

    bb = get_backbone(name)
    if name.startswith("alexnet"):
        return {"backbone": name}
    if name == "efficientnet_lite0":
        return {"backbone": name, "pairs": dict(OFFLINE_PAIRS), "subarray": {"45": 3, "34": 5},
                "fc_layer": "pool", "pyramid_layers": ("head", "stage7")}
    if bb.cross_layer is None:
        raise InputError(f"{name} has no cross-layer pair; pick a CNN backbone")
    guide = bb.cross_layer[1]
    return {"backbone": name, "pairs": {"45": bb.cross_layer},
            "subarray": {"45": bb.kernels.get(guide, 1)},
            "fc_layer": "fc7" if "fc7" in bb.layers else "pool",
            "pyramid_layers": tuple((bb.fc_conv and list(bb.fc_conv[1])[-1:]) or ["pool"]) * 2}
