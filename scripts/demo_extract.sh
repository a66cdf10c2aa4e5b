#!/usr/bin/env bash
# Offline extraction demo: sample photos -> featx extract -> top ImageNet classes per photo.
set -euo pipefail
out=${1:-work/demo}
FEATX=${FEATX:-featx}
PY=${PY:-python3}
mkdir -p "$out/photos"
"$PY" - "$out/photos" <<'PYEOF'
import sys
from PIL import Image
from skimage import data
for name in ("chelsea", "astronaut", "coffee", "rocket", "cat"):
    Image.fromarray(getattr(data, name)()).save(f"{sys.argv[1]}/{name}.jpg", quality=92)
PYEOF
"$FEATX" extract "$out/photos" -o "$out/acts" --backbone efficientnet_lite0 --weights imagenet \
    --layers stage4,stage5,logits --views whole,blocks:2x2 \
  | "$PY" -c '
import sys, h5py, numpy as np, torchvision
cats = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.meta["categories"]
for path in sys.stdin.read().split():
    print(f"shard {path}")
    with h5py.File(path) as f:
        for name in ("acts/whole/stage4", "acts/whole/stage5", "acts/blocks/stage5"):
            print(f"  {name:22s} {f[name].shape} {f[name].dtype}")
        for image_id, logits in zip(f["ids"][:], f["acts/whole/logits"][:, 0]):
            top = np.argsort(-logits.astype(np.float32))[:3]
            print(f"  {image_id.decode():14s} " + ", ".join(cats[i] for i in top))
'
