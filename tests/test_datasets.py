"""Behaviour of course_lib.datasets: the embedded data, the official-format readers, the errors."""

from __future__ import annotations

import gzip
import pickle
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import datasets
from course_lib.datasets import (
    FASHION_MNIST_CLASSES,
    PHOTO_SOURCES,
    PHOTO_TEST_SOURCES,
    DatasetMissingError,
    ImageData,
    build_embedded_fashion_mnist,
    load_dataset,
    load_photos,
    main,
    read_idx,
)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    """An idx file in the official format: magic 2049 (labels) / 2051 (images), big-endian sizes."""
    header = (2049 if array.ndim == 1 else 2051).to_bytes(4, "big")
    header += b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_fake_fashion_mnist(folder: Path, train_per_class: int = 5, test_per_class: int = 3, compress=False):
    """Random 28x28 images, every class present ``*_per_class`` times; returns the arrays written."""
    rng = np.random.default_rng(123)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        y = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        x = rng.integers(0, 256, (len(y), 28, 28), dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x, compress)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y, compress)
        arrays[prefix] = (x, y)
    return arrays


def image_set(images: torch.Tensor) -> set[bytes]:
    return {img.numpy().tobytes() for img in images}


# --- embedded Fashion-MNIST ---------------------------------------------------------------------


def test_embedded_shapes_dtypes_and_balance():
    for split, per_class in (("train", 1000), ("test", 200)):
        data = load_dataset("fashion_mnist_embedded", split)
        assert data.images.shape == (10 * per_class, 1, 28, 28) and data.images.dtype == torch.uint8
        assert data.labels.dtype == torch.int64
        assert data.labels.bincount().tolist() == [per_class] * 10
        assert data.classes == FASHION_MNIST_CLASSES and data.num_classes == 10
        assert data.image_shape == (1, 28, 28) and len(data) == 10 * per_class


def test_embedded_is_deterministic_and_fast():
    start = time.perf_counter()
    a = load_dataset("fashion_mnist_embedded", "train")
    assert time.perf_counter() - start < 2.0  # about 0.03 s; a rebuild or download would be far slower
    b = load_dataset("fashion_mnist_embedded", "train")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_embedded_train_and_test_share_no_image():
    train = load_dataset("fashion_mnist_embedded", "train")
    test = load_dataset("fashion_mnist_embedded", "test")
    assert not image_set(train.images) & image_set(test.images)


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST.exists(), reason="needs the Debian Fashion-MNIST files")
def test_embedded_npz_is_rebuilt_identically(tmp_path):
    out = build_embedded_fashion_mnist(datasets.DEBIAN_FASHION_MNIST, tmp_path / "subset.npz")
    with np.load(out) as rebuilt, np.load(datasets.data_dir() / datasets.EMBEDDED_FILE) as shipped:
        assert sorted(rebuilt) == sorted(shipped)
        for key in rebuilt:
            np.testing.assert_array_equal(rebuilt[key], shipped[key])


@pytest.mark.parametrize("compress", [False, True])
def test_build_selects_balanced_images_from_the_source(tmp_path, compress):
    source = write_fake_fashion_mnist(tmp_path / "raw", compress=compress)
    out = build_embedded_fashion_mnist(tmp_path / "raw", tmp_path / "out" / "subset.npz", 3, 2, verify=False)
    assert [p.name for p in out.parent.iterdir()] == ["subset.npz"]  # no temporary file left behind
    with np.load(out) as npz:
        for split, prefix, per_class in (("train", "train", 3), ("test", "t10k", 2)):
            x, y, index = npz[f"x_{split}"], npz[f"y_{split}"], npz[f"{split}_index"]
            assert x.shape == (10 * per_class, 28, 28) and x.dtype == np.uint8
            assert np.bincount(y).tolist() == [per_class] * 10
            assert len(set(index.tolist())) == len(index)
            np.testing.assert_array_equal(x, source[prefix][0][index])
            np.testing.assert_array_equal(y, source[prefix][1][index])


def test_build_is_deterministic_for_a_seed(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    picks = []
    for seed, name in ((0, "a.npz"), (0, "b.npz"), (1, "c.npz")):
        with np.load(
            build_embedded_fashion_mnist(tmp_path, tmp_path / name, 3, 2, seed, verify=False)
        ) as npz:
            picks.append(npz["train_index"].tolist())
    assert picks[0] == picks[1] and picks[0] != picks[2]


def test_build_rejects_files_with_the_wrong_checksum(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="checksum mismatch.*train-images-idx3-ubyte.*verify=False"):
        build_embedded_fashion_mnist(tmp_path, tmp_path / "subset.npz", 3, 2, verify=True)
    assert not (tmp_path / "subset.npz").exists()


def test_build_asks_for_more_images_than_a_class_has(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="need 6"):
        build_embedded_fashion_mnist(tmp_path, tmp_path / "subset.npz", 6, 2, verify=False)


def test_read_idx_rejects_a_file_that_is_not_idx(tmp_path):
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(ValueError, match="magic number"):
        read_idx(tmp_path, "train-labels-idx1-ubyte", verify=False)


def test_main_reports_a_missing_source_without_a_traceback(tmp_path, capsys):
    assert main(["--source", str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 1
    assert "train-images-idx3-ubyte" in capsys.readouterr().out


# --- real datasets from their official formats ----------------------------------------------------


def test_full_fashion_mnist_reads_torchvisions_layout(tmp_path):
    source = write_fake_fashion_mnist(tmp_path / "FashionMNIST" / "raw", compress=True)
    data = load_dataset("fashion_mnist", "test", root=tmp_path, verify=False)
    assert data.images.shape == (30, 1, 28, 28)
    np.testing.assert_array_equal(data.images[:, 0].numpy(), source["t10k"][0])
    np.testing.assert_array_equal(data.labels.numpy(), source["t10k"][1])


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    with open(path, "wb") as f:
        pickle.dump({b"data": images.reshape(len(images), 3072), b"labels": labels}, f)


def test_cifar10_reads_the_official_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (10, 3, 32, 32), dtype=np.uint8)
    for i in range(5):
        write_cifar_batch(folder / f"data_batch_{i + 1}", train[2 * i : 2 * i + 2], [i, 9 - i])
    write_cifar_batch(folder / "test_batch", train[:3], [1, 2, 3])
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, f)

    data = load_dataset("cifar10", "train", root=tmp_path)
    assert data.images.shape == (10, 3, 32, 32) and data.classes == names
    assert torch.equal(data.images, torch.from_numpy(train))  # rows are R, G, B planes of 32x32
    assert data.labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]
    assert load_dataset("cifar10", "test", root=tmp_path).labels.tolist() == [1, 2, 3]


def test_stl10_reads_the_column_major_binary(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    image = np.zeros((3, 96, 96), dtype=np.uint8)
    image[0, 10, :] = 255  # a horizontal red line in row 10
    image[2, :, 50] = 7  # a vertical blue line in column 50
    images = np.stack([image, image[:, ::-1]])
    (folder / "train_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())  # column-major per plane
    (folder / "train_y.bin").write_bytes(bytes([1, 10]))
    (folder / "unlabeled_X.bin").write_bytes(images[:1].transpose(0, 1, 3, 2).tobytes())
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")

    data = load_dataset("stl10", "train", root=tmp_path)
    assert torch.equal(data.images, torch.from_numpy(images)) and data.images.is_contiguous()
    assert data.labels.tolist() == [0, 9] and data.classes == names
    unlabeled = load_dataset("stl10", "unlabeled", root=tmp_path)
    assert unlabeled.images.shape == (1, 3, 96, 96) and unlabeled.labels.tolist() == [-1]


@pytest.mark.parametrize(
    "name, words",
    [
        ("cifar10", ["CIFAR-10", "163 MB", "download=True", "cifar-10-python.tar.gz"]),
        ("stl10", ["STL-10", "2.5 GB", "download=True", "stl10_binary.tar.gz"]),
        ("fashion_mnist_embedded", ["Fashion-MNIST", "scripts/build_data.py"]),
    ],
)
def test_a_missing_dataset_says_what_and_how_to_get_it(tmp_path, name, words):
    with pytest.raises(DatasetMissingError) as error:
        load_dataset(name, root=tmp_path)
    assert isinstance(error.value, FileNotFoundError)
    for word in [*words, str(tmp_path)]:
        assert word in str(error.value)


def test_missing_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    with pytest.raises(
        DatasetMissingError, match="Fashion-MNIST.*download=True.*apt-get install dataset-fashion-mnist"
    ):
        load_dataset("fashion_mnist", root=tmp_path)


def test_a_failed_download_is_a_dataset_missing_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no internet")

    monkeypatch.setattr("torchvision.datasets.utils.download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError, match="CIFAR-10.*no internet"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_urls_and_checksums_match_torchvision():
    from torchvision.datasets import CIFAR10, STL10, FashionMNIST

    assert (datasets.CIFAR10_URL, datasets.CIFAR10_MD5) == (CIFAR10.url, CIFAR10.tgz_md5)
    assert (datasets.STL10_URL, datasets.STL10_MD5) == (STL10.url, STL10.tgz_md5)
    assert datasets.FASHION_MNIST_URL in FashionMNIST.mirrors
    assert {f"{k}.gz": v for k, v in datasets.FASHION_MNIST_GZ_MD5.items()} == dict(FashionMNIST.resources)
    assert FASHION_MNIST_CLASSES == FashionMNIST.classes


def test_unknown_name_or_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'.*cifar10"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="no split 'val'.*'train', 'test'"):
        load_dataset("cifar10", "val")


# --- photos and faces -----------------------------------------------------------------------


def test_photos_test_split_uses_unseen_source_images():
    train, test = load_dataset("photos", "train"), load_dataset("photos", "test")
    assert train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.uint8
    assert 2000 < len(train) < 6000 and len(test) > 300
    assert train.classes == test.classes == list(PHOTO_SOURCES)
    test_labels = {PHOTO_SOURCES.index(n) for n in PHOTO_TEST_SOURCES}
    assert set(test.labels.tolist()) == test_labels
    assert set(train.labels.tolist()) == set(range(len(PHOTO_SOURCES))) - test_labels
    assert not image_set(train.images) & image_set(test.images)


def test_photos_are_copies_of_the_cache_and_size_is_an_option():
    a = load_photos("test")
    a.images.zero_()
    assert load_photos("test").images.any()
    assert load_photos("test", size=48).image_shape == (3, 48, 48)


def test_photo_files_are_what_the_packages_return():
    import skimage.data

    for name in PHOTO_SOURCES:
        assert datasets._read_photo(name, max_side=384).shape[2] == 3
    np.testing.assert_array_equal(datasets._read_photo("astronaut", max_side=512), skimage.data.astronaut())


def test_faces_are_the_lfw_subset():
    train, test = load_dataset("faces", "train"), load_dataset("faces", "test")
    assert train.images.shape == (160, 1, 25, 25) and test.images.shape == (40, 1, 25, 25)
    assert train.classes == ["non-face", "face"]
    assert train.labels.bincount().tolist() == [80, 80] and test.labels.bincount().tolist() == [20, 20]


# --- ImageData --------------------------------------------------------------------------------


def test_image_data_subset_to_and_validation():
    data = ImageData(torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1), torch.arange(6), ["a"] * 6)
    assert data.subset([4, 1]).labels.tolist() == [4, 1]
    assert data.subset(torch.tensor([True, False] * 3)).labels.tolist() == [0, 2, 4]
    assert data.subset(slice(1, 3)).labels.tolist() == [1, 2]
    assert data.subset(np.array([5])).images.shape == (1, 1, 1, 1)
    assert data.to("cpu").classes == data.classes
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 1, 1, 1), torch.zeros(2, dtype=torch.int64), ["a"])
    with pytest.raises(ValueError, match="int64"):
        ImageData(torch.zeros(2, 1, 1, 1, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), ["a"])


# --------------------------------------------------------------------------- damaged files: a clear error


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong arrays"])
def test_a_damaged_embedded_npz_names_the_file_and_the_rebuild_command(tmp_path, damage):
    from course_lib.config import data_dir
    from course_lib.datasets import EMBEDDED_FILE, DatasetCorruptError

    good = (data_dir() / EMBEDDED_FILE).read_bytes()
    path = tmp_path / EMBEDDED_FILE
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    else:
        np.savez(path, x_train=np.zeros((3, 28, 28), np.float32), y_train=np.zeros(3, np.int64))
    with pytest.raises(DatasetCorruptError, match=rf"{EMBEDDED_FILE}.*python -m course_lib build-data"):
        load_dataset("fashion_mnist_embedded", "train", root=tmp_path)


def cifar_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    images = np.zeros((2, 3, 32, 32), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        write_cifar_batch(folder / name, images, [0, 1])
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"a"] * 10}, f)
    return folder


@pytest.mark.parametrize("damage", ["cut", "wrong width", "labels"])
def test_a_truncated_cifar10_file_says_which_and_how_to_get_it_again(tmp_path, damage):
    from course_lib.datasets import DatasetCorruptError

    folder = cifar_folder(tmp_path)
    bad = folder / "data_batch_3"
    if damage == "cut":
        bad.write_bytes(bad.read_bytes()[:100])
    elif damage == "wrong width":
        with open(bad, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    else:
        with open(bad, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, f)
    with pytest.raises(DatasetCorruptError, match=r"data_batch_3 is truncated or damaged.*download=True"):
        load_dataset("cifar10", "train", root=tmp_path)
    assert load_dataset("cifar10", "test", root=tmp_path).labels.tolist() == [0, 1]  # the good files still load


@pytest.mark.parametrize("damage", ["images", "labels"])
def test_a_truncated_stl10_file_says_which_and_how_to_get_it_again(tmp_path, damage):
    from course_lib.datasets import DatasetCorruptError

    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "train_X.bin").write_bytes(bytes(2 * 3 * 96 * 96 - (1000 if damage == "images" else 0)))
    (folder / "train_y.bin").write_bytes(bytes([1, 2] if damage == "images" else [1]))
    (folder / "class_names.txt").write_text("\n".join("abcdefghij") + "\n")
    name = "train_X.bin" if damage == "images" else "train_y.bin"
    with pytest.raises(DatasetCorruptError, match=rf"{name} is truncated or damaged.*stl10.*download=True"):
        load_dataset("stl10", "train", root=tmp_path)


# ------------------------------------------------------------------ LFW people (scikit-learn's on-disk format)


def write_fake_lfw(home: Path, people: dict[str, int]) -> None:
    """scikit-learn's LFW layout under ``home`` (its data_home): lfw_home/pairs*.txt and
    lfw_home/lfw_funneled/<Name>/<Name>_0001.jpg, 250 x 250 RGB photos, person k's all of grey level 40 k + 20."""
    from PIL import Image

    lfw = home / "lfw_home"
    for name in ("pairsDevTrain.txt", "pairsDevTest.txt", "pairs.txt"):
        (lfw / name).parent.mkdir(parents=True, exist_ok=True)
        (lfw / name).write_text("1\n")
    for k, (person, count) in enumerate(sorted(people.items())):
        folder = lfw / "lfw_funneled" / person
        folder.mkdir(parents=True)
        for i in range(1, count + 1):
            Image.new("RGB", (250, 250), (40 * k + 20,) * 3).save(folder / f"{person}_{i:04d}.jpg", quality=95)


def test_lfw_people_reads_scikit_learns_format_with_identities(tmp_path):
    write_fake_lfw(tmp_path, {"Ada_Lovelace": 3, "Alan_Turing": 4, "Grace_Hopper": 1})
    data = datasets.load_lfw_people(tmp_path, min_faces_per_person=2, resize=0.4)
    assert data.classes == ["Ada Lovelace", "Alan Turing"]  # scikit-learn spells names with spaces; one photo: left out
    assert data.images.dtype == torch.uint8 and data.images.shape == (7, 1, 50, 37)
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1, 1]
    for label, level in ((0, 20), (1, 60)):  # each person's photos keep their grey level
        assert (data.images[data.labels == label].float() - level).abs().max() <= 2
    assert len(datasets.load_lfw_people(tmp_path, min_faces_per_person=1)) == 8
    with pytest.raises(ValueError, match="min_faces_per_person"):  # nobody has five photos
        datasets.load_lfw_people(tmp_path, min_faces_per_person=5)
    with pytest.raises(ValueError, match="resize"):
        datasets.load_lfw_people(tmp_path, resize=0.0)


def test_lfw_people_missing_offline_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetMissingError, match=r"download=True.*lfw_home|lfw_home.*download=True") as error:
        datasets.load_lfw_people(tmp_path)
    assert str(tmp_path / "lfw_home") in str(error.value)
    (tmp_path / "lfw_home" / "lfw_funneled" / "A_B").mkdir(parents=True)  # photos but no index files
    with pytest.raises(DatasetMissingError, match="incomplete"):
        datasets.load_lfw_people(tmp_path)
