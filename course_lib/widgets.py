"""One helper for the notebooks' interactive knobs.

``slider_plot(draw, labels=(1, 20, 1))`` shows a slider (or several) and calls
``draw(labels=value)`` to redraw a matplotlib figure each time it moves. Without
a live kernel (e.g. when a notebook is executed as a test) it draws once with
the initial values, so the same cell works in class and in CI.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display


def slider_plot(draw: Callable[..., plt.Figure | None], continuous_update: bool = False,
                **ranges: tuple[int, int, int] | tuple[float, float, float] | list) -> widgets.VBox:
    """Sliders for each ``name=(min, max, step)`` (or a dropdown for a list) that redraw ``draw(**values)``."""
    if not ranges:
        raise ValueError("give at least one knob, e.g. labels=(1, 20, 1)")
    controls = {}
    for name, spec in ranges.items():
        if isinstance(spec, list):
            controls[name] = widgets.Dropdown(options=spec, description=name)
        elif isinstance(spec, tuple) and len(spec) == 3:
            lo, hi, step = spec
            cls = widgets.IntSlider if all(isinstance(v, int) for v in spec) else widgets.FloatSlider
            controls[name] = cls(value=lo, min=lo, max=hi, step=step, description=name,
                                 continuous_update=continuous_update)
        else:
            raise TypeError(f"knob {name!r}: expected (min, max, step) or a list of options, got {spec!r}")
    out = widgets.Output()

    def redraw(_change=None) -> None:
        with out:
            out.clear_output(wait=True)
            fig = draw(**{n: c.value for n, c in controls.items()})
            if fig is not None:
                display(fig)
                plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values())), out])
    display(box)
    return box
