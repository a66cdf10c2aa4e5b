"""featx's file formats: the only package that imports h5py (see docs/shards.md).

- :mod:`featx.io.shards`: activation and encoding shards — typed writers that commit
  atomically, readers that decode ids once and check what they return;
- :mod:`featx.io.models`: PCA, GMM, SVM and guidance model files;
- :mod:`featx.io.output`: one run owns an output at a time (a lock), checked writable before
  any work, replaced only by complete new output;
- :mod:`featx.io.provenance`: the attributes every output records, and the checks that an
  input fits (``require_fit``) or that an existing output can be resumed (``resume_or_refuse``).
"""

from featx.io.bundle import Bundle, read_bundle, save_bundle
from featx.io.models import load_gmm, load_guidance, load_pca, load_svm, load_svm_extras, save_gmm
from featx.io.models import MODEL_KINDS, ModelKind, check_projection, load_model, model_kind
from featx.io.models import check_guidance_scales, pyramid_pca
from featx.io.models import load_maps, save_guidance, save_maps, save_pca, save_svm
from featx.io.output import model_output, output_folder, save_csv, save_json
from featx.io.provenance import EXTRACTION_KEYS, EXTRACTION_SIGNATURE, provenance, require_fit, resume_or_refuse
from featx.io.shards import ActivationShard, ActivationWriter, EncodingShard, EncodingWriter
from featx.io.shards import load_encodings, read_header, shard_name
from featx.io.shards import PredictionShard, PredictionWriter, as_stored, shard_paths

__all__ = [
    "Bundle", "read_bundle", "save_bundle", "PredictionShard", "PredictionWriter", "as_stored",
    "MODEL_KINDS", "ModelKind", "check_guidance_scales", "check_projection", "load_model", "model_kind", "pyramid_pca",
    "EXTRACTION_KEYS", "EXTRACTION_SIGNATURE", "ActivationShard", "ActivationWriter", "EncodingShard", "EncodingWriter",
    "load_encodings", "load_gmm", "load_guidance", "load_maps", "load_pca", "load_svm",
    "load_svm_extras",
    "model_output", "output_folder", "save_csv", "save_json",
    "provenance", "read_header", "require_fit", "resume_or_refuse",
    "save_gmm", "save_guidance", "save_maps", "save_pca", "save_svm", "shard_name", "shard_paths",
]
