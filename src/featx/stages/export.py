"""The export stage: a trained SVM and the chain that made its encodings -> one classifier
bundle (:mod:`featx.io.bundle`), which ``featx predict`` runs on new photos.

The chain is read back from provenance: the SVM records the folders of its training
encodings; an encoding shard records its encode settings, the paths and digests of the model
files it read, and the signature of the extraction it came from. Every model file is checked
against the digest the encodings (or the GMM / guidance) record: a file replaced since is
refused by name, so a bundle can only hold the chain the SVM was trained on.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featx.configs import ExportConfig  # noqa: F401 (re-exported)
from featx.digest import file_digest
from featx.errors import InputError, ProvenanceError
from featx.io import EXTRACTION_SIGNATURE, load_svm, read_header, save_bundle, shard_paths
from featx.io import load_model as load_model_file, model_kind
from featx.io.provenance import ENCODING_KEYS
from featx.stages import FILE, Output, Stage

log = logging.getLogger(__name__)

# the encode settings a bundle carries (EncodeConfig's fields, as the encodings record them)
_ENCODE = ("methods", "views", "power_norm", "l2", "quantize", "dtype")


class Export(Stage):
    """Write the bundle of ``cfg.model`` and its chain to the output file."""

    name, output, polls = "export", FILE, False

    def plan(self, inputs: Any = None) -> tuple[dict, dict[str, Path]]:
        cfg = self.cfg
        _, _, mattrs = load_svm(cfg.model)
        folders = list(cfg.encodings or mattrs.get("encodings") or [])
        if not folders:
            raise InputError(f"{cfg.model} does not record the encodings it was trained on "
                             "(an SVM of an earlier featx): pass --encodings with their folder")
        head = read_header(shard_paths(folders)[0])
        if head.get("kind") != "encodings":
            raise InputError(f"{folders[0]} holds {head.get('kind')!r}, not encodings")
        where = f"the encodings in {folders[0]}"
        for key in ENCODING_KEYS:
            if head.get(key) != mattrs.get(key):
                raise ProvenanceError(f"{where} have {key}={head.get(key)!r}, {cfg.model} was "
                                      f"trained on {key}={mattrs.get(key)!r}: pass --encodings "
                                      "with the ones it was trained on")
        if head.get("joined"):
            raise InputError(f"{cfg.model} was trained on joined encodings (featx join of "
                             f"{len(head['joined'])} parts): export takes a model of one "
                             "encode run (extract + encode, or extract --encode)")
        extraction = _extraction(head, where)
        files = {"svm": Path(cfg.model)}
        files.update(_model_files(cfg, head, extraction, where))
        weights_arg, weights_sha = _weights(cfg, head, extraction, mattrs)
        encode = {k: head[k] for k in _ENCODE if k in head}
        encode["layers"] = [head["local_layer"], head["guide_layer"]] \
            if head.get("local_layer") and head.get("guide_layer") else None
        encode["fc_layer"] = head.get("fc_layer") or None
        encode["pca"] = bool(head.get("pca_sha256"))  # given to encode (else: the GMM's own)
        recipe = {
            "backbone": head["backbone"], "weights": head["weights"],
            "weights_arg": weights_arg, "weights_sha256": weights_sha,
            "seed": int(head.get("seed") or 0), "extraction": extraction, "encode": encode,
            "classes": mattrs["classes"], "multilabel": bool(mattrs.get("multilabel")),
            "probability": mattrs.get("probability") or "",
            "svm": {k: mattrs.get(k) for k in ("C", "loss", "solver", "multiclass", "n_train",
                                                "train_split", "standardize")},
            "encoding": {k: mattrs.get(k) for k in ENCODING_KEYS},
        }
        return recipe, files

    def inputs_of(self, plan) -> list[Path]:
        return list(plan[1].values())

    def work(self, plan, out: Output) -> Iterator[Path]:
        recipe, files = plan
        yield save_bundle(out.path, recipe, files, out.provenance(
            model=str(Path(self.cfg.model).resolve()),
            model_sha256=file_digest(self.cfg.model)))
        log.info("exported %s: %s on %s %s, %d classes, files %s", out.path,
                 "+".join(recipe["encode"]["methods"]), recipe["backbone"],
                 ",".join(recipe["extraction"]["layers"]), len(recipe["classes"]),
                 ", ".join(files))


def run(out: str | Path, cfg: ExportConfig, **kw) -> list[Path]:
    """:meth:`Export.run`: the bundle of ``cfg.model`` written to ``out``."""
    return Export(cfg).run(None, out, **kw)


def _extraction(head: dict, where: str) -> dict:
    """The signature of the extraction the encodings came from: recorded in them (featx
    >= 0.1's encode and the fused pass), else read from the activation shard they name."""
    ext = head.get("extraction")
    if not ext:
        source = head.get("source") or ""
        if not (isinstance(source, str) and Path(source).is_file()):
            raise InputError(f"{where} do not record their extraction, and the activations "
                             f"they name ({source or 'none'}) are gone: encode them again "
                             "with this featx")
        ext = read_header(source)
    missing = [k for k in EXTRACTION_SIGNATURE if k not in ext]
    if missing:
        raise InputError(f"{where} record an incomplete extraction (no {missing[0]}): encode "
                         "them again with this featx")
    return {k: ext[k] for k in EXTRACTION_SIGNATURE}


def _model_files(cfg: ExportConfig, head: dict, extraction: dict, where: str
                 ) -> dict[str, Path]:
    """{role: file} of every model the chain read, each checked by digest."""
    files: dict[str, Path] = {}
    for role in ("pca", "gmm", "guidance"):
        want = head.get(f"{role}_sha256") or ""
        if want:
            files[role] = _file(role, getattr(cfg, role), head.get(role) or "", want, where)
    # a GMM / guidance fitted on PCA-reduced pyramid vectors reads its own PCA when encode
    # was given none, and extract --project's PCA made the vectors it was fitted on
    for role in ("gmm", "guidance"):
        if role not in files:
            continue
        fitted = _attrs(files[role])
        digest = fitted.get("pca_sha256") or ""
        if not digest:
            continue
        if extraction.get("projected") == digest:
            files["project"] = _file("project", cfg.project, fitted.get("pca") or "",
                                     digest, f"{files[role]} (fitted on projected vectors)")
        elif "pca" not in files:
            files["pca"] = _file("pca", cfg.pca, fitted.get("pca") or "", digest,
                                 str(files[role]))
        elif file_digest(files["pca"]) != digest:
            raise ProvenanceError(f"{files[role]} was fitted on features reduced by another "
                                  f"PCA (sha256 {digest}) than {files['pca']}")
    if extraction.get("projected") and "project" not in files:
        files["project"] = _file("project", cfg.project, "", extraction["projected"], where)
    return files


def _attrs(path: Path) -> dict:
    """The attributes of a model file (read by its kind's loader, with its checks)."""
    return load_model_file(path)[1]


def _file(role: str, given: str | None, recorded: str, digest: str, who: str) -> Path:
    """The ``role`` model file whose digest is ``digest``: ``given`` (the option), else the
    path ``recorded``; refused when missing or not that file."""
    option = "--project" if role == "project" else f"--{role}"
    path = given or recorded
    if not path or not Path(path).is_file():
        raise InputError(f"the {role} file {who} used (sha256 {digest}) is not at "
                         f"{recorded or 'a recorded path'}: pass it with {option}")
    found = file_digest(path)
    if found != digest:
        raise ProvenanceError(f"{path} has sha256 {found}, but the {role} file {who} used "
                              f"has sha256 {digest} (was it replaced since?): pass that one "
                              f"with {option}")
    if role != "project" and model_kind(path) != role:
        raise InputError(f"{path} is not a {role} model")
    return Path(path)


_SHA = re.compile(r"\(sha256 ([0-9a-f]{16})\)$")


def _weights(cfg: ExportConfig, head: dict, extraction: dict, mattrs: dict) -> tuple[str, str]:
    """(weights argument, digest): ``imagenet`` / ``none`` as they are; weights from a
    state-dict file as ``file`` and its digest, checked against ``cfg.weights`` when given."""
    desc = head["weights"]
    if desc.startswith("imagenet"):
        return "imagenet", ""
    if desc.startswith("none"):
        return "none", ""
    match = _SHA.search(desc)
    if not match:
        raise InputError(f"the encodings' weights are {desc!r}: not ones export knows")
    digest = match.group(1)
    if cfg.weights and file_digest(cfg.weights) != digest:
        raise ProvenanceError(f"{cfg.weights} has sha256 {file_digest(cfg.weights)}, the "
                              f"chain was extracted with weights of sha256 {digest}")
    return "file", digest
