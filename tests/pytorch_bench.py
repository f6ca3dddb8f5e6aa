#!/usr/bin/env python3
"""PyTorch CPU timings of the backbones `cnn-explorer bench` measures, the same way
(../shared/bench/peer_bench.py's definitions): forward at 224, batch 1, under inference_mode;
a dream step (forward, backward to the input only, Adam step on the input, objective
logit[130] - 0.01 * TV) at 224. Random weights (the timings do not depend on them), 2 threads.

    /work/pyenv/bin/python tests/pytorch_bench.py [--runs 10] [--models resnet18,resnet50,...]

Prints one JSON object per timing: {"model", "what", "size", "median_ms"} like
`cnn-explorer bench --json`, so the two can be compared row by row (alternate the two a few
times: the machine is noisy).
"""
import argparse
import json
import statistics
import time

import timm
import torch

MODELS = {
    "resnet18": "resnet18",
    "resnet50": "resnet50",
    "mobilenetv3-large": "mobilenetv3_large_100",
    "efficientnet-lite0": "efficientnet_lite0",
    # timm's Lite1/Lite2 are the same networks (5,416,680 and 6,092,072 parameters, as ours).
    "efficientnet-lite1": "efficientnet_lite1",
    "efficientnet-lite2": "efficientnet_lite2",
}


def tv_loss(x):
    return (x[:, :, 1:, :] - x[:, :, :-1, :]).abs().mean() + (x[:, :, :, 1:] - x[:, :, :, :-1]).abs().mean()


def median_ms(f, runs, warmup=3):
    for _ in range(warmup):
        f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.set_num_threads(2)
    for name in args.models.split(","):
        model = timm.create_model(MODELS[name], pretrained=False).eval().requires_grad_(False)
        torch.manual_seed(0)
        s = args.size
        x = torch.rand(1, 3, s, s)
        with torch.inference_mode():
            fwd = median_ms(lambda: model(x), args.runs)
        print(json.dumps({"model": name, "what": "forward", "size": s, "median_ms": round(fwd, 2)}), flush=True)
        xi = torch.rand(1, 3, s, s).requires_grad_(True)
        opt = torch.optim.Adam([xi], lr=0.02)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = model(xi)[0, 130] - 0.01 * tv_loss(xi)
            (-loss).backward()
            opt.step()
        dream = median_ms(step, args.runs)
        print(json.dumps({"model": name, "what": "dream_step", "size": s, "median_ms": round(dream, 2)}), flush=True)


if __name__ == "__main__":
    main()
