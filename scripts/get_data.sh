#!/usr/bin/env bash
# `make data`: fetch the benchmarks and the ImageNet weights into data/ (or $FEATX_DATA) and
# torchvision's cache. Needs internet; on a machine without it, every download fails and
# `make reproduce` falls back to the shipped Fashion-MNIST subset.
set -euo pipefail
data=${FEATX_DATA:-data}
mkdir -p "$data"
fetch() {  # url dest-dir
  echo "fetching $1" >&2
  curl -fL --retry 3 "$1" | tar -x -C "$2" ${3:+--strip-components=$3}
}
# PASCAL VOC 2007 (trainval + test): data/VOCdevkit/VOC2007
fetch http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar "$data"
fetch http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar "$data"
# MIT Indoor 67: data/mit67/Images + the official TrainImages.txt / TestImages.txt
mkdir -p "$data/mit67"
fetch http://groups.csail.mit.edu/vision/LabelMe/NewImages/indoorCVPR_09.tar "$data/mit67"
curl -fL -o "$data/mit67/TrainImages.txt" http://web.mit.edu/torralba/www/TrainImages.txt
curl -fL -o "$data/mit67/TestImages.txt" http://web.mit.edu/torralba/www/TestImages.txt
# CUB-200-2011: data/CUB_200_2011
fetch https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz "$data"
# Oxford Flowers 102: data/flowers102/{jpg,imagelabels.mat,setid.mat}
mkdir -p "$data/flowers102"
fetch https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz "$data/flowers102"
curl -fL -o "$data/flowers102/imagelabels.mat" https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat
curl -fL -o "$data/flowers102/setid.mat" https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat
# ImageNet weights into torchvision's cache ($TORCH_HOME)
"${PY:-.venv/bin/python}" - <<'PY'
import torchvision.models as m
for w in (m.AlexNet_Weights.IMAGENET1K_V1, m.VGG16_Weights.IMAGENET1K_V1, m.ResNet50_Weights.IMAGENET1K_V2):
    w.get_state_dict(progress=True)
PY
