"""Offline datasets for the examples, parsed with numpy only (no downloads, no unpickling)."""
from __future__ import annotations

import gzip
import os
import sys

import numpy as np


def _open(path):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _find(data_dir: str, names) -> str:
    for n in names:
        for cand in (n, n + ".gz"):
            p = os.path.join(data_dir, cand)
            if os.path.exists(p):
                return p
    raise FileNotFoundError(f"none of {', '.join(names)} (or .gz) in {data_dir!r}")


def read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST's format): magic 0x00000800 | ndim, then big-endian int32 sizes, then uint8."""
    with _open(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not a uint8 IDX file (magic bytes {raw[:4].hex()})")
    nd = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=nd, offset=4)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {tuple(dims)} but holds {data.size} values")
    return data.reshape(tuple(int(d) for d in dims))


def mnist(data_dir: str):
    """(x_train, y_train, x_test, y_test), images float32 (N, 1, 28, 28) in [0, 1]."""
    xtr = read_idx(_find(data_dir, ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]))
    ytr = read_idx(_find(data_dir, ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"]))
    xte = read_idx(_find(data_dir, ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]))
    yte = read_idx(_find(data_dir, ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]))
    f = lambda x: (x.astype(np.float32) / 255.0)[:, None]  # noqa: E731
    return f(xtr), ytr.astype(np.int64), f(xte), yte.astype(np.int64)


def digits(test_fraction: float = 0.2):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, offline): a fixed split that does
    not depend on --seed, images float32 (N, 1, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(1234).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return x[tr], y[tr], x[te], y[te]


def cifar10(data_dir: str):
    """CIFAR-10 from the official *binary* batches (data_batch_1..5.bin, test_batch.bin): each record
    is 1 label byte + 3072 bytes (R, G, B planes of 32x32). Images float32 (N, 3, 32, 32) in [0, 1]."""
    def load(names):
        xs, ys = [], []
        for n in names:
            p = _find(data_dir, [n])
            with _open(p) as f:
                raw = np.frombuffer(f.read(), dtype=np.uint8)
            if raw.size % 3073:
                raise ValueError(f"{p}: {raw.size} bytes is not a whole number of 3073-byte records")
            rec = raw.reshape(-1, 3073)
            ys.append(rec[:, 0].astype(np.int64))
            xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))
        return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)
    xtr, ytr = load([f"data_batch_{i}.bin" for i in range(1, 6)])
    xte, yte = load(["test_batch.bin"])
    return xtr, ytr, xte, yte


def synthetic_images(n_train: int, n_test: int, size: int = 32, classes: int = 10, seed: int = 0):
    """A generated 10-class colour image set with learnable structure, CIFAR-shaped: class c is an
    oriented sinusoidal grating (angle and spatial frequency fixed per class) over a class base
    colour, under a random phase, random contrast, colour jitter, a random blob occluder and pixel
    noise. Colour alone leaves classes confusable; orientation and frequency (local texture, what a
    4x4 patch sees) separate them."""
    g = np.random.default_rng(seed + 99)
    angles = (np.arange(classes) * np.pi / classes + g.uniform(0, 0.1, size=classes))
    freqs = g.uniform(0.7, 1.6, size=classes)
    tints = g.uniform(0.3, 0.7, size=(classes, 3))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def make(n, rng):
        y = rng.integers(0, classes, size=n)
        phase = rng.uniform(0, 2 * np.pi, size=n)[:, None, None]
        contrast = rng.uniform(0.5, 1.0, size=n)[:, None, None]
        a, f = angles[y][:, None, None], freqs[y][:, None, None]
        wave = np.sin(f * (np.cos(a) * xx + np.sin(a) * yy) + phase) * contrast
        base = tints[y] + rng.normal(0, 0.08, size=(n, 3))
        img = base[:, :, None, None] + 0.3 * wave[:, None]
        cy, cx = rng.uniform(0, size, size=(2, n))[:, :, None, None]
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < (size / 6) ** 2)[:, None]
        img = np.where(blob, rng.uniform(0, 1, size=(n, 3, 1, 1)), img)
        img = img + rng.normal(0, 0.1, size=img.shape)
        return np.clip(img, 0, 1).astype(np.float32), y.astype(np.int64)

    xtr, ytr = make(n_train, np.random.default_rng([seed, 1]))
    xte, yte = make(n_test, np.random.default_rng([seed, 2]))
    return xtr, ytr, xte, yte


def default_text(max_bytes: int) -> tuple[str, str]:
    """Text that is always present: the Python standard library's own sources (sorted, concatenated,
    up to max_bytes). Returns (text, description)."""
    root = os.path.dirname(os.__file__)
    files = sorted(f for f in os.listdir(root) if f.endswith(".py"))
    parts, n = [], 0
    for f in files:
        try:
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                t = fh.read()
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(t)
        n += len(t)
        if n >= max_bytes:
            break
    text = "".join(parts)[:max_bytes]
    return text, f"Python {sys.version_info.major}.{sys.version_info.minor} standard library sources ({root})"
