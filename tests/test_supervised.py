"""Behaviour tests for the supervised baseline (course_lib.supervised): trained from the random-init weights on
the labelled images alone, deterministic, its recipe chosen on the validation split, bad input refused."""

import math

import pytest
import torch
from conftest import make_image_data, tiny_profile

from course_lib import supervised as S
from course_lib.augment import to_float
from course_lib.baselines import random_init_backbone
from course_lib.checkpoints import weights_digest
from course_lib.config import get_profile
from course_lib.datasets import ImageData
from course_lib.evaluate import Evaluation, accuracy, label_draws, protocol_for, split_validation
from course_lib.models import SmallConvNet

pytestmark = pytest.mark.usefixtures("one_thread")
CPU = torch.device("cpu")


def profile_of(**changes):
    """A tiny profile: 20 images per class kept (4 for validation), budgets of 2 labels per class and all."""
    return tiny_profile(**{"labels_per_class": (2, None), "max_images_per_class": 20, **changes})


def data(n: int = 60, seed: int = 0) -> ImageData:
    return make_image_data(n, num_classes=3, size=12, seed=seed)


def short(**changes) -> S.SupervisedConfig:
    return S.SupervisedConfig(**{"steps": 6, "lr": 3e-3, "batch_size": 8, "crop_padding": 1, **changes})


@pytest.fixture
def short_recipes(monkeypatch):
    """Every budget of the fast recipes shortened to a few steps."""
    monkeypatch.setitem(S.RECIPES, "fast", {b: {"steps": 4, "lr": 3e-3, "batch_size": 8} for b in ("10", "100", "all")})


def net(seed: int = 0) -> SmallConvNet:
    torch.manual_seed(seed)
    return SmallConvNet(1, width=4).eval()


# ---------------------------------------------------------------- only the labelled images


def test_training_sees_only_the_labelled_images(monkeypatch):
    """The run depends on the labelled images and their labels only: replacing every other image and label
    changes nothing, and no batch that reaches the step holds an image from outside the index."""
    train = data()
    index = torch.tensor([0, 4, 7, 9, 14, 20, 33])
    other = torch.ones(len(train), dtype=torch.bool)
    other[index] = False
    changed = ImageData(train.images.clone(), train.labels.clone(), list(train.classes))
    changed.images[other] = make_image_data(int(other.sum()), num_classes=3, size=12, seed=9).images
    changed.labels[other] = (changed.labels[other] + 1) % 3
    seen = []
    real_loop = S.train_loop

    def spy(modules, step, loader, *args, **kwargs):
        return real_loop(modules, lambda b: seen.append(b.x.clone()) or step(b), loader, *args, **kwargs)

    monkeypatch.setattr(S, "train_loop", spy)
    a = S.train_supervised(net(), train, index, short(), seed=3)
    b = S.train_supervised(net(), changed, index, short(), seed=3)
    assert a.history.losses == b.history.losses
    for (k, v), w in zip(a.backbone.state_dict().items(), b.backbone.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    labelled = {bytes(x.numpy()) for x in train.images[index]}
    assert len(seen) == 2 * 6 and all(bytes(x.numpy()) in labelled for batch in seen for x in batch)


def test_training_starts_from_the_random_init_weights_and_leaves_them_alone(monkeypatch, short_recipes):
    """Every run of the row starts from the random-init baseline's backbone (seeded with profile.seed), one run
    per label draw of the probes ("all": one), and the backbone it was given is not changed."""
    profile = profile_of(seed=2)
    train, test = data(), data(30, seed=1)
    expected = weights_digest(random_init_backbone(profile, 1, CPU))
    starts, indices = [], []
    real = S.train_supervised

    def spy(backbone, train_data, index, cfg, seed=0, progress=False):
        starts.append(weights_digest(backbone))
        indices.append(index)
        run = real(backbone, train_data, index, cfg, seed, progress)
        assert weights_digest(backbone) == starts[-1]  # the copy trained, not the backbone
        return run

    monkeypatch.setattr(S, "train_supervised", spy)
    row = S.supervised_baseline(train, test, profile, CPU)
    assert starts == [expected] * 4
    protocol = protocol_for(profile)
    draws = [*label_draws(train.labels, protocol, 2), *label_draws(train.labels, protocol, None)]
    assert len(indices) == 4 and all(torch.equal(i, d) for i, d in zip(indices, draws, strict=True))
    _, val = split_validation(train.labels, protocol.validation_per_class, protocol.seed)
    assert all(not set(i.tolist()) & set(val.tolist()) for i in indices)  # never a validation image
    assert isinstance(row, Evaluation) and row.method == S.ROW and row.kind == "supervised" and row.with_labels
    assert [len(row.probe[b]) for b in ("2", "all")] == [3, 1]
    assert math.isnan(row.knn) and row.finetune == []
    assert row.compute["steps"] == 4 * 4 and set(row.compute["per_run"]) == {"2", "all"}
    assert Evaluation.from_dict(row.as_dict()) == row  # NaN kNN included


def test_the_row_is_deterministic_and_learns(short_recipes, monkeypatch):
    monkeypatch.setitem(S.RECIPES, "fast", {b: {"steps": 60, "lr": 1e-2, "batch_size": 16, "crop_padding": 0}
                                            for b in ("10", "100", "all")})
    profile = profile_of()
    train, test = data(), data(30, seed=1)
    first = S.supervised_baseline(train, test, profile, CPU)
    again = S.supervised_baseline(train, test, profile, CPU)
    assert first.probe == again.probe
    assert first.mean("all") > 0.6  # three classes marked by bright bands: chance is 1/3


def test_a_run_is_deterministic_and_its_head_is_its_own():
    train = data()
    index = torch.arange(0, 60, 2)
    a = S.train_supervised(net(), train, index, short(), seed=1)
    b = S.train_supervised(net(), train, index, short(), seed=1)
    c = S.train_supervised(net(), train, index, short(), seed=2)
    assert a.history.losses == b.history.losses and torch.equal(a.predict(train.images), b.predict(train.images))
    assert a.history.losses != c.history.losses  # the seed draws the head, the batches and the views
    assert a.predict(train.images).shape == (60, 3) and a.history.steps == 6 and a.history.images == 6 * 8


# ---------------------------------------------------------------- the recipe is chosen on the validation split


def test_tune_scores_each_recipe_on_the_validation_split(short_recipes):
    """tune takes the training split only (no test data can come in) and scores every recipe on the protocol's
    validation split, after training on the first label draw, which holds no validation image."""
    profile = profile_of()
    train = data()
    grid = S.grid_of(steps=[3, 6], lr=[1e-3, 1e-2])
    assert grid == [{"steps": 3, "lr": 1e-3}, {"steps": 3, "lr": 1e-2}, {"steps": 6, "lr": 1e-3}, {"steps": 6, "lr": 1e-2}]
    results = S.tune(train, profile, 2, grid, CPU)
    protocol = protocol_for(profile)
    _, val = split_validation(train.labels, protocol.validation_per_class, protocol.seed)
    index = label_draws(train.labels, protocol, 2)[0]
    assert not set(index.tolist()) & set(val.tolist())
    for r, g in zip(results, grid, strict=True):
        assert r["overrides"] == g and r["config"] == S.config_for(profile, 2, **g).as_dict()
        run = S.train_supervised(random_init_backbone(profile, 1, CPU), train, index, S.config_for(profile, 2, **g),
                                 seed=protocol.draw_seeds()[0])
        assert r["validation"] == accuracy(run.predict(train.images[val]), train.labels[val])  # by hand
    with pytest.raises(ValueError, match="at least one recipe"):
        S.tune(train, profile, 2, [], CPU)
    with pytest.raises(TypeError, match="unknown supervised setting"):
        S.tune(train, profile, 2, [{"epochs": 3}], CPU)
    with pytest.raises(TypeError, match="training split"):
        S.tune(train.images, profile, 2, grid, CPU)


def test_best_takes_the_highest_validation_accuracy_then_the_shorter_run():
    def result(steps, acc):
        return {"config": {"steps": steps}, "validation": acc}

    assert S.best([result(300, 0.7), result(600, 0.72), result(150, 0.71)]) == result(600, 0.72)
    assert S.best([result(600, 0.7), result(300, 0.7)]) == result(300, 0.7)
    with pytest.raises(ValueError, match="no results"):
        S.best([])


def test_the_command_reads_the_training_split_only(monkeypatch, capsys):
    """`python -m course_lib tune-supervised` loads the training images only and prints each budget's grid and
    the recipe chosen."""
    import course_lib.datasets
    from course_lib.tools.cli import main

    loaded = []

    def fake_load(name, split, *args, **kwargs):
        loaded.append(split)
        return data()

    monkeypatch.setattr(course_lib.datasets, "load_dataset", fake_load)
    monkeypatch.setattr(S, "tune", lambda train, profile, n, grid, *a, **k: [
        {"overrides": g, "config": {"steps": g["steps"]}, "validation": 0.5 + g["steps"] / 1e4, "seconds": 1.0}
        for g in grid])
    assert main(["tune-supervised", "--labels", "10", "all", "--steps", "5", "7", "--lr", "0.01"]) == 0
    out = capsys.readouterr().out
    assert loaded == ["train"]
    assert "| steps | lr | crop_padding | flip_p | validation % | seconds |" in out  # the rest of the grid: GRID's
    assert "| 7 | 0.01 | 0 | 0.0 | 50.1 | 1 |" in out and "| 7 | 0.01 | 2 | 0.0 | 50.1 | 1 |" in out
    assert "chosen for 10: {'steps': 7, 'lr': 0.01, 'crop_padding': 0, 'flip_p': 0.0}" in out
    assert "chosen for all: {'steps': 7, 'lr': 0.01, 'crop_padding': 2, 'flip_p': 0.0}" in out


# ---------------------------------------------------------------- the pieces: schedule, views, checks


def test_one_cycle_warms_up_linearly_then_decays_to_zero():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = S.one_cycle(opt, steps=20, warmup=0.2)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False)) and 0 < rates[-1] < 0.01
    assert S.one_cycle(opt, steps=1, warmup=0.5).get_last_lr() == [1.0]  # one step: at the peak


def test_the_views_are_shifted_and_flipped_copies_of_the_image():
    x = make_image_data(16, num_classes=2, size=12).images
    assert torch.equal(S.augment_labelled(x, short(crop_padding=0, flip_p=0.0)), to_float(x))
    views = S.augment_labelled(x, short(crop_padding=2, flip_p=0.5), torch.Generator().manual_seed(0))
    assert views.shape == (16, 1, 12, 12) and views.dtype == torch.float32
    padded = torch.nn.functional.pad(to_float(x), (2, 2, 2, 2))
    for image, view in zip(padded, views, strict=True):
        windows = [image[:, i:i + 12, j:j + 12] for i in range(5) for j in range(5)]
        assert any(torch.equal(view, w) or torch.equal(view, w.flip(-1)) for w in windows)


@pytest.mark.parametrize("index, error, message", [
    (torch.tensor([0.0, 1.0]), TypeError, "1-D integer tensor"),
    (torch.tensor([[0, 1]]), TypeError, "1-D integer tensor"),
    (torch.tensor([], dtype=torch.long), ValueError, "empty"),
    (torch.tensor([0, 60]), ValueError, r"positions in \[0, 60\)"),
    (torch.tensor([-1, 3]), ValueError, r"positions in \[0, 60\)"),
    (torch.tensor([3, 3]), ValueError, "twice"),
])
def test_bad_indices_are_refused_before_training(monkeypatch, index, error, message):
    monkeypatch.setattr(S, "train_loop", lambda *a, **k: pytest.fail("nothing may train on bad input"))
    with pytest.raises(error, match=message):
        S.train_supervised(net(), data(), index, short())


def test_bad_recipes_and_inputs_are_refused(monkeypatch):
    monkeypatch.setattr(S, "train_loop", lambda *a, **k: pytest.fail("nothing may train on bad input"))
    index = torch.arange(6)
    for field, value in (("steps", 0), ("lr", 0.0), ("batch_size", 0), ("warmup", 1.5), ("crop_padding", -1),
                         ("flip_p", 2.0)):
        with pytest.raises(ValueError, match=field):
            S.SupervisedConfig(**{field: value})
    with pytest.raises(TypeError, match="unknown supervised setting"):
        S.config_for(profile_of(), 10, epochs=3)
    with pytest.raises(TypeError, match="forward_features"):
        S.train_supervised(torch.nn.Flatten(), data(), index, short())
    with pytest.raises(TypeError, match="ImageData"):
        S.train_supervised(net(), data().images, index, short())
    with pytest.raises(TypeError, match="SupervisedConfig"):
        S.train_supervised(net(), data(), index, {"steps": 3})
    with pytest.raises(ValueError, match="fewer than 50 labels per class"):
        S.supervised_baseline(data(), data(30, seed=1), profile_of(labels_per_class=(50, None)), CPU)


def test_the_recipe_of_a_budget_is_its_recorded_one():
    fast = profile_of()
    assert S.config_for(fast, 10) == S.SupervisedConfig(**{"weight_decay": fast.weight_decay, **S.RECIPES["fast"]["10"]})
    assert S.config_for(fast, None).steps == S.RECIPES["fast"]["all"]["steps"]
    assert S.recipe_budget(5) == "10" and S.recipe_budget(50) == "100" and S.recipe_budget(None) == "all"
    assert S.config_for(fast, 100, lr=1e-3).lr == 1e-3
    assert S.config_for(get_profile("grade"), 10).steps <= 20  # grading stays fast


def test_the_step_is_the_cross_entropy_of_the_augmented_batch_and_its_flops_are_counted_once(tmp_path, monkeypatch):
    """supervised_step (what train_supervised trains with, and what the compute axis counts): its loss is the
    mean cross-entropy of head(net(view)) against the labels, the view drawn by augment_labelled with the same
    generator state; comparison.supervised_flops_per_image counts that step and is cached."""
    from course_lib import comparison
    from course_lib.loader import DeviceLoader

    train, cfg = data(), short()
    model, head = net(), S.LinearHead(net().feature_dim, train.num_classes)
    batch = next(iter(DeviceLoader(train.images, train.labels, 8, device=CPU, seed=0)))
    out = S.supervised_step(model, head, cfg, torch.Generator().manual_seed(3))(batch)
    view = S.augment_labelled(batch.x, cfg, torch.Generator().manual_seed(3))
    logits = head(model.forward_features(view))
    by_hand = -torch.log_softmax(logits, 1)[torch.arange(len(batch.y)), batch.y].mean()
    assert torch.allclose(out["loss"], by_hand, atol=1e-6)
    assert out["acc"] == (logits.argmax(1) == batch.y).float().mean()
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    profile = get_profile("grade")
    first = comparison.supervised_flops_per_image(profile, CPU)
    monkeypatch.setattr(comparison, "_supervised_step_flops", lambda *a: pytest.fail("cached: not counted again"))
    assert comparison.supervised_flops_per_image(profile, CPU) == first > 0


def test_predict_is_the_heads_logits_in_eval_mode_whatever_the_batch():
    run = S.train_supervised(net(), data(), torch.arange(12), short())
    run.backbone.train()
    with torch.no_grad():
        expected = run.head.eval()(run.backbone.eval().forward_features(to_float(data().images)))
    run.backbone.train()
    for batch_size in (7, 512):
        assert torch.allclose(run.predict(data().images, batch_size), expected, atol=1e-6)
        assert not run.backbone.training and not run.head.training
    with pytest.raises(ValueError, match="batch_size"):
        run.predict(data().images, 0)
