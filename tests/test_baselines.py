"""Behaviour tests for course_lib.baselines: what the cache key holds, the baseline rows (raw pixels, random init,
the supervised baseline), and compare_with_baselines."""

import copy

import pytest
import torch
from conftest import make_image_data, tiny_profile

from course_lib import baselines as B
from course_lib import supervised
from course_lib.checkpoints import weights_digest
from course_lib.evaluate import Evaluation, protocol_key
from course_lib.models import SmallConvNet
from course_lib.train import History, Pretrained

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def short_supervised(monkeypatch):
    """The supervised baseline's recipes cut to a few steps: these tests check the rows, not the recipe."""
    monkeypatch.setitem(supervised.RECIPES, "fast", {b: {"steps": 3, "lr": 3e-3, "batch_size": 8}
                                                     for b in ("10", "100", "all")})


def protocol_profile(**changes):
    """The tests' tiny profile, small enough to run the whole protocol in seconds: 10 images per class
    kept, 2 labels per class."""
    fields = {"labels_per_class": (2, None), "finetune_steps": 2, "batch_size": 8, "knn_k": 3,
              "max_images_per_class": 10}
    return tiny_profile(**{**fields, **changes})


@pytest.mark.parametrize("change", [{"channels_last": False}, {"amp": True}, {"compile": True},
                                    {"max_images_per_class": 9}, {"finetune_steps": 3}, {"seed": 1}, {"labels_per_class": (3, None)}])
def test_the_protocol_key_changes_with_anything_that_changes_the_result(change):
    train, test = make_image_data(40), make_image_data(20, seed=1)
    assert protocol_key(train, test, protocol_profile()) != protocol_key(train, test, protocol_profile(**change))


def test_the_protocol_key_changes_with_the_training_set():
    test = make_image_data(20, seed=1)
    assert protocol_key(make_image_data(40), test, protocol_profile()) != \
        protocol_key(make_image_data(44), test, protocol_profile())


def test_compare_with_baselines_adds_the_method_row_with_its_compute(cache):
    # the protocol is protocol_for(profile): max_images_per_class=10 sizes the validation split to 2 per class,
    # but fine-tuning takes 10 labels per class, more than the 8 left: a clear error
    train, test = make_image_data(40), make_image_data(20, seed=1)
    profile = protocol_profile()
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    pre = Pretrained(net, History(metrics={"loss": [1.0, 0.5]}, seconds=3.0, images=64), torch.nn.ModuleDict())
    with pytest.raises(ValueError, match="fewer than 10 labels per class"):
        B.compare_with_baselines("toy", pre, train, test, profile, torch.device("cpu"))
    train, test = make_image_data(60, num_classes=3), make_image_data(30, num_classes=3, seed=1)
    profile = protocol_profile(max_images_per_class=20)  # 4 per class for validation, 16 left
    rows = B.compare_with_baselines("toy", pre, train, test, profile, torch.device("cpu"))
    assert [r.method for r in rows] == ["raw pixels", "random init", "supervised (labels only)", "toy"]
    assert [r.kind for r in rows] == ["baseline", "baseline", "supervised", "self-supervised"]
    assert all(isinstance(r, Evaluation) for r in rows)
    assert rows[-1].compute == {"images": 64, "steps": 2, "seconds": 3.0}
    assert rows[0].finetune == []  # raw pixels: their fine-tune figure is their 10-label probe, not measured here
    assert len(rows[1].finetune) == 3 and len(rows[3].finetune) == 3
    assert rows[2].finetune == [] and [len(rows[2].probe[b]) for b in ("2", "all")] == [3, 1]  # trained, per draw
    assert len(list(cache.glob("checkpoints/baselines-*.json"))) == 1  # cached for the next notebook
    assert len(list(cache.glob("checkpoints/supervised-*.json"))) == 1
    assert B.baselines(train, test, profile, torch.device("cpu")) == rows[:3]
    with pytest.raises(ValueError, match="baseline row"):
        B.compare_with_baselines("random init", pre, train, test, profile, torch.device("cpu"))
    with pytest.raises(TypeError, match="Pretrained"):
        B.compare_with_baselines("toy", "not an encoder", train, test, profile, torch.device("cpu"))


def test_the_method_row_is_cached_by_the_encoder_weights(cache, monkeypatch):
    train, test = make_image_data(60, num_classes=3), make_image_data(30, num_classes=3, seed=1)
    profile = protocol_profile(max_images_per_class=20)
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4).eval()
    pre = Pretrained(net, History(metrics={"loss": [1.0]}, seconds=3.0, images=64), torch.nn.ModuleDict())
    first = B.compare_with_baselines("toy", pre, train, test, profile, torch.device("cpu"))[-1]
    calls = []
    real = B.evaluate
    monkeypatch.setattr(B, "evaluate", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    again = Pretrained(net, History(metrics={"loss": [1.0]}, seconds=5.0, images=80), torch.nn.ModuleDict())
    second = B.compare_with_baselines("toy", again, train, test, profile, torch.device("cpu"))[-1]
    assert calls == []  # loaded from the cache, probes and fine-tunes not run again
    assert second.probe == first.probe and second.finetune == first.finetune and second.knn == first.knn
    assert second.compute == {"images": 80, "steps": 1, "seconds": 5.0}  # this encoder's compute, not the cached one
    B.compare_with_baselines("toy", net, train, test, profile, torch.device("cpu"), finetune=False)
    assert calls == ["toy"]  # another question (no fine-tune): evaluated
    with torch.no_grad():
        weight = next(net.parameters())
        weight[(0,) * weight.dim()] += 1e-3
    B.compare_with_baselines("toy", pre, train, test, profile, torch.device("cpu"))
    assert calls == ["toy", "toy"]  # other weights: evaluated again


def test_weights_digest_follows_the_values_not_the_layout_or_the_object():
    torch.manual_seed(0)
    net = SmallConvNet(1, width=4)
    digest = weights_digest(net)
    twin = copy.deepcopy(net).to(memory_format=torch.channels_last)
    assert weights_digest(twin) == digest
    torch.manual_seed(1)
    assert weights_digest(SmallConvNet(1, width=4)) != digest
    with torch.no_grad():
        weight = next(twin.parameters())
        weight[(-1,) * weight.dim()] += 1e-6
    assert weights_digest(twin) != digest


def test_weights_digest_follows_settings_that_are_not_weights():
    from course_lib.cpc import PatchPooledEncoder

    torch.manual_seed(0)
    net = SmallConvNet(1, width=4)
    same = weights_digest(PatchPooledEncoder(net, 8, 4))
    assert weights_digest(PatchPooledEncoder(net, 8, 4)) == same
    assert weights_digest(PatchPooledEncoder(net, 8, 8)) != same  # another stride: another encoder
    assert weights_digest(PatchPooledEncoder(net, 12, 4)) != same


# ---------------------------------------------------------------- the one call every notebook makes


def fake_table(method, *args, **kwargs):
    rows = [Evaluation("raw pixels", {"10": [0.6]}, 0.6, kind="baseline"),
            Evaluation("random init", {"10": [0.5]}, 0.5, kind="baseline")]
    return rows + ([Evaluation(method, {"10": [0.7, 0.72]}, 0.7)] if method else [])


def test_evaluate_and_save_compares_saves_the_methods_row_and_shows_the_table(cache, monkeypatch):
    import IPython.display
    import matplotlib.pyplot as plt

    from course_lib.results import format_table, load_rows

    calls, shown = [], []
    monkeypatch.setattr(B, "compare_with_baselines", lambda *a, **kw: calls.append(a) or fake_table(a[0]))
    monkeypatch.setattr(IPython.display, "display", shown.append)
    train, test = make_image_data(40), make_image_data(20, seed=1)
    profile = protocol_profile()
    plt.close("all")
    table = B.evaluate_and_save("toy", "the encoder", train, test, profile, torch.device("cpu"), source="03_toy")
    assert [r.method for r in table] == ["raw pixels", "random init", "toy"]
    assert calls == [("toy", "the encoder", train, test, profile, torch.device("cpu"), True, False)]
    stored = load_rows(profile.name)
    assert list(stored) == ["toy"] and stored["toy"]["source"] == "03_toy"  # the method's row only
    assert [m.data for m in shown] == [format_table(table)]
    [number] = plt.get_fignums()  # the label-efficiency figure
    assert plt.figure(number).axes[0].get_xscale() == "log"
    plt.close("all")
    B.evaluate_and_save("quiet", "the encoder", train, test, profile, source="03_toy", show=False)
    assert len(shown) == 1 and plt.get_fignums() == [] and "quiet" in load_rows(profile.name)
    assert stored["toy"]["kind"] == "self-supervised"
    labelled = B.evaluate_and_save("metric", "the encoder", train, test, profile, source="09_toy", with_labels=True,
                                   show=False)
    assert labelled[-1].with_labels and load_rows(profile.name)["metric"]["kind"] == "supervised"  # † in every table


def test_evaluate_and_save_without_a_method_saves_the_baselines(cache, monkeypatch):
    import IPython.display

    from course_lib.results import load_rows

    monkeypatch.setattr(B, "baselines", lambda *a, **kw: fake_table(None))
    monkeypatch.setattr(IPython.display, "display", lambda obj: None)
    train, test = make_image_data(40), make_image_data(20, seed=1)
    table = B.evaluate_and_save(None, None, train, test, protocol_profile(), source="01_intro", show=False)
    assert [r.method for r in table] == ["raw pixels", "random init"]
    assert {name: r["source"] for name, r in load_rows("fast").items()} == {"raw pixels": "01_intro",
                                                                            "random init": "01_intro"}


@pytest.mark.parametrize("method, encoder, source, message", [
    ("toy", "enc", "", "source must name the notebook"),
    ("toy", "enc", None, "source must name the notebook"),
    (None, "enc", "01_x", "needs a method name"),
])
def test_evaluate_and_save_rejects_what_it_cannot_save(cache, method, encoder, source, message):
    from course_lib.results import results_path

    with pytest.raises(ValueError, match=message):
        B.evaluate_and_save(method, encoder, make_image_data(40), make_image_data(20, seed=1), protocol_profile(),
                            source=source, show=False)
    assert not results_path("fast").exists()


def test_the_supervised_row_is_cached_apart_and_by_its_recipes(cache, monkeypatch):
    """A changed supervised recipe trains the supervised row again, and only it: raw pixels and random init
    come from their own cache entry."""
    train, test = make_image_data(60, num_classes=3), make_image_data(30, num_classes=3, seed=1)
    profile = protocol_profile(max_images_per_class=20)
    first = B.baselines(train, test, profile, torch.device("cpu"))
    evaluated, trained = [], []
    real_evaluate, real_supervised = B.evaluate, B.supervised_baseline
    monkeypatch.setattr(B, "evaluate", lambda *a, **k: evaluated.append(a[0]) or real_evaluate(*a, **k))
    monkeypatch.setattr(B, "supervised_baseline", lambda *a, **k: trained.append(1) or real_supervised(*a, **k))
    assert B.baselines(train, test, profile, torch.device("cpu")) == first and evaluated == trained == []
    monkeypatch.setitem(supervised.RECIPES, "fast", {b: {"steps": 4, "lr": 3e-3, "batch_size": 8}
                                                     for b in ("10", "100", "all")})
    again = B.baselines(train, test, profile, torch.device("cpu"))
    assert evaluated == [] and trained == [1]
    assert again[:2] == first[:2] and again[2].compute["steps"] == 4 * 4


def test_the_all_budget_counts_the_pool_the_validation_split_leaves():
    train = make_image_data(40)  # 4 classes, 10 images each; the profile keeps 10 per class and holds a fifth out
    assert B.all_labels_per_class(train, protocol_profile()) == 8
    assert B.all_labels_per_class(make_image_data(80), protocol_profile(max_images_per_class=20)) == 16
