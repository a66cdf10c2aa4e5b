"""featx's file formats: the only package that imports h5py (see docs/shards.md).

- shards, one module a format -- :mod:`featx.io.activations`, :mod:`featx.io.encodings`
  (with the streaming ``EncodingSet``), :mod:`featx.io.predictions` -- on the one shard file
  of :mod:`featx.io.shard`: typed writers that commit atomically, readers that decode ids
  once and check what they return (:mod:`featx.io.shards` names them all);
- :mod:`featx.io.models`: PCA, GMM, SVM and guidance model files; :mod:`featx.io.bundle`:
  classifier bundles (featx export);
- :mod:`featx.io.output`: one run owns an output at a time (a lock), checked writable before
  any work, replaced only by complete new output;
- :mod:`featx.io.provenance`: the attributes every output records, and the checks that an
  input fits (``require_fit``) or that an existing output can be resumed (``resume_or_refuse``).
"""

from featx.io.bundle import Bundle, read_bundle, save_bundle
from featx.io.models import load_gmm, load_guidance, load_pca, load_svm, load_svm_extras, save_gmm
from featx.io.models import MODEL_KINDS, ModelKind, load_model, model_kind
from featx.io.models import load_maps, save_guidance, save_maps, save_pca, save_svm
from featx.io.output import model_output, output_folder, save_csv, save_json
from featx.io.provenance import EXTRACTION_KEYS, EXTRACTION_SIGNATURE, provenance, require_fit, resume_or_refuse
from featx.io.activations import ActivationShard, ActivationWriter
from featx.io.encodings import EncodingShard, EncodingWriter, as_stored, load_encodings
from featx.io.predictions import PredictionShard, PredictionWriter
from featx.io.shard import read_header, shard_name, shard_paths

__all__ = [
    "Bundle", "read_bundle", "save_bundle", "PredictionShard", "PredictionWriter", "as_stored",
    "MODEL_KINDS", "ModelKind", "load_model", "model_kind",
    "EXTRACTION_KEYS", "EXTRACTION_SIGNATURE", "ActivationShard", "ActivationWriter", "EncodingShard", "EncodingWriter",
    "load_encodings", "load_gmm", "load_guidance", "load_maps", "load_pca", "load_svm",
    "load_svm_extras",
    "model_output", "output_folder", "save_csv", "save_json",
    "provenance", "read_header", "require_fit", "resume_or_refuse",
    "save_gmm", "save_guidance", "save_maps", "save_pca", "save_svm", "shard_name", "shard_paths",
]
