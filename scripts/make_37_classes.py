#!/usr/bin/env python3
"""Writes a folder of 37 classes named after Oxford-IIIT Pet's breeds, 16 generated photos each
(stripes whose angle, spacing and colours depend on the class, with noise), under
/tmp/pets37, for the README's 37-class screenshots of the Train tab:

    cnn-explorer --model efficientnet-lite0 --train /tmp/pets37 --tab train --screenshot shot.png

Needs numpy and pillow.
"""
from pathlib import Path

import numpy as np
from PIL import Image

BREEDS = [
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle",
    "Bengal", "Birman", "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau",
    "english_cocker_spaniel", "english_setter", "german_shorthaired", "great_pyrenees",
    "havanese", "japanese_chin", "keeshond", "leonberger", "Maine_Coon", "miniature_pinscher",
    "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll", "Russian_Blue", "saint_bernard",
    "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx", "staffordshire_bull_terrier",
    "wheaten_terrier", "yorkshire_terrier",
]


def photo(c, i, rng, side=96):
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    angle = np.pi * (c % 8) / 8 + rng.normal(0, 0.05)
    period = 6 + 3 * (c // 8) + rng.normal(0, 0.3)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period)
    hue = np.array([(c * 37) % 255, (c * 91) % 255, (c * 53) % 255], np.float32) / 255
    base = np.array([0.2, 0.2, 0.2], np.float32)
    img = base + wave[..., None] * hue[None, None, :] * 0.8
    img += rng.normal(0, 0.06, img.shape)
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))


def main():
    root = Path("/tmp/pets37")
    rng = np.random.default_rng(0)
    for c, name in enumerate(BREEDS):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(16):
            photo(c, i, rng).save(root / name / f"{name}_{i:02d}.png")
    print(f"wrote {len(BREEDS)} x 16 photos under {root}")


if __name__ == "__main__":
    main()
