#!/usr/bin/env python3
"""Writes the fuzz seeds under fuzz/seeds/ (Python's standard library only, no torch).

    python3 fuzz/make_seeds.py

load_weights: a tiny ResNet-18-shaped network (widths 2, one block per layer) and a tiny
VGG-16-shaped one with timm's names, as safetensors, as a PyTorch zip `.pth` and as a legacy
(pre-1.6) pickle `.pth`; the fuzz target builds exactly these configurations, so the seeds
reach a built model and a forward pass. load_head: saved heads (`head.json`, and
`head.json` + NUL + `head.safetensors`) of the three kinds a head can be. decode_image: small
images made here (PNG, BMP, GIF, chunky and planar TIFF) next to a few small test images
copied from tests/fixtures/images, and one committed WebP.
"""

import collections
import io
import json
import pickle
import random
import shutil
import struct
import sys
import types
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
FIXTURES = HERE.parent / "tests" / "fixtures"
rng = random.Random(14)


# --- tensors ------------------------------------------------------------------------------

def tensor(shape, kind="normal"):
    n = 1
    for d in shape:
        n *= d
    if kind == "var":
        values = [rng.uniform(0.5, 1.5) for _ in range(n)]
    else:
        values = [rng.gauss(0.0, 0.3) for _ in range(n)]
    return (list(shape), values)


def conv_bn(out, name, cin, cout, k):
    out[f"{name[0]}.weight"] = tensor((cout, cin, k, k))
    bn = name[1]
    out[f"{bn}.weight"] = tensor((cout,))
    out[f"{bn}.bias"] = tensor((cout,))
    out[f"{bn}.running_mean"] = tensor((cout,))
    out[f"{bn}.running_var"] = tensor((cout,), "var")


def tiny_resnet():
    """ResNet-18's layout with widths (2, 2, 2, 2), stem 2, one block per layer, 3 classes."""
    out = collections.OrderedDict()
    conv_bn(out, ("conv1", "bn1"), 3, 2, 7)
    cin = 2
    for layer in range(1, 5):
        p = f"layer{layer}.0"
        stride = 1 if layer == 1 else 2
        conv_bn(out, (f"{p}.conv1", f"{p}.bn1"), cin, 2, 3)
        conv_bn(out, (f"{p}.conv2", f"{p}.bn2"), 2, 2, 3)
        if stride != 1 or cin != 2:
            conv_bn(out, (f"{p}.downsample.0", f"{p}.downsample.1"), cin, 2, 1)
        cin = 2
    out["fc.weight"] = tensor((3, 2))
    out["fc.bias"] = tensor((3,))
    return out


def tiny_vgg_timm():
    """VGG-16's layout with one convolution per block, widths 2, hidden 4, 3 classes; timm's
    names for the classifier (fc1 a 7x7 convolution, fc2 a 1x1 one)."""
    out = collections.OrderedDict()
    cin = 3
    for index in (0, 3, 6, 9, 12):
        out[f"features.{index}.weight"] = tensor((2, cin, 3, 3))
        out[f"features.{index}.bias"] = tensor((2,))
        cin = 2
    out["pre_logits.fc1.weight"] = tensor((4, 2, 7, 7))
    out["pre_logits.fc1.bias"] = tensor((4,))
    out["pre_logits.fc2.weight"] = tensor((4, 4, 1, 1))
    out["pre_logits.fc2.bias"] = tensor((4,))
    out["head.fc.weight"] = tensor((3, 4))
    out["head.fc.bias"] = tensor((3,))
    return out


def f32_bytes(values):
    return struct.pack(f"<{len(values)}f", *values)


def safetensors(tensors):
    header, data = {}, b""
    for name, (shape, values) in tensors.items():
        raw = f32_bytes(values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


# --- PyTorch pickles, written without torch: stand-in modules with the right names -------

torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
torch._utils = torch_utils


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"
torch.FloatStorage = FloatStorage


def _rebuild_tensor_v2(*args):
    raise NotImplementedError


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


class Storage:
    def __init__(self, key, values):
        self.key, self.values = key, values


class Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        strides, acc = [], 1
        for d in reversed(self.shape):
            strides.insert(0, acc)
            acc *= d
        args = (self.storage, 0, tuple(self.shape), tuple(strides), False, collections.OrderedDict())
        return (_rebuild_tensor_v2, args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", len(obj.values))
        return None


def state_dict(tensors):
    storages, sd = [], collections.OrderedDict()
    for i, (name, (shape, values)) in enumerate(tensors.items()):
        s = Storage(str(i), values)
        storages.append(s)
        sd[name] = Tensor(s, shape)
    return storages, sd


def pickled(obj):
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def pth_zip(tensors):
    storages, sd = state_dict(tensors)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled(sd))
        z.writestr("archive/byteorder", "little")
        for s in storages:
            z.writestr(f"archive/data/{s.key}", f32_bytes(s.values))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def pth_legacy(tensors):
    storages, sd = state_dict(tensors)
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    out = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
    out += pickle.dumps(1001, protocol=2) + pickle.dumps(sys_info, protocol=2)
    out += pickled(sd) + pickle.dumps([s.key for s in storages], protocol=2)
    for s in storages:
        out += struct.pack("<q", len(s.values)) + f32_bytes(s.values)
    return out


# --- heads ---------------------------------------------------------------------------------

PREPROCESS = {"size": 224, "mode": "center-crop", "mean": [0.485, 0.456, 0.406],
              "std": [0.229, 0.224, 0.225], "filter": "bilinear"}
METRICS = [{"epoch": 1, "train_loss": 1.1, "train_acc": 0.5, "val_loss": 1.2, "val_acc": 0.4},
           {"epoch": 2, "train_loss": 0.9, "train_acc": 0.7, "val_loss": 1.0, "val_acc": 0.6}]
CLASSES = ["cat", "dog", "bird"]


def head_json(kind, dim, block=None, preprocess=PREPROCESS, backbone="resnet18"):
    info = {"kind": kind, "dim": dim, "classes": CLASSES, "backbone": backbone,
            "preprocess": preprocess, "metrics": METRICS, "best_epoch": 1}
    if block is not None:
        info["block"] = block
    return json.dumps(info, indent=2).encode()


def linear_head():
    return head_json({"kind": "linear"}, 4), safetensors(
        {"fc.weight": tensor((3, 4)), "fc.bias": tensor((3,))})


def mlp_head():
    return head_json({"kind": "mlp", "hidden": 5, "dropout": 0.25}, 4,
                     preprocess="Preprocess { size: 224, mode: CenterCrop }"), safetensors(
        {"fc1.weight": tensor((5, 4)), "fc1.bias": tensor((5,)),
         "fc2.weight": tensor((3, 5)), "fc2.bias": tensor((3,))})


def block_head():
    block = {"input_tap": "layer4.0", "input_shape": [2, 4, 4], "convs": [[1, False], [1, True]],
             "max_pool": True, "residual": True}
    return head_json({"kind": "linear"}, 2, block=block), safetensors(
        {"block.0.weight": tensor((2, 2, 3, 3)), "block.0.bias": tensor((2,)),
         "block.1.weight": tensor((2, 2, 3, 3)), "block.1.bias": tensor((2,)),
         "fc.weight": tensor((3, 2)), "fc.bias": tensor((3,))})


# --- images ---------------------------------------------------------------------------------

def pixels(w, h):
    return [[(x * 40 % 256, y * 60 % 256, (x + y) * 25 % 256) for x in range(w)] for y in range(h)]


def png(w, h):
    raw = b"".join(b"\0" + bytes(c for px in row for c in px) for row in pixels(w, h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(w, h):
    stride = (w * 3 + 3) & ~3
    rows = b"".join(bytes(c for px in row for c in reversed(px)).ljust(stride, b"\0")
                    for row in reversed(pixels(w, h)))
    header = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(rows), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(header) + len(rows), 0, 0, 14 + len(header)) + header + rows


def tiff(w, h, planar=1):
    """Uncompressed RGB strips, chunky (planar 1) or one plane per channel (planar 2)."""
    px = pixels(w, h)
    if planar == 1:
        strips = [bytes(c for p in row for c in p) for row in px]
    else:
        strips = [bytes(p[c] for row in px for p in row) for c in range(3)]
    data = b"".join(strips)
    entries_n = 11
    ifd_at = 8 + len(data)
    extra_at = ifd_at + 2 + entries_n * 12 + 4
    n = len(strips)
    offsets = [8 + sum(len(s) for s in strips[:i]) for i in range(n)]
    extra = struct.pack("<3H", 8, 8, 8)
    bps_at = extra_at
    off_at = extra_at + len(extra)
    extra += struct.pack(f"<{n}I", *offsets)
    cnt_at = extra_at + len(extra)
    extra += struct.pack(f"<{n}I", *[len(s) for s in strips])
    rows_per_strip = 1 if planar == 1 else h

    def entry(tag, kind, count, value):
        return struct.pack("<HHII", tag, kind, count, value)
    entries = [entry(256, 4, 1, w), entry(257, 4, 1, h), entry(258, 3, 3, bps_at),
               entry(259, 3, 1, 1), entry(262, 3, 1, 2), entry(273, 4, n, off_at),
               entry(277, 3, 1, 3), entry(278, 4, 1, rows_per_strip), entry(279, 4, n, cnt_at),
               entry(284, 3, 1, planar), entry(296, 3, 1, 1)]
    assert len(entries) == entries_n
    return (b"II*\0" + struct.pack("<I", ifd_at) + data + struct.pack("<H", entries_n)
            + b"".join(entries) + struct.pack("<I", 0) + extra)


def gif(w, h):
    """A 2-colour GIF of 1-pixel stripes, LZW with 2-bit codes (clear code each 2 pixels)."""
    palette = b"\xff\x00\x00\x00\x00\xff"
    indices = [(x + y) % 2 for y in range(h) for x in range(w)]
    codes, bits = [], 0
    # Minimum code size 2: clear = 4, end = 5, codes 3 bits wide; a clear before each pixel
    # keeps the code width fixed.
    for i in indices:
        codes += [4, i]
    codes.append(5)
    stream, acc, n = bytearray(), 0, 0
    for c in codes:
        acc |= c << n
        n += 3
        while n >= 8:
            stream.append(acc & 0xFF)
            acc >>= 8
            n -= 8
    if n:
        stream.append(acc & 0xFF)
    blocks = b"".join(bytes([len(stream[i:i + 255])]) + bytes(stream[i:i + 255])
                      for i in range(0, len(stream), 255)) + b"\0"
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + palette
            + b",\0\0\0\0" + struct.pack("<HHB", w, h, 0) + b"\x02" + blocks + b";")


def write(target, name, data):
    path = SEEDS / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main():
    resnet, vgg = tiny_resnet(), tiny_vgg_timm()
    write("load_weights", "resnet_tiny.safetensors", safetensors(resnet))
    write("load_weights", "resnet_tiny_zip.pth", pth_zip(resnet))
    write("load_weights", "resnet_tiny_legacy.pth", pth_legacy(resnet))
    write("load_weights", "vgg_tiny_timm.safetensors", safetensors(vgg))
    write("load_weights", "vgg_tiny_timm_zip.pth", pth_zip(vgg))

    linear_json, linear_weights = linear_head()
    # The weights the load_head target pairs with an input that holds no NUL.
    (HERE / "fuzz_targets" / "linear_head.safetensors").write_bytes(linear_weights)
    write("load_head", "linear.json", linear_json)
    for name, (text, weights) in (("mlp", mlp_head()), ("block", block_head())):
        write("load_head", f"{name}_with_weights.bin", text + b"\0" + weights)

    write("decode_image", "rgb_5x3.png", png(5, 3))
    write("decode_image", "rgb_4x3.bmp", bmp(4, 3))
    write("decode_image", "stripes_4x3.gif", gif(4, 3))
    write("decode_image", "chunky_4x3.tif", tiff(4, 3, planar=1))
    write("decode_image", "planar_4x3.tif", tiff(4, 3, planar=2))
    for name in ("exif_orientation6.jpg", "cmyk.jpg", "gray16.png", "huge_header.png"):
        shutil.copyfile(FIXTURES / "images" / name, SEEDS / "decode_image" / name)
    # WebP is not written here: seeds/decode_image/alpha_16x16.webp is a copy of CPython's
    # Lib/test/test_email/data/python.webp (VP8X with an ALPH chunk), committed as is.


if __name__ == "__main__":
    main()
