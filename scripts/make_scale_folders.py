#!/usr/bin/env python3
"""Writes Fashion-MNIST training images as PNG class folders of 1,000, 5,000 and 25,000 photos
under /tmp/scale/N, for the train-head scale table in the README. Needs numpy and pillow and
Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist). Then, per N:

    CNN_EXPLORER_CACHE_DIR=/tmp/scale/cacheN /usr/bin/time -v target/release/cnn-explorer \
        train-head /tmp/scale/N --model efficientnet-lite0 --epochs 10 --json -o /tmp/scale/hN.safetensors

twice (cold, then warm cache), reading "Elapsed" and "Maximum resident set size".
"""
import gzip

import numpy as np
from pathlib import Path
from PIL import Image
src = Path('/usr/share/datasets/fashion-mnist')
names = ["t-shirt_top","trouser","pullover","dress","coat","sandal","shirt","sneaker","bag","ankle_boot"]
imgs = np.frombuffer(gzip.open(src/'train-images-idx3-ubyte.gz').read(), np.uint8, offset=16).reshape(-1,28,28)
labels = np.frombuffer(gzip.open(src/'train-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)
for n in [int(a) for a in __import__("sys").argv[1:]] or [1000, 5000, 25000]:
    dest = Path(f'/tmp/scale/{n}')
    for c in names: (dest/c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(imgs[i]).save(dest/names[labels[i]]/f'{i:05d}.png')
    print(n)
