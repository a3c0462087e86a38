"""The student version (course_lib.tools.release): no instructors' cell, and of an executed notebook only the outputs
that give no answer away."""

import textwrap

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from test_grading import NAME, _meta, tiny_notebook

from course_lib.tools.release import answer_dependent_cells, is_instructors_cell, release, student_outputs


def notebook(*cells) -> nbformat.NotebookNode:
    """A notebook of code cells (a string) and exercise cells (a (source, metadata) pair), each with a stream output,
    with ids c0, c1, ..."""
    made = []
    for i, cell in enumerate(cells):
        source, metadata = cell if isinstance(cell, tuple) else (cell, {})
        made.append(new_code_cell(textwrap.dedent(source), metadata=metadata, id=f"c{i}",
                                  outputs=[new_output("stream", name="stdout", text=f"output {i}\n")]))
    return new_notebook(cells=made)


def dependent(*cells) -> list[int]:
    return sorted(int(cell_id[1:]) for cell_id in answer_dependent_cells(notebook(*cells)))


SOLUTION = ("def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION", _meta("f"))


def test_what_uses_an_answer_directly_or_through_computed_names_depends_on_it():
    assert dependent("a = 2", SOLUTION, "print(a)", "y = f(a)", "z = y * 2", "print(z)", "print(a + 1)") == [1, 3, 4, 5]


def test_a_name_bound_again_from_clean_values_is_clean():
    assert dependent(SOLUTION, "y = f(2)", "y = 3", "print(y)") == [0, 1]
    assert dependent(SOLUTION, "for y in range(3):\n    print(f(y))", "print(y)") == [0, 1, 2]  # y: f's loop


def test_a_function_defined_before_the_answer_that_calls_it_later_depends_on_it():
    """Python looks a function's global names up when it is called: show() reads the answer once f exists."""
    assert dependent("def show():\n    print(f(1))", SOLUTION, "show()", "def g(x):\n    return x", "g(2)") == [1, 2]


def test_locals_and_loop_variables_of_the_same_name_are_not_the_answer():
    assert dependent(("x = f(1)\nassert x == 2", _meta("test_f", 1)), "def g(x):\n    return x * 2", "print(g(3))",
                     "print([x for x in range(3)])", "for x in (1, 2):\n    print(x)") == [0]


def test_changed_in_place_by_a_dependent_cell_depends_on_it():
    assert dependent("rows = []", SOLUTION, "rows.append(f(1))", "print(rows)", "table = {}", "table['f'] = f",
                     "print(table)", "import math", "print(math.sqrt(f(3)))", "print(math.pi)") == [1, 2, 3, 5, 6, 8]


def test_magics_are_read_as_the_code_they_run():
    assert dependent(SOLUTION, "%time y = f(2)", "%%time\nz = f(3)", "print(z)", "%matplotlib inline") == [0, 1, 2, 3]


def test_hidden_test_names_and_cells_that_are_not_python_depend_on_the_answer():
    hidden = ("### BEGIN HIDDEN TESTS\nreference = 41\n### END HIDDEN TESTS", _meta("test_hidden", 2))
    assert dependent(hidden, "print(reference)", "print(1") == [0, 1, 2]


def test_student_outputs_keep_what_gives_nothing_away_and_mark_what_is_withheld():
    executed = notebook("a = 2", SOLUTION, "print(f(a))", "print(a)")
    student = nbformat.from_dict(nbformat.v4.new_notebook(cells=[
        new_code_cell("a = 2", id="c0"), new_code_cell("def f(x):\n    raise NotImplementedError()", id="c1"),
        new_code_cell("print(f(a))", id="c2"), new_code_cell("print(a)", id="c3")]))
    shown = student_outputs(executed, student)
    assert [[o.text for o in c.outputs] for c in shown.cells] == [["output 0\n"], [], [], ["output 3\n"]]
    assert [c.metadata.get("course", {}).get("outputs_withheld", False) for c in shown.cells] == [False, True, True,
                                                                                                False]
    assert shown.cells[1].source.endswith("raise NotImplementedError()"), "the student's source, not the answer"
    student.cells[3].source = "print(a)  # changed"  # another source than the one that ran: not its output
    assert student_outputs(executed, student).cells[3].outputs == []


def test_instructors_cells_are_not_in_the_student_version(tmp_path):
    """Marked in their metadata, or opening with "For instructors" (a heading or bold) without it."""
    nb = tiny_notebook()
    marked = new_markdown_cell("How the numbers were measured: seeds 0-2.", metadata={"course": {"instructors": True}})
    nb.cells += [marked, new_markdown_cell("### For instructors: the timing runs"),
                 new_markdown_cell("**For instructors** (notes)"), new_markdown_cell("Ask your instructors for help.")]
    assert [is_instructors_cell(c) for c in nb.cells[-4:]] == [True, True, True, False]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"m": {"text": "10/10 steps"}}}}
    (tmp_path / "source").mkdir()
    nbformat.write(nb, tmp_path / "source" / f"{NAME}.ipynb")
    [student] = release(tmp_path / "source", tmp_path / "release")
    text = student.read_text()
    assert "For instructors" not in text and "seeds 0-2" not in text and "Ask your instructors" in text
    assert "10/10 steps" not in text, "no widget state of the instructor's run (an Output widget's could hide outputs)"
