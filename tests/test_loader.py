"""Behaviour tests for course_lib.loader.DeviceLoader."""

import pytest
import torch

from course_lib.loader import Batch, DeviceLoader


def dataset(n: int = 10, c: int = 1, size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with the value i, so a batch shows which images it holds."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, c, size, size).contiguous()
    y = torch.arange(n) % 3
    return x, y


def epoch_indices(loader: DeviceLoader) -> list[int]:
    return torch.cat([b.index for b in loader]).tolist()


def test_each_epoch_is_a_permutation_covering_every_index_once():
    x, y = dataset(10)
    loader = DeviceLoader(x, y, batch_size=3, drop_last=False, device="cpu")
    assert len(loader) == 4
    batches = list(loader)
    assert [len(b.index) for b in batches] == [3, 3, 3, 1]
    assert sorted(epoch_indices(loader)) == list(range(10))


def test_drop_last_gives_full_batches_only():
    x, y = dataset(10)
    loader = DeviceLoader(x, y, batch_size=3, drop_last=True, device="cpu")
    assert len(loader) == 3
    batches = list(loader)
    assert len(batches) == 3 and all(len(b.index) == 3 for b in batches)
    index = torch.cat([b.index for b in batches])
    assert len(set(index.tolist())) == 9


@pytest.mark.parametrize(
    "n,batch_size,drop_last,expected", [(10, 5, True, 2), (10, 5, False, 2), (11, 5, False, 3)]
)
def test_len(n, batch_size, drop_last, expected):
    x, y = dataset(n)
    loader = DeviceLoader(x, y, batch_size=batch_size, drop_last=drop_last, device="cpu")
    assert len(loader) == expected == len(list(loader))


def test_same_seed_same_order_epochs_differ_seeds_differ():
    x, y = dataset(50)
    a = DeviceLoader(x, y, batch_size=10, device="cpu", seed=1)
    b = DeviceLoader(x, y, batch_size=10, device="cpu", seed=1)
    c = DeviceLoader(x, y, batch_size=10, device="cpu", seed=2)
    a1, a2 = epoch_indices(a), epoch_indices(a)
    assert a1 == epoch_indices(b) and a2 == epoch_indices(b)  # same sequence of epochs
    assert a1 != a2  # a new permutation each epoch
    assert a1 != epoch_indices(c)


def test_no_shuffle_keeps_the_dataset_order():
    x, y = dataset(7)
    loader = DeviceLoader(x, y, batch_size=3, shuffle=False, drop_last=False, device="cpu")
    assert epoch_indices(loader) == list(range(7))


def test_batches_hold_the_images_and_labels_at_their_indices():
    x, y = dataset(20, c=3)
    for batch in DeviceLoader(x, y, batch_size=6, device="cpu"):
        assert isinstance(batch, Batch)
        assert batch.x.dtype == torch.uint8 and batch.x.shape == (6, 3, 4, 4)
        assert batch.y.dtype == torch.int64 and batch.index.dtype == torch.int64
        assert torch.equal(batch.x, x[batch.index])
        assert torch.equal(batch.x[:, 0, 0, 0].long(), batch.index)  # image i holds the value i
        assert torch.equal(batch.y, y[batch.index])


def test_missing_labels_are_minus_one_and_int32_labels_become_int64():
    x, y = dataset(8)
    batch = next(iter(DeviceLoader(x, None, batch_size=4, device="cpu")))
    assert batch.y.dtype == torch.int64 and (batch.y == -1).all()
    batch = next(iter(DeviceLoader(x, y.int(), batch_size=4, device="cpu")))
    assert batch.y.dtype == torch.int64


def test_data_is_moved_once_to_the_device():
    x, y = dataset(8)
    loader = DeviceLoader(x, y, batch_size=4, device="cpu")
    assert loader.device == torch.device("cpu") and loader.images.device == torch.device("cpu")
    assert "8 images" in repr(loader)
    default = DeviceLoader(x, y, batch_size=4)  # device=None: config.get_device()
    assert next(iter(default)).x.device.type == default.device.type


BAD = {
    "float images": (lambda x, y: DeviceLoader(x.float(), y), TypeError),
    "images not a tensor": (lambda x, y: DeviceLoader(x.numpy(), y), TypeError),
    "3-D images": (lambda x, y: DeviceLoader(x[:, 0], y, batch_size=2), ValueError),
    "empty": (lambda x, y: DeviceLoader(x[:0], y[:0], batch_size=1), ValueError),
    "labels too short": (lambda x, y: DeviceLoader(x, y[:-1], batch_size=2), ValueError),
    "2-D labels": (lambda x, y: DeviceLoader(x, y.view(-1, 1), batch_size=2), ValueError),
    "float labels": (lambda x, y: DeviceLoader(x, y.float(), batch_size=2), TypeError),
    "batch_size 0": (lambda x, y: DeviceLoader(x, y, batch_size=0), ValueError),
    "batch_size float": (lambda x, y: DeviceLoader(x, y, batch_size=2.0), ValueError),
    "batch larger than data": (lambda x, y: DeviceLoader(x, y, batch_size=11), ValueError),
    "negative seed": (lambda x, y: DeviceLoader(x, y, batch_size=2, seed=-1), ValueError),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_inputs_raise(name):
    make, error = BAD[name]
    with pytest.raises(error):
        make(*dataset(10))


def test_batch_larger_than_data_is_fine_without_drop_last():
    x, y = dataset(10)
    loader = DeviceLoader(x, y, batch_size=11, drop_last=False, device="cpu")
    assert len(loader) == 1 and sorted(epoch_indices(loader)) == list(range(10))
