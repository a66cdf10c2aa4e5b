"""What featx writes by hand that a well-kept library also does: the same answer? faster?

    python benchmarks/libraries.py [--repeat 5]

Each item runs featx's code and the library's on the same data, dtype, threads and call
pattern, and prints whether the outputs are equal (bitwise, or the largest difference) and
the best time of ``--repeat`` runs (with the spread) where speed matters. The decisions it
informs are in docs/architecture.md, "Hand-written, on purpose".

1. file digests: featx.digest.file_digest against hashlib.file_digest (Python >= 3.11);
2. BatchNorm folding: featx.backbones.fold against torch.nn.utils.fusion.fuse_conv_bn_weights,
   on EfficientNet-Lite0's ImageNet weights (the pip package);
3. activations: featx's hooks (ActivationExtractor, which stops after the last layer asked
   for) against torchvision's create_feature_extractor (FX, pruned graph) on AlexNet conv4 +
   conv5, and timm's forward_intermediates(stop_early=True) on Lite0 stage6 + stage7;
4. precision-recall points: featx.metrics.precision_recall against scikit-learn's
   precision_recall_curve (what PrecisionRecallDisplay.from_predictions draws);
5. AP10 crops: featx's ``jitter`` view against torchvision.transforms.v2.TenCrop.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile

import numpy as np
import torch
from timing import best_of


def digests(repeat: int) -> None:
    from featx.digest import file_digest

    with tempfile.NamedTemporaryFile(delete=False) as fh:
        fh.write(np.random.default_rng(0).bytes(256 << 20))
    try:
        ours, lo_hi = file_digest(fh.name), best_of(lambda: file_digest(fh.name), repeat)
        print(f"1. digest of 256 MiB: featx {lo_hi[0] * 1e3:.0f} ms (worst {lo_hi[1] * 1e3:.0f})",
              end="")
        if sys.version_info >= (3, 11):
            def lib():
                with open(fh.name, "rb") as f:
                    return hashlib.file_digest(f, "sha256").hexdigest()[:16]
            t = best_of(lib, repeat)
            print(f", hashlib.file_digest {t[0] * 1e3:.0f} ms (worst {t[1] * 1e3:.0f}); "
                  f"equal: {lib() == ours}")
        else:
            print("; hashlib.file_digest needs Python 3.11")
    finally:
        os.unlink(fh.name)


def folding() -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    from featx.backbones import get_backbone
    from featx.backbones.fold import _pairs, fold_batchnorm

    bb = get_backbone("efficientnet_lite0")
    state = bb.imagenet()
    model = bb.build().eval()
    model.load_state_dict(state)
    modules = dict(model.named_modules())
    lib = {}
    for conv_name, bn_name in _pairs(bb.build, bb.input_size):
        conv, bn = modules[conv_name], modules[bn_name]
        lib[conv_name] = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                              bn.running_var, bn.eps, bn.weight, bn.bias)
    fold_batchnorm(model, bb.build, bb.input_size)
    modules = dict(model.named_modules())
    same = sum(torch.equal(modules[n].weight, w) and torch.equal(modules[n].bias, b)
               for n, (w, b) in lib.items())
    worst = max(float(((modules[n].weight - w).abs().max() / w.abs().max()).detach())
                for n, (w, b) in lib.items())
    print(f"2. BatchNorm folding, Lite0 ImageNet: {len(lib)} pairs; bitwise equal to "
          f"fuse_conv_bn_weights: {same} of {len(lib)}; largest weight difference "
          f"{worst:.1e} of the layer's largest weight")


def extractors(repeat: int) -> None:
    import timm
    from torchvision.models.feature_extraction import create_feature_extractor

    from featx.backbones import ActivationExtractor, get_backbone

    torch.manual_seed(0)
    for name, layers, x in (("alexnet", ["conv4", "conv5"], torch.rand(32, 3, 227, 227)),
                            ("efficientnet_lite0", ["stage6", "stage7"],
                             torch.rand(32, 3, 224, 224))):
        bb = get_backbone(name)
        model = bb.build().eval()
        ours = ActivationExtractor(model, bb, layers)
        if name == "alexnet":
            lib = create_feature_extractor(model, {bb.layers[a]: a for a in layers})
            peer = "torchvision create_feature_extractor"

            def run_lib():
                return lib(x)
        else:
            from featx.backbones.efficientnet_lite import TIMM_NAME  # TF "same" padding

            tm = timm.create_model(TIMM_NAME, pretrained=False).eval()
            tm.load_state_dict(model.state_dict())
            # forward_intermediates returns timm's feature levels (the stage ends) only
            levels = [f["module"] for f in tm.feature_info]
            missing = [a for a in layers if bb.layers[a] not in levels]
            print(f"3. {name}: timm's forward_intermediates reaches {', '.join(levels)}; not "
                  f"{', '.join(f'{a} ({bb.layers[a]})' for a in missing)}: compared on "
                  "the rest")
            layers = [a for a in layers if a not in missing]
            ours = ActivationExtractor(model, bb, layers)
            idx = [levels.index(bb.layers[a]) for a in layers]
            peer = "timm forward_intermediates"

            def run_lib():
                return dict(zip(layers, tm.forward_intermediates(
                    x, indices=idx, stop_early=True, intermediates_only=True)))
        with torch.inference_mode():
            a, b = ours(x), run_lib()
            equal = all(torch.equal(a[k], b[k]) for k in layers)
            t_ours, t_lib = best_of(lambda: ours(x), repeat), best_of(run_lib, repeat)
        print(f"3. {name} {'+'.join(layers)}, batch 32, {torch.get_num_threads()} threads: featx "
              f"{t_ours[0] * 1e3:.0f} ms (worst {t_ours[1] * 1e3:.0f}), {peer} "
              f"{t_lib[0] * 1e3:.0f} ms (worst {t_lib[1] * 1e3:.0f}); equal: {equal}")


def pr_points() -> None:
    from sklearn.metrics import precision_recall_curve

    from featx.metrics import precision_recall, voc07_ap

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=500), 1)  # ties, as SVM scores of duplicates give
    labels = rng.choice([1, -1, -1, 0], 500)
    rec, prec = precision_recall(scores, labels)
    keep = labels != 0
    p2, r2, _ = precision_recall_curve(labels[keep] > 0, scores[keep])
    ap_ours = voc07_ap(scores[:, None], labels[:, None])[0]
    ap_lib = np.mean([p2[r2 >= t].max() if (r2 >= t).any() else 0
                      for t in np.arange(0, 1.1, 0.1)])
    ap_all = voc07_ap(scores[:, None], np.where(keep, labels, -1)[:, None])[0]
    print(f"4. PR points of 500 scores with ties, 1 in 4 difficult: featx {len(rec)} (one a "
          f"ranked image, VOCdevkit's), scikit-learn {len(p2) - 1} (one a distinct score); "
          f"11-point AP from each {100 * ap_ours:.2f} / {100 * ap_lib:.2f}; from_predictions "
          f"has no 'difficult': counting them negative gives {100 * ap_all:.2f}")


def crops() -> None:
    from torchvision.transforms import v2

    from featx.images import ViewSpec, resize

    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8))
    ours = ViewSpec.parse("jitter").render(img, 227, 256)  # (10, 227, 227, 3)
    big = resize(img, 256).permute(2, 0, 1)
    lib = torch.stack(v2.TenCrop(227)(big)).permute(0, 2, 3, 1)
    # TenCrop: tl, tr, bl, br, centre, then the same five of the mirrored image; featx (as
    # Caffe's oversample): the five, then each one mirrored
    same = sum(any(torch.equal(a, b) for b in lib) for a in ours)
    print(f"5. AP10 crops of the same 256x256 resize: {same} of featx's 10 jitter crops are "
          "among torchvision v2 TenCrop's; featx mirrors each crop (Caffe's oversample), "
          "TenCrop crops the mirrored image, whose centre crop is one pixel off (29 spare "
          "pixels do not halve); crops:N (AP50's 5x5 grid) and blocks have no v2 transform")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python "
          f"{sys.version.split()[0]}")
    digests(args.repeat)
    folding()
    extractors(args.repeat)
    pr_points()
    crops()


if __name__ == "__main__":
    main()
