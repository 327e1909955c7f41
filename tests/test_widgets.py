"""salbook.widgets: an explorer precomputes one PNG per grid point and links its controls to nested stacks
in the front end (the static page reacts with no kernel); with a kernel, compute() goes beyond the grid."""
import io

import ipywidgets as widgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from salbook.widgets import explorer, to_png  # noqa: E402


def square(size, shade):
    """An 8×8 grey image: a square of side ``size`` of value ``shade`` on black."""
    image = np.zeros((8, 8))
    image[:size, :size] = shade
    return image


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)))


GRID = {"size": [2, 4, 6], "shade": [0.25, 0.5, 0.75, 1.0]}


@pytest.fixture
def box():
    return explorer(square, GRID, title="squares")


def test_one_image_per_grid_point_each_showing_its_point(box):
    assert len(box.images) == 12
    for (size, shade), image in box.images.items():
        np.testing.assert_array_equal(pixels(image.value), to_png_pixels(square(size, shade)))


def to_png_pixels(array):
    return pixels(to_png(array))


def test_nested_stacks_one_level_per_parameter(box):
    outer = box.stack
    assert isinstance(outer, widgets.Stack) and len(outer.children) == 3  # sizes
    assert all(isinstance(c, widgets.Stack) and len(c.children) == 4 for c in outer.children)  # shades
    assert [outer.children[1].children[2]] == [box.images[(4, 0.75)]]


def test_every_stack_is_linked_in_the_front_end_to_its_levels_control(box):
    links = box.links
    assert all(isinstance(link, widgets.widget_link.DirectionalLink) for link in links)
    # front-end links are widgets themselves (LinkModel / DirectionalLinkModel), saved with the page's state
    assert all(link._model_name == "DirectionalLinkModel" for link in links)
    assert len(links) == 1 + 3  # the outer stack, and the three inner ones
    by_source = {}
    for link in links:
        (source, trait), (target, target_trait) = link.source, link.target
        assert target_trait == "selected_index" and isinstance(target, widgets.Stack)
        by_source.setdefault(source.model_id, []).append(target)
    size, shade = box.controls["size"], box.controls["shade"]
    assert by_source[size.model_id] == [box.stack]
    assert by_source[shade.model_id] == list(box.stack.children)


def test_controls_match_the_values():
    box = explorer(square, {"size": [0, 1, 2], "shade": [0.5, 1.0]}, kinds={"shade": "dropdown"}, live=False)
    assert isinstance(box.controls["size"], widgets.IntSlider)  # 0..n-1: an integer slider, linked on value
    assert box.links[0].source[1] == "value"
    assert isinstance(box.controls["shade"], widgets.Dropdown)
    assert box.links[1].source[1] == "index"
    slider = explorer(square, {"size": [2, 4], "shade": [0.5]}).controls["size"]
    assert isinstance(slider, widgets.SelectionSlider) and slider.label == "2" and slider.options == (("2", 0), ("4", 1))
    dropdown = explorer(lambda name: square(2, 1.0), {"name": ["a", "b"]}).controls["name"]
    assert isinstance(dropdown, widgets.Dropdown)


def test_selected_index_mapping(box):
    assert box.index_of(size=6, shade=0.5) == (2, 1)
    assert box.selected() == {"size": 2, "shade": 0.25}
    assert box.shown() is box.images[(2, 0.25)]
    box.select(size=6, shade=0.5)
    assert box.controls["size"].index == 2 and box.controls["shade"].index == 1
    assert box.stack.selected_index == 2 and all(s.selected_index == 1 for s in box.stack.children)
    assert box.shown() is box.images[(6, 0.5)]
    assert box.selected() == {"size": 6, "shade": 0.5}
    with pytest.raises(ValueError, match="not in the grid"):
        box.index_of(size=5, shade=0.5)


def test_live_compute_goes_beyond_the_grid(box):
    box.select(size=4, shade=1.0)
    assert box.entries["size"].value == ""  # empty: the control's value (no stale number on a static page)
    assert box.entry_value("size") == 4 and box.entry_value("shade") == 1.0
    assert box.compute() == to_png(square(4, 1.0))
    box.entries["size"].value = "5"  # not in the grid
    png = box.compute()
    np.testing.assert_array_equal(pixels(png), to_png_pixels(square(5, 1.0)))
    assert box.live_image.value == png and box.live_image.layout.display is None
    assert "size = 5" in box.live_status.value
    assert box.compute(shade=0.5) == to_png(square(5, 0.5))
    box.entries["shade"].value = "dark"
    with pytest.raises(ValueError, match="shade: 'dark' is not a number"):
        box.compute()
    assert "compute failed" in box.live_status.value


def test_entries_read_as_the_grids_type():
    box = explorer(lambda name, k: square(k + 1, 1.0), {"name": ["a", "b"], "k": [0, 1, 2]})
    box.select(name="b", k=2)
    assert box.entry_value("name") == "b" and box.entry_value("k") == 2
    box.entries["name"].value, box.entries["k"].value = " c ", "3"
    assert box.entry_value("name") == "c" and box.entry_value("k") == 3
    labelled = explorer(lambda t: square(2, t[0]), {"t": [(0.5,), (1.0,)]})  # values that are not text
    labelled.entries["t"].value = "(1.0,)"
    assert labelled.entry_value("t") == (1.0,)


def test_output_is_deterministic():
    def figure(a):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, a])
        return fig

    one = explorer(figure, {"a": [1.0, 2.0]}, live=False)
    two = explorer(figure, {"a": [1.0, 2.0]}, live=False)
    assert [i.value for i in one.images.values()] == [i.value for i in two.images.values()]
    assert one.images[(1.0,)].value != one.images[(2.0,)].value
    assert plt.get_fignums() == []  # figures are closed once rendered
    image = Image.fromarray(np.full((4, 4, 3), 200, np.uint8))
    assert to_png(image) == to_png(np.full((4, 4, 3), 200, np.uint8))


def test_the_explorers_state_is_what_a_static_page_needs(box):
    """The saved widget state (what papermill writes and the page loads) holds every image, with its PNG,
    and every link, pointing at the control and the stack by model id."""
    state = widgets.Widget.get_manager_state()["state"]
    for image in box.images.values():
        assert state[image.model_id]["model_name"] == "ImageModel"
        assert state[image.model_id]["state"]["format"] == "png"
    for link in box.links:
        saved = state[link.model_id]
        assert saved["model_name"] == "DirectionalLinkModel"
        (source, trait), (target, _) = link.source, link.target
        assert saved["state"]["source"] == [f"IPY_MODEL_{source.model_id}", trait]
        assert saved["state"]["target"] == [f"IPY_MODEL_{target.model_id}", "selected_index"]
    assert state[box.widget.model_id]["model_name"] == "VBoxModel"


def test_guards():
    with pytest.raises(ValueError, match="max_variants"):
        explorer(square, {"size": list(range(20)), "shade": [0.1 * i for i in range(20)]})
    with pytest.raises(ValueError, match="no values"):
        explorer(square, {"size": [], "shade": [1.0]})
    with pytest.raises(ValueError, match="shape"):
        to_png(np.zeros((2, 2, 2)))
