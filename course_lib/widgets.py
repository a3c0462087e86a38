"""One helper for the notebooks' interactive knobs.

``slider_plot(draw, labels=(1, 20, 1))`` shows a slider (or several) and calls
``draw(labels=value)`` to redraw a matplotlib figure each time it moves.

Live (JupyterLab, Notebook, VS Code) the figure sits in an ``ipywidgets.Output``
that each move redraws. Headless -- when the course's own tools execute a notebook
(``make course``, ``make test``, ``make bench``, grading), which set
``COURSE_HEADLESS=1`` -- there is nobody to move a slider, so the figure is drawn
once with the initial values and displayed as a plain output, with no live
widget: an executed copy shows the picture, and no widget traffic runs between
the kernel and the program executing it (the course's notebook hangs came from
that traffic; see README, "Notebooks that never hang").
"""

from __future__ import annotations

import os
from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

HEADLESS_ENV = "COURSE_HEADLESS"


def headless() -> bool:
    """True when a notebook is executed by the course's tools, with no frontend to show widgets."""
    return os.environ.get(HEADLESS_ENV, "") not in ("", "0")


def _show(fig: plt.Figure | None) -> None:
    if fig is not None:
        display(fig)
        plt.close(fig)


def slider_plot(draw: Callable[..., plt.Figure | None], continuous_update: bool = False,
                **ranges: tuple[int, int, int] | tuple[float, float, float] | list) -> widgets.VBox | None:
    """Sliders for each ``name=(min, max, step)`` (or a dropdown for a list) that redraw ``draw(**values)``.

    Returns the widget box, or None when headless (the figure is then shown once, as a plain output).
    """
    if not ranges:
        raise ValueError("give at least one knob, e.g. labels=(1, 20, 1)")
    controls = {}
    for name, spec in ranges.items():
        if isinstance(spec, list) and spec:
            controls[name] = widgets.Dropdown(options=spec, description=name)
        elif isinstance(spec, tuple) and len(spec) == 3 and all(isinstance(v, (int, float)) for v in spec):
            lo, hi, step = spec
            cls = widgets.IntSlider if all(isinstance(v, int) for v in spec) else widgets.FloatSlider
            controls[name] = cls(value=lo, min=lo, max=hi, step=step, description=name,
                                 continuous_update=continuous_update)
        else:
            raise TypeError(f"knob {name!r}: expected (min, max, step) or a non-empty list of options, got {spec!r}")

    def values() -> dict:
        return {n: c.value for n, c in controls.items()}

    if headless():
        _show(draw(**values()))
        return None
    out = widgets.Output()

    def redraw(_change=None) -> None:
        with out:
            out.clear_output(wait=True)
            _show(draw(**values()))

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    display(box)
    return box
