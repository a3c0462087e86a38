"""Every dataset of the course, as one uint8 tensor of images and one of labels.

``load_dataset(name, split)`` returns an :class:`ImageData`. The *embedded* data
work offline on any machine: a balanced Fashion-MNIST subset kept in
``data/fashion_mnist_subset.npz`` (built by ``python scripts/build_data.py``),
colour photo patches cut from the sample images that scikit-image, scikit-learn and
matplotlib ship, and scikit-image's LFW face / non-face subset. The *real* datasets
(full Fashion-MNIST, CIFAR-10, STL-10) are read from their official file formats in
``data/cache`` and downloaded with checksums when ``download=True``.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from course_lib.config import check_int, check_number, data_dir
from course_lib.files import atomic_write

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # training pixels in [0, 1]
EMBEDDED_FILE = "fashion_mnist_subset.npz"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# MD5 of the *decompressed* idx files (Debian recompresses the .gz, so those differ),
# then the MD5 of the official .gz downloads (as torchvision lists them).
FASHION_MNIST_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
FASHION_MNIST_GZ_MD5 = {
    "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # of the .tar.gz
STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
STL10_MD5 = "91f7769df0f17e558f3565bffb0c7dfb"  # of the .tar.gz
# Colour photos that installed packages ship, as (package, file inside it): nothing is downloaded.
# They are what skimage.data.astronaut(), sklearn.datasets.load_sample_image("china.jpg"), ... return,
# read directly because importing sklearn.datasets alone takes over a second.
PHOTO_FILES = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "immunohistochemistry": ("skimage", "data/ihc.png"),
    "retina": ("skimage", "data/retina.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "coffee": ("skimage", "data/coffee.png"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
PHOTO_SOURCES = tuple(PHOTO_FILES)
PHOTO_TEST_SOURCES = ("coffee", "grace_hopper")
SPLITS = {
    "fashion_mnist_embedded": ("train", "test"),
    "fashion_mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "stl10": ("train", "test", "unlabeled"),
    "photos": ("train", "test"),
    "faces": ("train", "test"),
}


class DatasetMissingError(FileNotFoundError):
    """A dataset is not on disk; the message says what is missing and how to get it."""


class DatasetCorruptError(ValueError):
    """A dataset file is on disk but truncated or damaged; the message names it and how to get it again."""


@dataclass
class ImageData:
    """Images as one uint8 tensor (N, C, H, W) with int64 labels (N,) and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 of shape ({len(self.images)},), "
                f"got {self.labels.dtype} {tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def to(self, device: torch.device | str) -> ImageData:
        """The same data on ``device``."""
        return ImageData(self.images.to(device), self.labels.to(device), list(self.classes))

    def subset(self, index: torch.Tensor | np.ndarray | list[int] | slice) -> ImageData:
        """The images selected by ``index`` (indices, a boolean mask or a slice)."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index).reshape(-1).to(self.images.device)
            index = index if index.dtype == torch.bool else index.long()
        return ImageData(self.images[index], self.labels[index], list(self.classes))


def load_dataset(
    name: str, split: str = "train", root: Path | None = None, download: bool = False, *, verify: bool = True
) -> ImageData:
    """Load dataset ``name`` ("fashion_mnist_embedded", "photos", "cifar10", ...), split ``split``.

    ``root`` is the folder of the npz for the embedded Fashion-MNIST (default ``data/``)
    and the cache folder of the real datasets (default ``data/cache``); photos and faces
    come from installed packages. ``verify=False`` skips the checksum check of the
    Fashion-MNIST idx files (for files you made yourself).
    """
    if name not in SPLITS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {list(SPLITS)}")
    if split not in SPLITS[name]:
        raise ValueError(f"dataset {name!r} has no split {split!r}: expected one of {list(SPLITS[name])}")
    if name == "fashion_mnist_embedded":
        return _load_embedded(split, Path(root) if root is not None else data_dir(), download)
    cache = Path(root) if root is not None else data_dir() / "cache"
    if name == "fashion_mnist":
        folder = fashion_mnist_dir(cache, download)
        prefix = "train" if split == "train" else "t10k"
        x = read_idx(folder, f"{prefix}-images-idx3-ubyte", verify)
        y = read_idx(folder, f"{prefix}-labels-idx1-ubyte", verify)
        return _image_data(x[:, None], y, FASHION_MNIST_CLASSES)
    if name == "cifar10":
        return _load_cifar10(split, cache, download)
    if name == "stl10":
        return _load_stl10(split, cache, download)
    if name == "photos":
        return load_photos(split)
    return _load_faces(split)


def _image_data(images: np.ndarray, labels: np.ndarray, classes: list[str]) -> ImageData:
    images = np.require(images, requirements=["C", "W"])  # contiguous and writable (copies if needed)
    return ImageData(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), list(classes))


def _missing(what: str, size: str, folder: Path, how: str) -> DatasetMissingError:
    return DatasetMissingError(f"{what} ({size}) not found in {folder}: {how}")


def _download(url: str, folder: Path, md5: str, what: str) -> None:
    """torchvision's download with an MD5 check; failures become a DatasetMissingError."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(url, download_root=str(folder), md5=md5)
    except Exception as error:  # no internet, proxy, bad checksum: one clear message
        raise DatasetMissingError(
            f"downloading {what} from {url} into {folder} failed ({type(error).__name__}: {error}); "
            f"download it on a machine with internet and copy it there"
        ) from None


# --- Fashion-MNIST: the official idx files ---------------------------------------------------------


def read_idx(folder: Path, name: str, verify: bool = True) -> np.ndarray:
    """Read the idx file ``folder/name`` (or ``name.gz``) as a uint8 array, checking its MD5."""
    path = Path(folder) / name
    path = path if path.exists() else path.with_name(name + ".gz")
    if not path.exists():
        raise DatasetMissingError(f"{name} (or {name}.gz) not found in {folder}")
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if verify and name in FASHION_MNIST_MD5:
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if md5 != FASHION_MNIST_MD5[name]:
            raise ValueError(
                f"checksum mismatch for {path}: the MD5 of its decompressed content is {md5}, expected "
                f"{FASHION_MNIST_MD5[name]} (the official Fashion-MNIST file); pass verify=False for files "
                f"you made yourself"
            )
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not a uint8 idx file: expected magic number 2049 or 2051")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != 4 + 4 * ndim + int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: its header says shape {shape}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def fashion_mnist_dir(cache: Path | None = None, download: bool = False) -> Path:
    """The folder holding the four official Fashion-MNIST idx files (``.gz`` or not).

    Looks in ``cache/FashionMNIST/raw`` (torchvision's layout), then in the Debian
    package's folder; downloads into the former with ``download=True``.
    """
    folder = Path(cache if cache is not None else data_dir() / "cache") / "FashionMNIST" / "raw"

    def complete(d: Path) -> bool:
        return all((d / n).exists() or (d / f"{n}.gz").exists() for n in FASHION_MNIST_MD5)

    for candidate in (folder, DEBIAN_FASHION_MNIST):
        if complete(candidate):
            return candidate
    if not download:
        raise _missing(
            "Fashion-MNIST", "30 MB download", folder,
            "run load_dataset('fashion_mnist', download=True) on a machine with internet, "
            f"or on Debian/Ubuntu `apt-get install dataset-fashion-mnist` (files in {DEBIAN_FASHION_MNIST}), "
            f"or download the four idx files from {FASHION_MNIST_URL} into that folder",
        )  # fmt: skip
    for name, md5 in FASHION_MNIST_GZ_MD5.items():
        _download(FASHION_MNIST_URL + name + ".gz", folder, md5, "Fashion-MNIST")
    return folder


def build_embedded_fashion_mnist(
    source_dir: Path,
    out_path: Path,
    train_per_class: int = 1000,
    test_per_class: int = 200,
    seed: int = 0,
    verify: bool = True,
) -> Path:
    """Write a balanced Fashion-MNIST subset (uint8 x_train, y_train, x_test, y_test) to ``out_path``.

    Images are drawn per class with ``np.random.default_rng(seed)`` from the official
    train / t10k files and kept in file order; ``train_index`` / ``test_index`` record
    their positions there. ``verify`` checks the files' MD5 and the published training
    pixel mean/std (0.2860 / 0.3530). The npz is written atomically.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, prefix, per_class in (("train", "train", train_per_class), ("test", "t10k", test_per_class)):
        x = read_idx(source_dir, f"{prefix}-images-idx3-ubyte", verify)
        y = read_idx(source_dir, f"{prefix}-labels-idx1-ubyte", verify)
        if x.ndim != 3 or y.shape != x.shape[:1]:
            raise ValueError(
                f"{prefix} files: expected images (N, H, W) and labels (N,), got {x.shape}, {y.shape}"
            )
        if verify and split == "train":
            mean, std = _pixel_mean_std(x)
            if abs(mean - FASHION_MNIST_MEAN) > 5e-5 or abs(std - FASHION_MNIST_STD) > 5e-5:
                raise ValueError(
                    f"training pixels have mean {mean:.4f} std {std:.4f}, expected 0.2860 / 0.3530"
                )
        chosen = []
        for c in range(len(FASHION_MNIST_CLASSES)):
            candidates = np.flatnonzero(y == c)
            if len(candidates) < per_class:
                raise ValueError(
                    f"{prefix} files have {len(candidates)} images of class {c}, need {per_class}"
                )
            chosen.append(rng.choice(candidates, per_class, replace=False))
        index = np.sort(np.concatenate(chosen))
        arrays |= {f"x_{split}": x[index], f"y_{split}": y[index], f"{split}_index": index.astype(np.int32)}
    out_path = Path(out_path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: given a path, numpy would append ".npz" to the temporary name
            np.savez_compressed(f, **arrays)

    atomic_write(out_path, write)
    return out_path


def _pixel_mean_std(x: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 pixels scaled to [0, 1], from their histogram (no float copy)."""
    counts = np.bincount(x.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    mean = (counts * values).sum() / counts.sum()
    return float(mean), float(np.sqrt((counts * values**2).sum() / counts.sum() - mean**2))


def _load_embedded(split: str, folder: Path, download: bool) -> ImageData:
    path = folder / EMBEDDED_FILE
    if not path.exists():
        if not download:
            raise _missing(
                f"The embedded Fashion-MNIST subset {EMBEDDED_FILE}", "5 MB, built from the 30 MB official files",
                folder, f"run `python scripts/build_data.py` (reads {DEBIAN_FASHION_MNIST}, or add --download), "
                "or load_dataset('fashion_mnist_embedded', download=True)",
            )  # fmt: skip
        build_embedded_fashion_mnist(fashion_mnist_dir(data_dir() / "cache", download=True), path)
    try:
        with np.load(path) as npz:
            images, labels = npz[f"x_{split}"], npz[f"y_{split}"]
        if images.dtype != np.uint8 or images.ndim != 3 or labels.shape != (len(images),):
            raise ValueError(f"x_{split} {images.dtype} {images.shape}, y_{split} {labels.shape}")
    except Exception as e:  # a truncated zip, a missing array, arrays of other shapes
        raise DatasetCorruptError(
            f"{path} is damaged or not the course's Fashion-MNIST subset ({type(e).__name__}: {e}); "
            "rebuild it with `python -m course_lib build-data` (or `git checkout data/` for the committed copy)"
        ) from e
    return _image_data(images[:, None], labels, FASHION_MNIST_CLASSES)


def _corrupt(path: Path, what: str, name: str, detail: str) -> DatasetCorruptError:
    return DatasetCorruptError(f"{path} is truncated or damaged ({detail}): delete {path.parent} and run "
                               f"load_dataset('{name}', download=True) to get {what} again")


# --- CIFAR-10 and STL-10: the official python-pickle and binary formats ----------------------------------


def _fetch_archive(folder: Path, names: list[str], cache: Path, download: bool, what: str, name: str, size: str,
                   url: str, md5: str) -> None:
    """Make sure ``folder`` holds ``names``: download and extract ``url`` into ``cache`` if allowed,
    else raise a DatasetMissingError that says how to get it."""
    if all((folder / n).exists() for n in names):
        return
    if not download:
        raise _missing(what, size, folder, f"run load_dataset('{name}', download=True) on a machine with internet, "
                                           f"or download {url} and extract it into {cache}")
    _download(url, cache, md5, what)


def _load_cifar10(split: str, cache: Path, download: bool) -> ImageData:
    folder = cache / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    _fetch_archive(folder, [*names, "batches.meta"], cache, download, "CIFAR-10", "cifar10", "163 MB download",
                   CIFAR10_URL, CIFAR10_MD5)
    batches = []
    for n in [*names, "batches.meta"]:
        try:
            with open(folder / n, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            if n == "batches.meta":
                classes = [c.decode() for c in batch[b"label_names"]]
                continue
            data, batch_labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch_labels) != len(data):
                raise ValueError(f"data {data.dtype} {data.shape}, {len(batch_labels)} labels")
            batches.append((data, batch_labels))
        except Exception as e:  # EOFError/UnpicklingError of a cut file, missing keys, wrong shapes
            raise _corrupt(folder / n, "CIFAR-10", "cifar10", f"{type(e).__name__}: {e}") from e
    images = np.concatenate([d for d, _ in batches]).reshape(-1, 3, 32, 32)  # rows are R, G, B planes
    labels = np.concatenate([y for _, y in batches])
    return _image_data(images, labels, classes)


def _load_stl10(split: str, cache: Path, download: bool) -> ImageData:
    folder = cache / "stl10_binary"
    names = [f"{split}_X.bin", "class_names.txt"] + ([f"{split}_y.bin"] if split != "unlabeled" else [])
    _fetch_archive(folder, names, cache, download, "STL-10", "stl10", "2.5 GB download", STL10_URL, STL10_MD5)
    images = np.fromfile(folder / f"{split}_X.bin", dtype=np.uint8)
    if images.size % (3 * 96 * 96):
        raise _corrupt(folder / f"{split}_X.bin", "STL-10", "stl10",
                       f"{images.size} bytes is not a whole number of 3x96x96 images")
    images = images.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)  # each plane is stored column-major
    if split == "unlabeled":
        labels = np.full(len(images), -1, dtype=np.int64)
    else:
        labels = np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1  # 1..10 -> 0..9
        if len(labels) != len(images) or (len(labels) and not 0 <= labels.min() <= labels.max() <= 9):
            raise _corrupt(folder / f"{split}_y.bin", "STL-10", "stl10",
                           f"{len(labels)} labels in 1..10 expected for {len(images)} images")
    classes = (folder / "class_names.txt").read_text().split()
    return _image_data(images, labels, classes)


# --- Photos and faces: images that installed packages ship -------------------------------------------


def _read_photo(name: str, max_side: int) -> np.ndarray:
    """The (H, W, 3) uint8 source photo ``name``, shrunk so that its longer side is at most ``max_side``."""
    from PIL import Image

    package, file = PHOTO_FILES[name]
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    path = Path(spec.origin).parent / file if spec and spec.origin else Path(package) / file
    if not path.exists():
        raise DatasetMissingError(
            f"photo {name!r} not found at {path}: "
            f"pip install {dict(skimage='scikit-image', sklearn='scikit-learn').get(package, package)}"
        )
    with Image.open(path) as image:
        image = image.convert("RGB")
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # keeps the aspect ratio, never enlarges
    return np.array(image)


def load_photos(split: str = "train", size: int = 32, max_side: int = 384) -> ImageData:
    """Colour patches (N, 3, size, size) cut on a grid with stride ``size // 2``.

    Each source photo is shrunk so that its longer side is at most ``max_side``;
    nearly flat patches (pixel std < 2) are dropped. The label is the index of the
    source photo in ``PHOTO_SOURCES``; split="test" uses only ``PHOTO_TEST_SOURCES``,
    which split="train" never sees.
    """
    if split not in SPLITS["photos"]:
        raise ValueError(f"photos have no split {split!r}: expected one of {list(SPLITS['photos'])}")
    if not 8 <= size <= max_side:
        raise ValueError(f"size must be between 8 and max_side={max_side}, got {size}")
    data = _cut_photos(split, size, max_side)
    return ImageData(data.images.clone(), data.labels.clone(), list(data.classes))


@functools.lru_cache(maxsize=8)
def _cut_photos(split: str, size: int, max_side: int) -> ImageData:
    images, labels = [], []
    for label, name in enumerate(PHOTO_SOURCES):
        if (name in PHOTO_TEST_SOURCES) != (split == "test"):
            continue
        x = torch.from_numpy(_read_photo(name, max_side)).permute(2, 0, 1)  # (3, H, W)
        stride = size // 2
        patches = x.unfold(1, size, stride).unfold(2, size, stride)  # (3, rows, cols, size, size)
        patches = patches.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size)
        patches = patches[patches.flatten(1).float().std(dim=1) >= 2.0]
        images.append(patches)
        labels.append(torch.full((len(patches),), label, dtype=torch.int64))
    return ImageData(torch.cat(images), torch.cat(labels), list(PHOTO_SOURCES))


def _load_faces(split: str) -> ImageData:
    """scikit-image's LFW subset: 100 faces then 100 non-faces (background crops), 25x25 grey.

    There are no identities. Images 80-99 of each kind form split="test", the rest "train".
    """
    import skimage.data

    x = np.round(skimage.data.lfw_subset() * 255).astype(np.uint8)  # floats in [0, 1] on disk
    labels = np.repeat(np.array([1, 0]), 100)  # 1 = face
    keep = (np.arange(200) % 100 >= 80) == (split == "test")
    return _image_data(x[keep, None], labels[keep], ["non-face", "face"])


# --- LFW people: faces with identities (the full profile's faces for notebook 09) --------------------------

LFW_URL = "http://vis-www.cs.umass.edu/lfw/"


def load_lfw_people(root: Path | None = None, min_faces_per_person: int = 20, resize: float = 0.4,
                    download: bool = False) -> ImageData:
    """Labeled Faces in the Wild, people with at least ``min_faces_per_person`` photos: grey uint8 faces
    (N, 1, H, W) (the central 125 x 94 crop, scaled by ``resize``: 50 x 37 for 0.4) with one label per
    person, ``classes`` their names (sorted, "Ada Lovelace"), through scikit-learn's ``fetch_lfw_people``.

    ``root`` is scikit-learn's ``data_home`` (default ``data/cache``): the photos live in
    ``root/lfw_home/lfw_funneled/<Name>/<Name>_0001.jpg`` with scikit-learn's three ``pairs*.txt``
    index files beside that folder. Without them and without ``download`` this raises a
    ``DatasetMissingError`` saying how to get them; ``download=True`` lets scikit-learn fetch them (about 230 MB).
    """
    check_int(min_faces_per_person, "min_faces_per_person")
    check_number(resize, "resize", 0.05, 1.0)
    home = Path(root) if root is not None else data_dir() / "cache"
    folder = home / "lfw_home"
    if not download and not (folder / "lfw_funneled").is_dir():
        raise _missing("LFW (Labeled Faces in the Wild, funneled)", "about 230 MB download", folder,
                       "run load_lfw_people(download=True) on a machine with internet (scikit-learn's "
                       f"fetch_lfw_people downloads it into {folder}), or copy lfw_home from such a machine; "
                       f"the photos are also at {LFW_URL}")
    from sklearn.datasets import fetch_lfw_people

    try:
        bunch = fetch_lfw_people(data_home=str(home), min_faces_per_person=min_faces_per_person, resize=resize,
                                 color=False, download_if_missing=download)
    except OSError as error:  # scikit-learn's message for a missing index file or a failed download
        raise DatasetMissingError(f"LFW in {folder} is incomplete or could not be downloaded ({error}); run "
                                  "load_lfw_people(download=True) on a machine with internet") from None
    if len(bunch.images) == 0:
        raise ValueError(f"no person in {folder / 'lfw_funneled'} has {min_faces_per_person} photos or more")
    images = np.round(bunch.images * 255).clip(0, 255).astype(np.uint8)[:, None]  # floats in [0, 1] -> uint8
    return _image_data(images, bunch.target, [str(n) for n in bunch.target_names])


# --- Command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Write the embedded Fashion-MNIST subset (``build-data``) from the official files."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--source", type=Path, help="folder of the official idx files (.gz or not)")
    parser.add_argument("--out", type=Path, default=data_dir() / EMBEDDED_FILE, help="npz to write")
    parser.add_argument("--download", action="store_true", help="download the official files if needed")
    args = parser.parse_args(argv)
    try:
        source = args.source or fashion_mnist_dir(data_dir() / "cache", args.download)
        out = build_embedded_fashion_mnist(source, args.out)
    except (DatasetMissingError, ValueError) as error:
        print(f"error: {error}")
        return 1
    print(f"read {source} (checksums and pixel mean/std verified)")
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0
