#!/usr/bin/env python3
"""Compares what the Windows binary (under Wine) wrote with what the Linux binary wrote.

Standard library only, so the check runs on a bare machine. Used by scripts/windows-check.sh:

  compare.py json LINUX WINDOWS [--tol 1e-5]   JSON (one value, or one per line): numbers
                                               within --tol, strings equal; paths compared by
                                               file name (Z:\\...\\x.png against /tmp/.../x.png);
                                               timings skipped
  compare.py png LINUX WINDOWS [--max-diff N]  identical bytes, or else the same size and every
                                               channel of every pixel within N levels (default
                                               0: bytes must match)
  compare.py gen-folder DIR                    a small labelled folder for train-head (two
                                               classes of seeded noise photos)
  compare.py png-info FILE                     width, height and the mean of each channel

Exit status 0 when the two agree, 1 with the first difference printed otherwise.
"""

import json
import random
import re
import struct
import sys
import zlib

TIMING = re.compile(r"(^|_)(ms|seconds|secs|time|elapsed|per_s|per_second)(_|$)")
PATH_KEYS = {
    "image", "output", "grid", "head", "path", "weights", "split_out", "dir", "folder", "root",
}


def file_name(text):
    return re.split(r"[\\/]", text)[-1]


def compare_values(a, b, where, tol):
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: keys differ: {sorted(set(a) ^ set(b))}"
        for key in a:
            if TIMING.search(key):
                continue
            sub = f"{where}.{key}"
            if key in PATH_KEYS and isinstance(a[key], str) and isinstance(b[key], str):
                if file_name(a[key]) != file_name(b[key]):
                    return f"{sub}: {a[key]!r} and {b[key]!r} name different files"
                continue
            why = compare_values(a[key], b[key], sub, tol)
            if why:
                return why
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items against {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            why = compare_values(x, y, f"{where}[{i}]", tol)
            if why:
                return why
        return None
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
        return None if a == b else f"{where}: {a!r} against {b!r}"
    if not isinstance(b, (int, float)):
        return f"{where}: {a!r} against {b!r}"
    return None if abs(a - b) <= tol else f"{where}: {a!r} against {b!r} (more than {tol} apart)"


def read_json(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return [json.loads(text)]
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def decode_png(path):
    """(width, height, channels, rows of bytes) of an 8-bit greyscale, RGB or RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 2: 3, 6: 4, 4: 2}.get(colour)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"{path}: only 8-bit, non-interlaced grey/RGB/RGBA PNGs")
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            left = line[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if kind == 1:
                line[x] = (line[x] + left) & 255
            elif kind == 2:
                line[x] = (line[x] + up) & 255
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else corner)
                line[x] = (line[x] + pred) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, channels, rows


def compare_png(a, b, max_diff):
    with open(a, "rb") as f:
        bytes_a = f.read()
    with open(b, "rb") as f:
        bytes_b = f.read()
    if bytes_a == bytes_b:
        print(f"identical bytes ({len(bytes_a)})")
        return None
    wa, ha, ca, rows_a = decode_png(a)
    wb, hb, cb, rows_b = decode_png(b)
    if (wa, ha, ca) != (wb, hb, cb):
        return f"{wa}x{ha}x{ca} against {wb}x{hb}x{cb}"
    worst = max(
        abs(x - y) for ra, rb in zip(rows_a, rows_b) for x, y in zip(ra, rb)
    )
    differing = sum(x != y for ra, rb in zip(rows_a, rows_b) for x, y in zip(ra, rb))
    print(f"bytes differ; {differing} of {wa * ha * ca} values differ, by at most {worst}")
    return None if worst <= max_diff else f"pixels differ by {worst} levels (allowed {max_diff})"


def write_png(path, width, height, pixels):
    rows = b"".join(b"\x00" + pixels[y * width * 3:(y + 1) * width * 3] for y in range(height))

    def chunk(kind, body):
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(rows, 9)))
        f.write(chunk(b"IEND", b""))


def gen_folder(root):
    """Two classes the backbone tells apart: warm horizontal stripes, cool vertical ones."""
    import os

    rng = random.Random(19)
    side = 64
    for name, tint, vertical in [("warm", (220, 90, 40), False), ("cool", (40, 110, 220), True)]:
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(8):
            period = rng.randint(5, 12)
            pixels = bytearray()
            for y in range(side):
                for x in range(side):
                    on = ((x if vertical else y) // period) % 2
                    for c in tint:
                        v = c * (0.45 + 0.55 * on) + rng.uniform(-25, 25)
                        pixels.append(max(0, min(255, int(v))))
            write_png(os.path.join(root, name, f"{name}_{i}.png"), side, side, bytes(pixels))


def main(argv):
    if len(argv) >= 2 and argv[0] == "gen-folder":
        gen_folder(argv[1])
        return 0
    if len(argv) >= 2 and argv[0] == "png-info":
        w, h, c, rows = decode_png(argv[1])
        means = [sum(r[i] for r in rows for i in range(k, w * c, c)) / (w * h) for k in range(c)]
        print(f"{w}x{h}, channel means {[round(m, 1) for m in means]}")
        return 0
    if len(argv) < 3 or argv[0] not in ("json", "png"):
        print(__doc__)
        return 2
    kind, a, b = argv[:3]
    options = dict(zip(argv[3::2], argv[4::2]))
    if kind == "json":
        tol = float(options.get("--tol", "1e-5"))
        va, vb = read_json(a), read_json(b)
        why = compare_values(va, vb, file_name(b), tol)
        if not why:
            print(f"{len(va)} JSON value(s) agree (numbers within {tol})")
    else:
        why = compare_png(a, b, int(options.get("--max-diff", "0")))
    if why:
        print(f"DIFFERENT: {why}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
