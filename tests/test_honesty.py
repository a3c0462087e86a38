"""The hidden-test guard: a student's function that routes through the library's implementation fails,
whichever way it reaches it; an honest one passes; everything is put back afterwards."""

import sys
import textwrap
import types

import pytest

from course_lib.tools.honesty import LibraryCall, without_library

TARGET = "fake_course_lib.stats.mean"


@pytest.fixture
def library(tmp_path, monkeypatch):
    """A small library on disk (so that functions have source), imported fresh for every test."""
    package = tmp_path / "fake_course_lib"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "stats.py").write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")
    (package / "helpers.py").write_text(
        "from fake_course_lib.stats import mean\n\ndef average(xs):\n    return mean(xs)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("fake_course_lib")]:
        monkeypatch.delitem(sys.modules, name)
    import fake_course_lib.helpers
    import fake_course_lib.stats
    return types.SimpleNamespace(stats=fake_course_lib.stats, helpers=fake_course_lib.helpers, root=tmp_path)


def notebook(library, code: str) -> dict:
    """Run ``code`` as a notebook cell would (a module of its own with real source) and return its names."""
    path = library.root / f"cell_{abs(hash(code))}.py"
    path.write_text(textwrap.dedent(code))
    namespace = {"__name__": "__main__"}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def test_an_honest_solution_passes_and_may_use_anything_else(library):
    cell = notebook(library, """
        import statistics
        def my_mean(xs):
            total = 0.0
            for x in xs:
                total += x
            return total / len(xs)
    """)
    with without_library(TARGET, student=cell["my_mean"]):
        assert cell["my_mean"]([1, 2, 3, 6]) == 3.0
    assert library.stats.mean([1, 3]) == 2  # put back


@pytest.mark.parametrize("code", [
    "from fake_course_lib.stats import mean\ndef my_mean(xs):\n    return mean(xs)\n",
    "import fake_course_lib.stats as S\ndef my_mean(xs):\n    return S.mean(xs)\n",
    "import fake_course_lib.stats as S\ndef my_mean(xs):\n    return getattr(S, 'mean')(xs)\n",
    "from fake_course_lib.stats import mean as m\ndef helper(xs):\n    return m(xs)\ndef my_mean(xs):\n    return helper(xs)\n",
])
def test_naming_the_library_function_fails_before_anything_runs(library, code):
    cell = notebook(library, code)
    ran = []
    with pytest.raises(LibraryCall, match="mean"):
        with without_library(TARGET, student=cell["my_mean"]):
            ran.append(True)
    assert not ran


@pytest.mark.parametrize("code", [
    # a name bound before the swap, hidden from the source check by an alias built at run time
    "from fake_course_lib.stats import mean\nalias = mean\ndef my_mean(xs):\n    return alias(xs)\n",
    # through another library function that calls it
    "from fake_course_lib.helpers import average\ndef my_mean(xs):\n    return average(xs)\n",
    # a default argument, a closure, a partial
    "from fake_course_lib import stats\ndef my_mean(xs, f=vars(stats)['me' + 'an']):\n    return f(xs)\n",
    "from fake_course_lib import stats\ndef make():\n    f = vars(stats)['me' + 'an']\n"
    "    def inner(xs):\n        return f(xs)\n    return inner\nmy_mean = make()\n",
    "import functools\nfrom fake_course_lib import stats\nf = functools.partial(vars(stats)['me' + 'an'])\n"
    "def my_mean(xs):\n    return f(xs)\n",
    # the call swallowed by a try/except that falls back to a wrong answer
    "from fake_course_lib.helpers import average\ndef my_mean(xs):\n    try:\n        return average(xs)\n"
    "    except Exception:\n        return 0\n",
])
def test_every_call_of_the_library_function_fails(library, code):
    cell = notebook(library, code)
    with pytest.raises(LibraryCall, match="mean"):
        with without_library(TARGET, student=cell["my_mean"]):
            cell["my_mean"]([1, 2, 3])
    assert library.stats.mean([1, 3]) == 2 and library.helpers.average([2, 4]) == 3, "not put back"
    assert cell["my_mean"]([1, 3]) == 2, "the student's function works again after the block"


def test_everything_is_put_back_after_an_error_in_the_block(library):
    from fake_course_lib.stats import mean
    holder = {"f": mean}
    closure = (lambda f: (lambda: f))(mean)
    with pytest.raises(ZeroDivisionError):
        with without_library(TARGET, student=lambda xs: 0):
            assert holder["f"] is not mean
            raise ZeroDivisionError
    assert holder["f"] is mean and library.stats.mean is mean and library.helpers.mean is mean
    assert closure() is mean


def test_a_library_function_in_a_class_attribute_is_swapped_and_put_back(library):
    class Holder:
        f = library.stats.mean
    with pytest.raises(LibraryCall):
        with without_library(TARGET, student=lambda xs: 0):
            Holder.f([1, 2])
    assert Holder.f is library.stats.mean


@pytest.mark.parametrize("targets, student, error", [
    ((), lambda: 0, ValueError),
    (("mean",), lambda: 0, ValueError),
    (("fake_course_lib.nothing.mean",), lambda: 0, ValueError),
    (("fake_course_lib.stats.median",), lambda: 0, ValueError),
    ((TARGET,), "my_mean", TypeError),
    ((TARGET,), [], TypeError),
])
def test_bad_arguments_are_refused_before_any_swap(library, targets, student, error):
    with pytest.raises(error):
        with without_library(*targets, student=student):
            pass
    assert library.helpers.mean is library.stats.mean
