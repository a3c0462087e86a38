"""Behaviour tests for course_lib.config: profiles, seeding and the device."""

import dataclasses
import re

import pytest
import torch

from course_lib.config import (
    PROFILE_ENV,
    PROFILES,
    SEED_ENV,
    Profile,
    get_device,
    get_profile,
    seed_everything,
)


@pytest.fixture(autouse=True)
def no_profile_env(monkeypatch):
    """Tests start without $COURSE_PROFILE, whatever the shell that runs them has set."""
    monkeypatch.delenv(PROFILE_ENV, raising=False)


@pytest.fixture
def restore_determinism():
    """seed_everything switches torch to deterministic algorithms: undo that after the test."""
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_default_profile_is_fast():
    p = get_profile()
    assert p.name == "fast"
    assert p == PROFILES["fast"]
    assert p.backbone == "small_cnn"


def test_environment_variable_picks_the_full_profile(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "full")
    p = get_profile()
    assert p.name == "full"
    assert p.backbone == "resnet18"
    assert p.dataset == "cifar10"


def test_explicit_name_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "full")
    assert get_profile("fast").name == "fast"


def test_the_seed_variable_sets_the_training_seed_and_refuses_what_is_not_one(monkeypatch):
    monkeypatch.setenv(SEED_ENV, "4")
    assert get_profile().seed == 4
    assert get_profile("grade").seed == 4
    assert get_profile(seed=2).seed == 2, "an explicit override wins"
    for bad in ("-1", "one", "1.5"):
        monkeypatch.setenv(SEED_ENV, bad)
        with pytest.raises(ValueError, match=f"{SEED_ENV} must be a non-negative integer.*{bad!r}"):
            get_profile()
    monkeypatch.setenv(SEED_ENV, "")
    assert get_profile().seed == 0


def test_unknown_profile_names_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="unknown profile 'huge'") as err:
        get_profile("huge")
    for name in PROFILES:
        assert repr(name) in str(err.value)
    monkeypatch.setenv(PROFILE_ENV, "nope")
    with pytest.raises(ValueError, match="'nope'"):
        get_profile()


def test_overrides_change_only_the_named_fields():
    base = get_profile()
    p = get_profile(num_epochs=2, lr=0.5)
    assert (p.num_epochs, p.lr) == (2, 0.5)
    changed = {f.name for f in dataclasses.fields(Profile) if getattr(p, f.name) != getattr(base, f.name)}
    assert changed == {"num_epochs", "lr"}
    # the registered profile itself is untouched (profiles are immutable)
    assert PROFILES["fast"].num_epochs == base.num_epochs != 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lr = 1.0  # type: ignore[misc]


def test_unknown_override_is_a_type_error_naming_the_field():
    with pytest.raises(TypeError, match="epochs"):
        get_profile(epochs=3)


def test_seed_everything_makes_torch_rand_reproducible(restore_determinism):
    seed_everything(123)
    a = torch.rand(5)
    seed_everything(123)
    b = torch.rand(5)
    seed_everything(124)
    c = torch.rand(5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_seed_everything_returns_a_generator_seeded_with_the_seed(restore_determinism):
    g = seed_everything(7)
    expected = torch.rand(4, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(4, generator=g), expected)


@pytest.mark.parametrize("bad", [-1, 1.5, "0"])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="non-negative int"):
        seed_everything(bad)


def test_get_device_is_cpu_without_an_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")


def test_get_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert get_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device() == torch.device("mps")


def test_get_device_honours_prefer():
    assert get_device("cpu") == torch.device("cpu")
    assert get_device("meta") == torch.device("meta")


def test_printed_profile_shows_every_hyperparameter():
    p = get_profile("full", lr=0.25)
    text = str(p)
    assert "'full'" in text.splitlines()[0]
    for f in dataclasses.fields(Profile):
        if f.name != "name":
            assert re.search(rf"^\s+{f.name}\s+= {re.escape(repr(getattr(p, f.name)))}$", text, flags=re.M), f.name


@pytest.mark.parametrize("value, minimum, optional, ok", [
    (1, 1, False, True), (0, 1, False, False), (0, 0, False, True), (True, 0, False, False), (2.0, 1, False, False),
    (None, 1, True, True), (None, 1, False, False), (1, 2, True, False),
])
def test_check_int(value, minimum, optional, ok):
    from course_lib.config import check_int

    if ok:
        check_int(value, "n", minimum, optional)
    else:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        with pytest.raises(ValueError, match=f"^n must be {kind}{' or None' if optional else ''}, got "):
            check_int(value, "n", minimum, optional)


@pytest.mark.parametrize("value, ok", [(0, True), (0.5, True), (1, True), (-0.1, False), (1.1, False),
                                       (False, False), ("0.5", False), (None, False)])
def test_check_number(value, ok):
    from course_lib.config import check_number

    if ok:
        check_number(value, "p", 0, 1)
    else:
        with pytest.raises(ValueError, match=r"^p must be a number in \[0, 1\], got "):
            check_number(value, "p", 0, 1)


def test_settings_replace_as_dict_and_listing():
    from course_lib.rotation import RotationConfig

    cfg = RotationConfig()
    assert cfg.replace(flip_p=0.0).flip_p == 0.0 and cfg.flip_p == 0.5  # a copy; the original is unchanged
    assert cfg.as_dict()["recalibration_batches"] == 20
    assert str(cfg).splitlines()[0] == "RotationConfig:" and "  flip_p               = 0.5" in str(cfg)


@pytest.mark.parametrize("override, error, words", [
    ({"labels_per_class": 10}, TypeError, "labels_per_class must be a non-empty tuple"),
    ({"labels_per_class": (10, 0)}, TypeError, "labels_per_class"),
    ({"labels_per_class": ()}, TypeError, "labels_per_class"),
    ({"width": 0}, ValueError, "width must be a positive int"),
    ({"batch_size": 12.5}, ValueError, "batch_size must be a positive int"),
    ({"num_epochs": True}, ValueError, "num_epochs"),
    ({"lr": -1.0}, ValueError, "lr must be a number"),
    ({"lr": "0.1"}, ValueError, "lr must be a number"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ({"time_budget_s": 0}, ValueError, "time_budget_s"),
    ({"amp": "yes"}, TypeError, "amp must be True or False"),
    ({"backbone": "vgg"}, ValueError, "unknown backbone 'vgg': expected 'small_cnn' or 'resnet18'"),
    ({"num_threads": 0}, ValueError, "num_threads must be a positive int or None"),
    ({"cell_timeout_s": 0}, ValueError, "cell_timeout_s"),
    ({"max_images_per_class": 0}, ValueError, "max_images_per_class"),
])
def test_a_bad_override_is_refused_naming_the_field(override, error, words):
    with pytest.raises(error, match=words):
        get_profile(**override)


def test_every_built_in_profile_is_valid():
    for name in ("fast", "full", "grade"):
        assert get_profile(name).name == name


def test_seed_everything_fixes_the_thread_count(restore_determinism):
    before = torch.get_num_threads()
    try:
        seed_everything(0, threads=1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            seed_everything(0, threads=0)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value, enabled", [(None, True), ("on", True), ("off", False), ("OFF", False)])
def test_time_budgets_switch(monkeypatch, value, enabled):
    from course_lib.config import BUDGETS_ENV, time_budgets_enabled

    if value is None:
        monkeypatch.delenv(BUDGETS_ENV, raising=False)
    else:
        monkeypatch.setenv(BUDGETS_ENV, value)
    assert time_budgets_enabled() is enabled
    monkeypatch.setenv(BUDGETS_ENV, "sometimes")
    with pytest.raises(ValueError, match="must be 'on' or 'off'"):
        time_budgets_enabled()


@pytest.mark.parametrize("x, error, match", [
    ([[0.5]], TypeError, "must be a torch.Tensor of shape"),
    (torch.zeros(3, 8, 8), ValueError, r"must be 4-D \(B, C, H, W\), got shape \(3, 8, 8\)"),
    (torch.zeros(1, 1, 2, 2, dtype=torch.uint8), TypeError, "augment.to_float"),
    (torch.full((1, 1, 2, 2), 1.5), ValueError, "values in \\[0, 1\\], got min 1.5, max 1.5"),
    (torch.full((1, 1, 2, 2), float("nan")), ValueError, "values in \\[0, 1\\]"),
])
def test_check_images_names_what_it_expected(x, error, match):
    from course_lib.config import check_images

    with pytest.raises(error, match=match):
        check_images(x)


def test_check_images_passes_a_float_batch_and_skips_the_range_when_asked():
    from course_lib.config import check_images

    check_images(torch.rand(2, 3, 4, 4))
    check_images(torch.empty(0, 3, 4, 4))
    check_images(torch.full((1, 1, 2, 2), -3.0), check_range=False)


def test_git_revision_names_the_commit_and_says_when_tracked_files_changed(tmp_path):
    import shutil
    import subprocess

    from course_lib.config import git_revision

    assert git_revision(tmp_path) == ""  # not a git checkout (e.g. the student bundle)
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    run = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True, capture_output=True, text=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f.txt").write_text("a")
    run("add", "f.txt")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = run("rev-parse", "HEAD").stdout.strip()
    assert git_revision(tmp_path) == head and git_revision(tmp_path, short=True) == head[:len(git_revision(tmp_path, short=True))]
    (tmp_path / "untracked.txt").write_text("x")
    assert git_revision(tmp_path) == head, "an untracked file is not a change to the code"
    (tmp_path / "f.txt").write_text("b")
    assert git_revision(tmp_path) == head + "+changes"
