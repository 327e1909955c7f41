"""Explorers: a figure a reader can move, in the static book (no kernel) and live.

:func:`explorer` turns a function and a grid of parameter values into a widget::

    def show(eps, layer):                    # returns a matplotlib figure (or an image array, PIL image, PNG bytes)
        return plots.decoy_maps(model, x, eps=eps, layer=layer)

    explorer(show, {"eps": [0.1, 0.2, 0.3], "layer": ["conv1", "conv2"]}, title="Decoy maps")

**Static.** Every grid point is computed once, during the papermill run, and stored as a PNG in an
``ipywidgets.Image``. The images sit in nested ``Stack`` widgets, one level per parameter (level ``k``
chooses the value of parameter ``k``), and each control (a slider or a dropdown) is linked in the
browser (``jsdlink``, no Python involved) to the ``selected_index`` of every stack of its level. The
widget state that papermill saves holds the images and the links, so on the published page moving a
control shows another precomputed image with no kernel and no network.

**Live.** With a running kernel (Binder, Colab, a local Jupyter) the same controls work, and a second
row takes any value, inside the grid or beyond it: *compute* calls the function with those values
(an empty entry: the value its control shows) and draws the result below the grid's picture.

A grid of ``n`` points stores ``n`` PNGs in the page: keep grids small (``max_variants``) and figures
modest (``dpi``).
"""
from __future__ import annotations

import io
import itertools
import numbers
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np

__all__ = ["Explorer", "explorer", "to_png"]

MAX_VARIANTS = 240


def to_png(result: Any, dpi: int = 80) -> bytes:
    """PNG bytes of what an explorer's function returned: a matplotlib figure (closed afterwards), a PIL
    image, an array (H×W grey or H×W×3/4 colour; floats in [0, 1] or uint8) or PNG bytes already.
    The same input always gives the same bytes (no time stamp or software tag is written)."""
    if isinstance(result, (bytes, bytearray)):
        if not bytes(result[:8]) == b"\x89PNG\r\n\x1a\n":
            raise ValueError("bytes returned to an explorer must be a PNG")
        return bytes(result)
    buf = io.BytesIO()
    if hasattr(result, "savefig"):  # a matplotlib figure
        import matplotlib.pyplot as plt

        result.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
        plt.close(result)
        return buf.getvalue()
    from PIL import Image

    if isinstance(result, Image.Image):
        result.save(buf, format="png")
        return buf.getvalue()
    array = np.asarray(result)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"an explorer's function returned an array of shape {array.shape}: expected H×W or H×W×3/4")
    if array.dtype != np.uint8:
        array = (np.clip(np.nan_to_num(array.astype(np.float64)), 0.0, 1.0) * 255).round().astype(np.uint8)
    Image.fromarray(array).save(buf, format="png")
    return buf.getvalue()


def _label(value: Any) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return f"{value:g}"
    return str(value)


def _control(name: str, values: Sequence, kind: str | None, label: str) -> tuple[widgets.Widget, str]:
    """The control of one parameter and the name of its trait that holds the chosen index."""
    values = list(values)
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)
    if kind is None:
        if values == list(range(len(values))):
            kind = "int"
        else:
            kind = "slider" if numeric else "dropdown"
    style = {"description_width": "initial"}
    if kind == "int":
        if values != list(range(len(values))):
            raise ValueError(f"{name}: an 'int' slider needs the values 0, 1, …, n-1; use 'slider' for {values}")
        return widgets.IntSlider(value=0, min=0, max=len(values) - 1, step=1, description=label,
                                 continuous_update=True, style=style), "value"
    options = [(_label(v), i) for i, v in enumerate(values)]
    if len({o[0] for o in options}) != len(options):
        options = [(f"{i}: {_label(v)}", i) for i, v in enumerate(values)]
    if kind == "slider":
        return widgets.SelectionSlider(options=options, index=0, description=label,
                                       continuous_update=True, style=style), "index"
    if kind == "dropdown":
        return widgets.Dropdown(options=options, index=0, description=label, style=style), "index"
    raise ValueError(f"{name}: unknown control kind {kind!r} (int, slider or dropdown)")


def _entry(label: str) -> widgets.Text:
    """A free-entry widget for the live row: any value, inside the grid or not; left empty, the control's."""
    return widgets.Text(value="", placeholder="as chosen above", description=label,
                        style={"description_width": "initial"}, layout={"width": "16em"})


class Explorer:
    """What :func:`explorer` returns: it displays as its widget, ``widget`` (a ``VBox``).

    Attributes: ``grid`` (parameter → values), ``controls`` (parameter → control widget), ``stack``
    (the outer ``Stack``), ``images`` (grid point → its ``Image`` widget, in grid order), ``links``
    (the front-end links: one per stack, from the control of its level to its ``selected_index``),
    ``entries`` / ``compute_button`` / ``live_image`` (the live row, when ``live``: text entries; an empty
    one takes its control's value).
    """

    def __init__(self, function: Callable[..., Any], grid: Mapping[str, Sequence], *, title: str | None = None,
                 labels: Mapping[str, str] | None = None, kinds: Mapping[str, str] | None = None,
                 dpi: int = 80, live: bool = True, max_variants: int = MAX_VARIANTS, width: str | None = None):
        if not grid:
            raise ValueError("an explorer needs at least one parameter")
        self.function = function
        self.grid = {name: list(values) for name, values in grid.items()}
        for name, values in self.grid.items():
            if not values:
                raise ValueError(f"parameter {name!r} has no values")
        n = int(np.prod([len(v) for v in self.grid.values()]))
        if n > max_variants:
            raise ValueError(f"the grid has {n} points (> max_variants={max_variants}); each is a PNG in the page")
        self.dpi = dpi
        labels = dict(labels or {})
        kinds = dict(kinds or {})
        names = list(self.grid)
        self.controls, traits = {}, {}
        for name in names:
            self.controls[name], traits[name] = _control(name, self.grid[name], kinds.get(name),
                                                         labels.get(name, name))
        layout = {"width": width} if width else {}
        self.images: dict[tuple, widgets.Image] = {}
        for point in itertools.product(*self.grid.values()):
            png = to_png(function(**dict(zip(names, point))), dpi=dpi)
            self.images[point] = widgets.Image(value=png, format="png", layout=dict(layout))

        self.links: list = []
        stacks_by_level: list[list[widgets.Stack]] = [[] for _ in names]

        def nest(level: int, prefix: tuple) -> widgets.Widget:
            if level == len(names):
                return self.images[prefix]
            children = [nest(level + 1, prefix + (v,)) for v in self.grid[names[level]]]
            stack = widgets.Stack(children=children, selected_index=0)
            stacks_by_level[level].append(stack)
            return stack

        self.stack = nest(0, ())
        for level, name in enumerate(names):
            for stack in stacks_by_level[level]:
                self.links.append(widgets.jsdlink((self.controls[name], traits[name]), (stack, "selected_index")))
        self._traits = traits

        rows: list[widgets.Widget] = []
        if title:
            rows.append(widgets.HTML(f"<b>{title}</b>"))
        rows += [widgets.HBox(list(self.controls.values()), layout={"flex_flow": "row wrap"}), self.stack]
        self.entries: dict[str, widgets.Widget] = {}
        self.compute_button = self.live_image = self.live_status = None
        if live:
            self.entries = {name: _entry(labels.get(name, name)) for name in names}
            self.compute_button = widgets.Button(description="compute", icon="play",
                                                 tooltip="call the function with these values (needs a running kernel)")
            self.live_status = widgets.HTML("<small>Other values: needs a running kernel (a launch button or a "
                                            "local Jupyter); the controls above work without one.</small>")
            # hidden until compute() fills it; a 1×1 transparent PNG, so the page has no empty (broken) image
            self.live_image = widgets.Image(value=to_png(np.zeros((1, 1, 4), np.uint8)), format="png",
                                            layout=dict(layout, display="none"))
            self.compute_button.on_click(lambda _: self.compute())
            rows += [widgets.HBox([*self.entries.values(), self.compute_button], layout={"flex_flow": "row wrap"}),
                     self.live_status, self.live_image]
        self.widget = widgets.VBox(children=rows)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # the grid side -------------------------------------------------------------------------------------------
    def index_of(self, **params) -> tuple[int, ...]:
        """The index of each parameter's value in its grid (the ``selected_index`` of each level)."""
        missing = set(self.grid) - set(params)
        if missing:
            raise KeyError(f"missing parameters {sorted(missing)}")
        out = []
        for name, values in self.grid.items():
            try:
                out.append(values.index(params[name]))
            except ValueError:
                raise ValueError(f"{name}={params[name]!r} is not in the grid {values}") from None
        return tuple(out)

    def select(self, **params) -> None:
        """Move the controls to a grid point (Python side; in a page the links move the stacks)."""
        index = self.index_of(**{**self.selected(), **params})
        for (name, control), i in zip(self.controls.items(), index):
            setattr(control, self._traits[name], i)
            self._sync_stacks(name, i)

    def selected(self) -> dict[str, Any]:
        """The grid point the controls show."""
        return {name: self.grid[name][getattr(c, self._traits[name])] for name, c in self.controls.items()}

    def shown(self) -> widgets.Image:
        """The ``Image`` the nested stacks show (followed through ``selected_index``)."""
        node = self.stack
        while isinstance(node, widgets.Stack):
            node = node.children[node.selected_index]
        return node

    def _sync_stacks(self, name: str, index: int) -> None:
        # jsdlink moves the stacks in the browser; mirror it here so Python sees the same state
        level = list(self.grid).index(name)
        todo = [(self.stack, 0)]
        while todo:
            node, depth = todo.pop()
            if not isinstance(node, widgets.Stack):
                continue
            if depth == level:
                node.selected_index = index
            todo += [(child, depth + 1) for child in node.children]

    # the live side -------------------------------------------------------------------------------------------
    def entry_value(self, name: str) -> Any:
        """The live row's value of one parameter: the control's grid value while the entry is empty, a grid
        value where the entry holds its label, else the text read as the grid's type (int, float) or kept
        as text."""
        text = self.entries[name].value.strip()
        if not text:
            return self.selected()[name]
        control, values = self.controls[name], self.grid[name]
        by_label = {label: values[i] for label, i in getattr(control, "options", ())}
        if text in by_label:
            return by_label[text]
        try:
            if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
                return int(text)
            if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
                return float(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number") from None
        return text

    def compute(self, **params) -> bytes:
        """Call the function with the live row's values (overridden by ``params``), show the picture under
        the grid's and return its PNG. Values need not be in the grid."""
        try:
            values = {name: self.entry_value(name) for name in self.entries} if self.entries else self.selected()
            values.update(params)
            png = to_png(self.function(**values), dpi=self.dpi)
        except Exception as error:  # shown to the reader, who typed the values
            if self.live_status is not None:
                self.live_status.value = f"<small>compute failed: {type(error).__name__}: {error}</small>"
            raise
        if self.live_image is not None:
            self.live_image.value = png
            self.live_image.layout.display = None
            shown = ", ".join(f"{k} = {_label(v)}" for k, v in values.items())
            self.live_status.value = f"<small>Computed live: {shown}</small>"
        return png


def explorer(function: Callable[..., Any], grid: Mapping[str, Sequence], **options) -> Explorer:
    """A static-reactive explorer of ``function`` over ``grid`` (parameter name → list of values).

    ``function(**point)`` is called once per grid point and may return a matplotlib figure, a PIL image,
    an image array or PNG bytes. Options: ``title``; ``labels`` (parameter → control label); ``kinds``
    (parameter → ``"int"`` for values 0…n-1, ``"slider"`` or ``"dropdown"``; by default ``int`` for
    0…n-1, a selection slider for numbers, a dropdown otherwise); ``dpi`` of figures (80); ``live``
    (the row that computes values beyond the grid with a kernel; True); ``max_variants`` (240);
    ``width`` of the images (CSS). See :class:`Explorer`.
    """
    return Explorer(function, grid, **options)
