"""The inline matplotlib backend: figures are drawn on the board and shown in the notebook as PNG.

Loaded when board code imports matplotlib (shim.py selects this backend, and loads this module at
attach when matplotlib is already there) or shows a figure. Loading it registers the figure's
format with formatters.py.
"""

import io
import os
import sys
import traceback

from . import formatters, wire
from .iostream import output_session, process_state

MPL_BACKEND = "module://" + wire.MPL_BACKEND_MODULE


def figure_png(figure):
    """The figure as PNG bytes, and Jupyter image metadata (width/height) for 'retina' figures."""
    retina = getattr(output_session(), "figure_format", "png") == "retina"
    dpi = figure.dpi * (2 if retina else 1)
    buffer = io.BytesIO()
    figure.canvas.print_figure(
        buffer,
        format="png",
        dpi=dpi,
        bbox_inches="tight",
        facecolor=figure.get_facecolor(),
        edgecolor=figure.get_edgecolor(),
    )
    png = buffer.getvalue()
    size = {}
    if retina and png[12:16] == b"IHDR":
        width = int.from_bytes(png[16:20], "big")
        height = int.from_bytes(png[20:24], "big")
        size = {"width": width // 2, "height": height // 2}
    return png, size


def figure_bundle(figure):
    """A matplotlib Figure as a result or display(): its PNG, as formatters.py asks a printer."""
    png, size = figure_png(figure)
    return {"image/png": png}, ({"image/png": size} if size else {})


formatters.for_type_by_name("matplotlib.figure", "Figure", figure_bundle)


def show_figures(skip=None, **_ignored):
    """Show every open pyplot figure in the cell's output and close it (our backend's plt.show()).

    Runs at the end of each cell too, as IPython's inline backend does. Only for our backend: a user who
    picked another one (``matplotlib.use("Agg")`` to write files) keeps their figures.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    try:
        if pyplot.get_backend() != MPL_BACKEND:
            return
        from matplotlib._pylab_helpers import Gcf

        from .display import display

        for manager in Gcf.get_all_fig_managers():
            figure = manager.canvas.figure
            if figure is not skip:
                display(figure)
        pyplot.close("all")
    except Exception:
        traceback.print_exc()


def fill_backend(module):
    """Make `module` a matplotlib backend like matplotlib-inline's: Agg canvases, show() displays."""
    from matplotlib.backend_bases import FigureManagerBase
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def new_figure_manager_given_figure(num, figure):
        return FigureManagerBase(FigureCanvasAgg(figure), num)

    def new_figure_manager(num, *args, **kwargs):
        figure_class = kwargs.pop("FigureClass", Figure)
        return new_figure_manager_given_figure(num, figure_class(*args, **kwargs))

    module.FigureCanvas = FigureCanvasAgg
    module.FigureManager = FigureManagerBase
    module.new_figure_manager = new_figure_manager
    module.new_figure_manager_given_figure = new_figure_manager_given_figure
    module.draw_if_interactive = lambda: None
    module.show = show_figures


def configure_matplotlib(module):
    """Right after `import matplotlib`: inline figures, unless the user chose a backend (MPLBACKEND)."""
    if os.environ.get("MPLBACKEND") and not getattr(process_state(), "force_inline", False):
        return
    try:
        module.rcParams["backend"] = MPL_BACKEND
    except Exception:
        pass


def use_inline_backend():
    """%matplotlib inline: switch to our backend now, even if matplotlib is already imported."""
    process_state().force_inline = True
    matplotlib = sys.modules.get("matplotlib")
    if matplotlib is None:
        return
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.switch_backend(MPL_BACKEND)
    else:
        matplotlib.use(MPL_BACKEND)
