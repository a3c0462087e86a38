"""Hidden tests that a call into the library cannot pass.

Some exercises ask students to write what ``course_lib`` already has (a label sampler, a kNN vote, a
rotation of a batch): practice in reading and writing the idea. Students read ``course_lib``, so the
one-line answer "call the library" is always at hand; it earns nothing. A hidden test checks that with
:func:`without_library`::

    ### BEGIN HIDDEN TESTS
    from course_lib.tools.honesty import without_library

    def reference(...):          # the test's own reference, never the library's function
        ...

    with without_library("course_lib.evaluate.knn_predict", student=knn_vote):
        assert torch.equal(knn_vote(...), reference(...))
    ### END HIDDEN TESTS

It fails the test (``AssertionError`` with a message for the feedback) when

* the student's function, or a function of the notebook it calls, names the library's function in its
  source (``knn_predict(...)``, ``E.knn_predict``, ``getattr(E, "knn_predict")``), or
* the library's function is called while the block runs. For that it is swapped, for the time of the block,
  everywhere a caller could reach it: the attribute of its module and every other module, namespace or
  class that holds it (``from course_lib.evaluate import knn_predict`` run before the swap included), the
  closures, default arguments and ``functools.partial`` objects. A student's ``try``/``except`` around the call changes
  nothing: the call is recorded and the test fails when the block ends.

Everything is put back when the block ends, whatever happens inside it.

What it cannot see: a copy of the library's source pasted into the notebook, and a function kept where the swap
cannot rewrite it (e.g. wrapped in a ``staticmethod`` of a class) and reached without naming it. Both take a
deliberate effort; the hidden test's own reference still decides whether the answer is right.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import gc
import importlib
import inspect
import textwrap
import types
from collections.abc import Callable, Iterator, Sequence

__all__ = ["LibraryCall", "without_library"]


class LibraryCall(AssertionError):
    """Raised by a swapped library function: the student's code called it."""


def _resolve(target: str) -> tuple[str, Callable]:
    if not isinstance(target, str) or "." not in target:
        raise ValueError(f"a library function is named 'module.function', e.g. "
                         f"'course_lib.evaluate.knn_predict', got {target!r}")
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"{target!r}: no module {module_name!r} ({error})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError(f"{target!r}: {module_name} has no function {name!r}")
    return name, function


def _functions_reached(functions: Sequence[Callable]) -> list[types.FunctionType]:
    """The student's functions and, transitively, the functions of the same namespace that they name."""
    seen: dict[int, types.FunctionType] = {}
    todo = [inspect.unwrap(f) for f in functions]
    while todo:
        fn = todo.pop()
        if not isinstance(fn, types.FunctionType) or id(fn) in seen:
            continue
        seen[id(fn)] = fn
        for code in _codes(fn):  # names used by nested functions, lambdas and comprehensions too
            for name in code.co_names + code.co_freevars:
                value = fn.__globals__.get(name)
                if isinstance(value, types.FunctionType) and value.__globals__ is fn.__globals__:
                    todo.append(value)
    return list(seen.values())


def _names_in_source(fn: types.FunctionType) -> set[str]:
    """Every identifier, attribute and string constant in the source of ``fn`` (empty if it has none)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.update(filter(None, (node.name.rpartition(".")[2], node.asname)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    return names


def _check_source(student: Sequence[Callable], library: list[list]) -> None:
    names = {name for name, _ in library}
    originals = [function for _, function in library]
    for fn in _functions_reached(student):
        used = _names_in_source(fn) & names
        for code in _codes(fn):  # a global alias bound to the library's function: `from ... import mean as m`
            for name in code.co_names:
                value = fn.__globals__.get(name)
                if any(value is original for original in originals):
                    used.add(next(n for n, f in library if f is value))
        if used:
            raise LibraryCall(f"{fn.__name__} uses course_lib's {', '.join(sorted(used))}: this exercise earns "
                              f"nothing when it calls the library's implementation; write it yourself")


def _codes(fn: types.FunctionType) -> list[types.CodeType]:
    """The code of ``fn`` and of the functions, lambdas and comprehensions nested in it."""
    codes, todo = [], [fn.__code__]
    while todo:
        code = todo.pop()
        codes.append(code)
        todo.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return codes


def _class_of(namespace: dict) -> type | None:
    """The class whose ``__dict__`` is ``namespace``, if it is one."""
    for owner in gc.get_referrers(namespace):
        if isinstance(owner, type) and owner.__dict__ == namespace and list(owner.__dict__) == list(namespace):
            return owner
    return None


def _swap_everywhere(original: Callable, replacement: Callable) -> list[Callable[[], None]]:
    """Replace ``original`` by ``replacement`` in every dict, closure cell and default-argument tuple that
    holds it; return the functions that undo it. (The undo functions take ``original`` as a default argument:
    a closure over it would be a cell that the swap itself rewrites.)"""
    undo: list[Callable[[], None]] = []
    for holder in gc.get_referrers(original):
        if isinstance(holder, dict):
            # a class's dict has __module__ and no __name__ (a module's, a notebook's namespace have both);
            # only for those is the owner looked up, a scan of the whole heap
            owner = _class_of(holder) if "__module__" in holder and "__name__" not in holder else None
            for key, value in list(holder.items()):
                if value is not original:
                    continue
                if owner is not None:  # a class's own dict: only setattr keeps the type's method cache right
                    setattr(owner, key, replacement)
                    undo.append(lambda t=owner, k=key, v=original: setattr(t, k, v))
                else:
                    holder[key] = replacement
                    undo.append(lambda d=holder, k=key, v=original: d.__setitem__(k, v))
        elif isinstance(holder, types.CellType):
            holder.cell_contents = replacement
            undo.append(lambda c=holder, v=original: setattr(c, "cell_contents", v))
        elif isinstance(holder, tuple):
            for fn in gc.get_referrers(holder):
                if isinstance(fn, types.FunctionType) and fn.__defaults__ is holder:
                    defaults = list(holder)
                    for i, value in enumerate(defaults):
                        if value is original:
                            defaults[i] = replacement
                    fn.__defaults__ = tuple(defaults)
                    undo.append(lambda f=fn, d=holder: setattr(f, "__defaults__", d))
        elif isinstance(holder, functools.partial) and holder.func is original:
            state = holder.__reduce__()[2]
            holder.__setstate__((replacement, *state[1:]))
            undo.append(lambda p=holder, s=state: p.__setstate__(s))
    return undo


@contextlib.contextmanager
def without_library(*targets: str, student: Callable | Sequence[Callable]) -> Iterator[None]:
    """Run the block with the library functions ``targets`` ('module.function') out of the student's reach.

    ``student``: the student's function(s) under test; their source, and that of the notebook's functions they
    call, must not name a target. Any call of a target inside the block fails the test when the block ends.
    """
    if not targets:
        raise ValueError("name at least one library function, e.g. 'course_lib.evaluate.knn_predict'")
    students = [student] if callable(student) else list(student)
    if not students or not all(callable(f) for f in students):
        raise TypeError(f"student must be the student's function or a list of them, got {student!r}")
    # lists, not a dict or tuples: the swap rewrites every dict and scans every tuple that holds them
    library = [list(_resolve(t)) for t in targets]
    _check_source(students, library)

    calls: list[str] = []

    def tripwire(name: str) -> Callable:
        def swapped(*args, **kwargs):
            calls.append(name)
            raise LibraryCall(f"course_lib's {name} was called: this exercise earns nothing when it calls the "
                              f"library's implementation; write it yourself")
        return swapped

    undo: list[Callable[[], None]] = []
    try:
        for name, original in library:
            undo += _swap_everywhere(original, tripwire(name))
        yield
    finally:
        for step in reversed(undo):
            step()
    if calls:
        raise LibraryCall(f"course_lib's {', '.join(sorted(set(calls)))} was called by your code: this exercise "
                          f"earns nothing when it calls the library's implementation; write it yourself")
