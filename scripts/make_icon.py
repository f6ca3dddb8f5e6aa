#!/usr/bin/env python3
"""Makes assets/windows/cnn-explorer.ico (the .exe's icon in Explorer) from assets/icon.png:
16, 24, 32, 48, 64 and 256 px, each a PNG inside the ICO (Windows Vista and later).

  python3 scripts/make_icon.py        # needs Pillow
"""

import io
import struct

from PIL import Image

SIZES = [16, 24, 32, 48, 64, 256]


def main():
    source = Image.open("assets/icon.png").convert("RGBA")
    images = []
    for side in SIZES:
        out = io.BytesIO()
        source.resize((side, side), Image.LANCZOS).save(out, "PNG", optimize=True)
        images.append(out.getvalue())
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = len(header) + 16 * len(images)
    entries = b""
    for side, data in zip(SIZES, images):
        # A width or height of 0 means 256.
        entries += struct.pack("<BBBBHHII", side % 256, side % 256, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    with open("assets/windows/cnn-explorer.ico", "wb") as f:
        f.write(header + entries + b"".join(images))


if __name__ == "__main__":
    main()
