"""MNIST and CIFAR-10 as uint8 arrays, found offline first.

Lookup order for a dataset (the first that works wins):

1. the decoded cache ``<data>/datasets/<name>.npz`` (see ``config.data_dir``);
2. the offline mirror folder (``config.mirror_dir``), its file checked against ``MIRROR_FILES``;
3. torchvision's download of the original release, for machines with internet;
4. otherwise :class:`DataNotFoundError`, naming the missing file and the three ways to provide it.

Images come back as ``uint8`` arrays ``(N, H, W)`` (MNIST) or ``(N, H, W, 3)`` (CIFAR-10) and labels
as ``int64``; ``Split.source`` says which release the pixels come from, for every run's record.

The mirror's CIFAR-10 is sorted by class (all airplanes first). Decoded, each split is put in a
fixed seeded random order (:data:`MIRROR_ORDER_SEED`), as the original release is, so that the
first n images of a split are a sample of every class, never the first class or two.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import config, timings
from .storage import atomic_path, sha256_file

CLASSES = {
    "mnist": tuple(str(d) for d in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
SHAPES = {"mnist": (28, 28), "cifar10": (32, 32, 3)}
SIZES = {"mnist": {"train": 60000, "test": 10000}, "cifar10": {"train": 50000, "test": 10000}}

MIRROR_FILES = {
    "mnist": ("mnist.npz", "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"),
    "cifar10": ("cifar10_jpeg.npz", "69a2277d26669fe80b3274fadb8180ec30b0dc589805b38ff86b85f4dda0fa43"),
}
SOURCES = {
    ("mnist", "mirror"): "MNIST original release (lossless PNG mirror, exact pixels)",
    ("mnist", "download"): "MNIST original release (torchvision download)",
    ("cifar10", "mirror"): "CIFAR-10 JPEG re-encoded mirror (pixels differ slightly; class-sorted there, "
                           "put in a seeded random order here)",
    ("cifar10", "download"): "CIFAR-10 original release (torchvision download)",
}


MIRROR_ORDER_SEED = 0  # the seeded order of the class-sorted CIFAR-10 mirror (see the module docstring)
CACHE_VERSION = 2  # bump when the decoded arrays change (2: the CIFAR-10 mirror no longer class-sorted)


class DataNotFoundError(FileNotFoundError):
    """No cache, mirror file or download could provide the dataset."""


class DataIntegrityError(RuntimeError):
    """A mirror file does not match its published checksum (corrupt or truncated)."""


@dataclass(frozen=True)
class Split:
    """One split of a dataset: ``x`` uint8 images, ``y`` int64 labels, ``source`` the release."""

    x: np.ndarray
    y: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.y)


def load(name: str, split: str = "train", download: bool = True) -> Split:
    """Return ``split`` ("train" or "test") of dataset ``name``: "mnist", "cifar10", or one of the
    BAM-style sets of :data:`BAM_DATASETS` (digits pasted into scenes, see :func:`bam_mnist_on_cifar`)."""
    if name not in CLASSES and name not in BAM_DATASETS:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join([*CLASSES, *BAM_DATASETS])}")
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}: choose 'train' or 'test'")
    if name in BAM_DATASETS:
        bam = bam_mnist_on_cifar(split, download=download)
        images, labels = BAM_DATASETS[name]
        return Split(getattr(bam, images), getattr(bam, labels), bam.source)
    arrays = _cached(name)
    if arrays is None:
        with timings.timed("dataset", name):
            arrays = _build_cache(name, download)
    return Split(arrays[f"x_{split}"], arrays[f"y_{split}"].astype(np.int64), str(arrays["source"]))


def mnist(split: str = "train") -> Split:
    """MNIST ``split`` as uint8 ``(N, 28, 28)`` images and int64 labels."""
    return load("mnist", split)


def cifar10(split: str = "train") -> Split:
    """CIFAR-10 ``split`` as uint8 ``(N, 32, 32, 3)`` images and int64 labels."""
    return load("cifar10", split)


# --- BAM-style semi-synthetic set: MNIST digits pasted into CIFAR-10 scenes ---------------------------

#: Dataset names that ``load`` understands for the BAM chapter: (images, labels) of :class:`BamSet`.
#: "bam-object" and "bam-scene" are the same images with the digit or the scene as label (BAM's
#: ``obj`` and ``scene`` sets); "bam-scene-only" are the scenes without the digit (BAM's ``scene_only``).
BAM_DATASETS = {
    "bam-object": ("x", "obj"),
    "bam-scene": ("x", "scene"),
    "bam-scene-only": ("scene_only", "scene"),
}


@dataclass(frozen=True)
class BamSet:
    """Scenes with a pasted digit, the same scenes without it, both labels and the digit's pixels.

    ``x`` and ``scene_only`` are uint8 ``(N, 32, 32, 3)``; ``obj`` (the digit, 0–9) and ``scene`` (the
    CIFAR-10 class) are int64; ``mask`` is bool ``(N, 32, 32)``, true exactly where ``x`` differs from
    ``scene_only``; ``index`` is the position of each scene in the CIFAR-10 split and ``digit`` that
    of its digit in the MNIST split.
    """

    x: np.ndarray
    scene_only: np.ndarray
    obj: np.ndarray
    scene: np.ndarray
    mask: np.ndarray
    index: np.ndarray
    digit: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.obj)


def bam_mnist_on_cifar(split: str = "train", n: int | None = None, seed: int = 0, size: int = 20,
                       colour: bool = True, download: bool = True) -> BamSet:
    """BAM's relative-importance data set (Yang & Kim 2019), built from MNIST and CIFAR-10.

    BAM pastes MSCOCO objects into MiniPlaces scenes so that every image has an object label and a
    scene label, and every object class appears in every scene class. Here the object is an MNIST
    digit and the scene a CIFAR-10 image of the same ``split`` (test digits only in test scenes):

    * each CIFAR-10 scene gets one digit drawn uniformly from the MNIST split, so the digit is
      independent of the scene class;
    * the 28×28 digit is resized (bilinear, antialiased) to ``size``×``size`` (default 20: the
      strokes then span about 14×14 pixels, the frame 39 % of the 32×32 scene; BAM's objects cover
      1/3 to 1/2 of the scene);
    * its strokes (resized intensity above one half) are painted in one fully saturated colour of
      random hue (``colour=True``) or white, with the frame at a uniformly random position;
    * ``mask`` is the set of pixels whose value changed (the strokes, less the rare stroke pixel whose
      colour the scene already had), so "the object's pixels" and "what was pasted" are the same set.

    All random choices are drawn for the whole split from ``seed`` before the first ``n`` scenes of a
    seeded permutation are kept (``n=None``: every scene, in split order), so a scene always gets the
    same digit at the same place whatever ``n`` is. Vectorised: the whole training split takes a
    second or two, so nothing is cached.
    """
    if not 1 <= size <= 32:
        raise ValueError(f"size must lie in 1..32, got {size}")
    import torch
    import torch.nn.functional as F

    scenes, digits = load("cifar10", split, download), load("mnist", split, download)
    total = len(scenes)
    n = total if n is None else int(n)
    if not 1 <= n <= total:
        raise ValueError(f"n must lie in 1..{total}, got {n}")
    rng = np.random.default_rng(seed)
    digit = rng.integers(0, len(digits), total)
    top, left = rng.integers(0, 32 - size + 1, (2, total))
    hue = rng.random(total)
    index = np.arange(total) if n == total else np.sort(rng.permutation(total)[:n])
    digit, top, left, hue = digit[index], top[index], left[index], hue[index]

    small = torch.from_numpy(digits.x[digit]).float()[:, None].div_(255)
    small = F.interpolate(small, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    stroke = small[:, 0].numpy() > 0.5  # (n, size, size)
    ink = _hue_to_rgb(hue) if colour else np.full((n, 3), 255, np.uint8)

    scene_only = scenes.x[index]
    x = scene_only.copy()
    rows = (top[:, None] + np.arange(size))[:, :, None]
    cols = (left[:, None] + np.arange(size))[:, None, :]
    at = (np.arange(n)[:, None, None], rows, cols)
    x[at] = np.where(stroke[..., None], ink[:, None, None, :], x[at])
    mask = (x != scene_only).any(-1)
    source = (f"BAM-style set (seed {seed}, {size}-pixel digits, {'coloured' if colour else 'white'}): "
              f"digits from {digits.source}; scenes from {scenes.source}")
    return BamSet(x, scene_only, digits.y[digit], scenes.y[index], mask, index, digit, source)


def _hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """Fully saturated, full-value colours of hue ``hue`` in [0, 1) as uint8 RGB ``(N, 3)`` (HSV → RGB)."""
    k = (np.array([5, 3, 1])[None, :] + 6 * hue[:, None]) % 6
    return np.round(255 * (1 - np.clip(np.minimum(k, 4 - k), 0, 1))).astype(np.uint8)


# --- the cache -------------------------------------------------------------------------------------

def cache_path(name: str) -> Path:
    return config.data_dir() / "datasets" / f"{name}.npz"


def _valid(name: str, arrays: dict) -> bool:
    for split, n in SIZES[name].items():
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None or y is None or x.dtype != np.uint8 or x.shape != (n, *SHAPES[name]) or len(y) != n:
            return False
        if y.min() < 0 or y.max() >= len(CLASSES[name]):
            return False
    return "source" in arrays and int(arrays.get("cache_version", 0)) == CACHE_VERSION


def _cached(name: str) -> dict | None:
    path = cache_path(name)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as err:  # a damaged cache is rebuilt, never trusted
        warnings.warn(f"ignoring unreadable dataset cache {path} ({err}); rebuilding it")
        return None
    if not _valid(name, arrays):
        warnings.warn(f"ignoring dataset cache {path}: wrong keys, dtypes, shapes or cache version; rebuilding it")
        return None
    return arrays


def _build_cache(name: str, download: bool) -> dict:
    arrays, reasons = _from_mirror(name)
    if arrays is None and download:
        arrays, why = _from_torchvision(name)
        reasons.append(why)
    elif arrays is None:
        reasons.append("download=False")
    if arrays is None:
        raise DataNotFoundError(_missing_message(name, reasons))
    arrays["cache_version"] = np.array(CACHE_VERSION)
    if not _valid(name, arrays):
        raise DataIntegrityError(f"{name}: the decoded arrays have unexpected shapes or labels")
    with atomic_path(cache_path(name)) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return arrays


def _missing_message(name: str, reasons: list[str]) -> str:
    file, sha = MIRROR_FILES[name]
    return (
        f"{name} is not available ({'; '.join(reasons)}). Provide it in one of three ways:\n"
        f"  1. offline mirror: set SALBOOK_MIRROR to a folder holding {file} (sha256 {sha});\n"
        f"  2. internet: let torchvision download the original release into {config.data_dir() / 'torchvision'};\n"
        f"  3. cache: place a decoded {cache_path(name)} (keys x_train, y_train, x_test, y_test, source)."
    )


# --- the mirror -------------------------------------------------------------------------------------

def _from_mirror(name: str) -> tuple[dict | None, list[str]]:
    mirror = config.mirror_dir()
    file, expected = MIRROR_FILES[name]
    if mirror is None:
        return None, ["no mirror folder (SALBOOK_MIRROR unset and ../shared/datasets absent)"]
    path = mirror / file
    if not path.exists():
        return None, [f"mirror file {path} is missing"]
    actual = sha256_file(path)
    if actual != expected:
        raise DataIntegrityError(
            f"mirror file {path} is corrupt or truncated: sha256 {actual}, expected {expected}. "
            "Replace it with an intact copy, or unset SALBOOK_MIRROR to use another source."
        )
    with np.load(path, allow_pickle=False) as f:
        arrays = _decode_cifar_jpeg(f) if name == "cifar10" else {k: f[k] for k in f.files}
    arrays["source"] = np.array(SOURCES[name, "mirror"])
    return arrays, []


def _decode_cifar_jpeg(f) -> dict:
    """Decode the mirror's JPEGs, each split in the seeded order of :func:`mirror_order`."""
    from PIL import Image
    from tqdm import tqdm

    arrays = {}
    for split in ("train", "test"):
        blob, off = f[f"{split}_jpeg"], f[f"{split}_offsets"]
        order = mirror_order(len(off) - 1)
        images = [
            np.asarray(Image.open(io.BytesIO(blob[off[k]:off[k + 1]].tobytes())).convert("RGB"))
            for k in tqdm(order, desc=f"decoding CIFAR-10 {split} JPEGs", leave=False)
        ]
        arrays[f"x_{split}"] = np.stack(images)
        arrays[f"y_{split}"] = f[f"y_{split}"][order].astype(np.uint8)
    return arrays


def mirror_order(n: int) -> np.ndarray:
    """The fixed order of a split of the class-sorted CIFAR-10 mirror: image k of our split is image
    ``mirror_order(n)[k]`` of the mirror's."""
    return np.random.default_rng(MIRROR_ORDER_SEED).permutation(n)


# --- the download -------------------------------------------------------------------------------------

def _from_torchvision(name: str) -> tuple[dict | None, str]:
    import torchvision

    cls = {"mnist": torchvision.datasets.MNIST, "cifar10": torchvision.datasets.CIFAR10}[name]
    root = config.data_dir() / "torchvision"
    arrays = {}
    try:
        for split in ("train", "test"):
            ds = cls(root=str(root), train=split == "train", download=True)
            arrays[f"x_{split}"] = np.asarray(ds.data, dtype=np.uint8)
            arrays[f"y_{split}"] = np.asarray(ds.targets, dtype=np.uint8)
    except Exception as err:  # no internet, a proxy, a full disk: all mean "not from here"
        return None, f"torchvision download failed ({type(err).__name__}: {err})"
    arrays["source"] = np.array(SOURCES[name, "download"])
    return arrays, ""


# --- model inputs -------------------------------------------------------------------------------------

def nchw(x: np.ndarray) -> np.ndarray:
    """uint8 images ``(N, H, W)`` or ``(N, H, W, C)`` → contiguous uint8 ``(N, C, H, W)``."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 images (values 0..255), got {x.dtype}")
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    if x.ndim == 4:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise ValueError(f"expected images shaped (N, H, W) or (N, H, W, C), got {x.shape}")


def to_input(x: np.ndarray, device=None):
    """uint8 images ``(N, H, W[, C])`` → float32 tensor ``(N, C, H, W)`` in ``[0, 1]`` (model input)."""
    import torch

    return torch.from_numpy(nchw(x)).to(device).float().div_(255)


def to_images(inputs) -> np.ndarray:
    """Model inputs ``(N, C, H, W)`` in ``[0, 1]`` → uint8 images in data layout (for plotting)."""
    x = (inputs.detach().cpu().clamp(0, 1) * 255).round().byte().numpy()
    return x[:, 0] if x.shape[1] == 1 else x.transpose(0, 2, 3, 1)
