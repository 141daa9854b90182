"""Tests for sigprop.plots: every figure draws from real records, colours stay put, bad input raises."""

import matplotlib

matplotlib.use("Agg")

import math  # noqa: E402
import warnings  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import gen
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sigprop.data import load_digits_split, make_spirals  # noqa: E402
from sigprop.diagnostics import layer_stats  # noqa: E402
from sigprop.models import mlp  # noqa: E402
from sigprop.plots import (  # noqa: E402
    PALETTE,
    STAT_LABELS,
    color_for,
    depth_colors,
    fixed_axes,
    log_axis,
    plot_depth_profile,
    plot_histograms,
    plot_training_curves,
    plot_update_ratios,
    reset_colors,
)
from sigprop.train import DivergenceWarning, History, fit  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny models: one thread is an order of magnitude faster than two when the cores are shared.
    # Module scope, so that the module's record fixtures below are built with it too.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _clean():
    # A fresh colour table and no figures left open.
    reset_colors()
    yield
    plt.close("all")
    reset_colors()


@pytest.fixture(scope="module")
def stats():
    """Real probes of two 4-hidden-layer networks on 128 digits: a healthy one and a saturated one."""
    data = load_digits_split()
    x, y = data.x_train[:128], data.y_train[:128]
    torch.manual_seed(0)
    healthy = mlp(64, 10, depth=4, width=32, activation="tanh", init="xavier_normal", generator=gen())
    saturated = mlp(64, 10, depth=4, width=32, activation="tanh", init=1.0, generator=gen())
    return {"xavier": layer_stats(healthy, x, y), "N(0, 1)": layer_stats(saturated, x, y)}


@pytest.fixture(scope="module")
def histories():
    """Real runs on spirals: one that trains and one that diverges, both tracking update ratios."""
    data = make_spirals(30, 3, generator=gen())
    torch.manual_seed(0)
    ok = fit(mlp(2, 3, depth=2, width=16), data, epochs=3, batch_size=16, lr=0.3, track_update_ratio=True,
             progress=False, label="lr 0.3")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        hot = fit(mlp(2, 3, depth=2, width=16), data, epochs=3, batch_size=16, lr=1e6, track_update_ratio=True,
                  progress=False, label="lr 1e6")
    assert hot.diverged and not ok.diverged
    return {"lr 0.3": ok, "lr 1e6": hot}


def x_markers(ax):
    return [line for line in ax.get_lines() if line.get_marker() == "X"]


# --- colours ------------------------------------------------------------------------------------------


def test_color_for_is_stable_per_label_in_first_asked_order():
    a = color_for("healthy")
    b = color_for("sick")
    assert (a, b) == (PALETTE[0], PALETTE[1])
    assert color_for("healthy") == a and color_for("sick") == b
    assert color_for("healthy") != color_for("sick")


def test_color_for_cycles_after_the_palette_and_reset_starts_over():
    colours = [color_for(f"run {i}") for i in range(len(PALETTE) + 1)]
    assert colours[:-1] == PALETTE and colours[-1] == PALETTE[0]
    reset_colors()
    assert color_for("run 5") == PALETTE[0]


def test_depth_colors_go_from_light_to_dark():
    colours = depth_colors(5)
    assert len(colours) == 5 and len(depth_colors(1)) == 1
    luminance = [0.2126 * r + 0.7152 * g + 0.0722 * b for r, g, b, _ in colours]
    assert all(a > b for a, b in zip(luminance, luminance[1:], strict=False))


# --- plot_histograms ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["activation", "gradient"])
def test_plot_histograms_draws_one_histogram_per_hidden_layer(stats, kind):
    s = stats["xavier"]
    ax = plot_histograms(s, kind=kind, title="t")
    assert isinstance(ax, Axes)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [lab.split(":")[0] for lab in labels] == s.names[:-1]  # the output layer is left out
    assert len(ax.patches) == len(s.names) - 1
    assert ax.get_title() == "t"
    assert ("activation" in ax.get_xlabel()) == (kind == "activation")


def test_plot_histograms_chosen_layers_on_given_axes(stats):
    fig, ax = plt.subplots()
    out = plot_histograms(stats["N(0, 1)"], layers=["linear1", "out"], bins=10, ax=ax)
    assert out is ax and len(ax.patches) == 2
    assert [t.get_text().split(":")[0] for t in ax.get_legend().get_texts()] == ["linear1", "out"]


def test_plot_histograms_of_constant_values():
    flat = {"linear1": np.zeros(20, dtype=np.float32)}
    s = type("S", (), {"names": ["linear1"], "activations": flat, "gradients": flat})()
    assert isinstance(plot_histograms(s), Axes)  # a zero-width range still gets bins


# --- plot_depth_profile -------------------------------------------------------------------------------


@pytest.mark.parametrize("stat", ["activation_std", "grad_norm", "weight_grad_norm", "grad_data_ratio",
                                  "activation_mean", "grad_std"])
def test_plot_depth_profile_one_line_per_configuration(stats, stat):
    ax = plot_depth_profile(stats, stat=stat, logy=stat != "activation_mean", title="depth")
    assert isinstance(ax, Axes)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["xavier", "N(0, 1)"]
    for line, (label, s) in zip(lines, stats.items(), strict=True):
        assert to_rgba(line.get_color()) == to_rgba(color_for(label))
        np.testing.assert_array_equal(line.get_xdata(), s.depth)
        np.testing.assert_array_equal(line.get_ydata(), getattr(s, stat))
    assert ax.get_yscale() == ("linear" if stat == "activation_mean" else "log")
    assert ax.get_title() == "depth"


def test_plot_depth_profile_keeps_colours_across_figures(stats):
    first = plot_depth_profile({"N(0, 1)": stats["N(0, 1)"]}).get_lines()[0].get_color()
    both = plot_depth_profile(stats)
    colours = {line.get_label(): line.get_color() for line in both.get_lines()}
    assert colours["N(0, 1)"] == first
    assert colours["xavier"] != first


def test_plot_depth_profile_hidden_only_leaves_out_the_output_layer(stats):
    ax = plot_depth_profile(stats, stat="saturated", logy=False, hidden_only=True)
    s = stats["N(0, 1)"]
    line = ax.get_lines()[1]
    np.testing.assert_array_equal(line.get_xdata(), s.depth[:-1])
    np.testing.assert_array_equal(line.get_ydata(), s.saturated[:-1])


# --- plot_training_curves -----------------------------------------------------------------------------


def test_plot_training_curves_draws_loss_and_accuracy(histories):
    fig = plot_training_curves(histories, title="two runs", smooth=3)
    assert isinstance(fig, Figure)
    ax_loss, ax_acc = fig.axes[:2]
    assert ax_loss.get_yscale() == "log" and "3-step mean" in ax_loss.get_ylabel()
    ok = histories["lr 0.3"]
    loss_line = next(line for line in ax_loss.get_lines() if line.get_label() == "lr 0.3")
    assert len(loss_line.get_xdata()) == ok.steps - 3 + 1  # a 3-step moving average
    assert to_rgba(loss_line.get_color()) == to_rgba(color_for("lr 0.3"))
    acc_lines = ax_acc.get_lines()
    assert [line.get_label() for line in acc_lines] == ["lr 0.3"]  # the diverged run has no finished epoch
    np.testing.assert_array_equal(acc_lines[0].get_ydata(), ok.test_accuracy)
    assert fig._suptitle.get_text() == "two runs"


def test_plot_training_curves_marks_the_diverged_run(histories):
    fig = plot_training_curves(histories, smooth=1)
    ax_loss = fig.axes[0]
    hot = histories["lr 1e6"]
    markers = x_markers(ax_loss)
    assert len(markers) == 1
    assert list(markers[0].get_xdata()) == [hot.steps] and list(markers[0].get_ydata()) == [hot.loss[-1]]
    assert to_rgba(markers[0].get_color()) == to_rgba(color_for("lr 1e6"))
    assert [t.get_text() for t in ax_loss.texts] == ["diverged"]


def test_plot_training_curves_without_divergence_has_no_marker(histories):
    fig = plot_training_curves({"lr 0.3": histories["lr 0.3"]})
    assert x_markers(fig.axes[0]) == [] and len(fig.axes[0].texts) == 0


def test_plot_training_curves_divergence_at_the_first_step():
    h = History(diverged=True, diverged_at_step=0, message="diverged: loss became nan at step 0 (epoch 1)")
    fig = plot_training_curves({"dead on arrival": h})
    assert [list(m.get_xdata()) for m in x_markers(fig.axes[0])] == [[0]]


def test_plot_training_curves_on_given_axes_with_long_smoothing(histories):
    fig, axes = plt.subplots(1, 2)
    out = plot_training_curves(histories, axes=axes, smooth=10_000)
    assert out is fig
    ok_line = next(line for line in axes[0].get_lines() if line.get_label() == "lr 0.3")
    assert len(ok_line.get_xdata()) == 1  # the window shrinks to the run's length


# --- plot_update_ratios -------------------------------------------------------------------------------


def test_plot_update_ratios_one_line_per_layer_and_the_reference(histories):
    ok = histories["lr 0.3"]
    ax = plot_update_ratios(ok, title="ratios", smooth=2)
    assert isinstance(ax, Axes)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines[:3]] == ["linear1", "linear2", "out"]
    assert len(lines[0].get_xdata()) == ok.steps - 1
    np.testing.assert_allclose(lines[0].get_ydata(), np.convolve(ok.update_ratio["linear1"], [0.5, 0.5], "valid"))
    reference = lines[3]
    assert list(reference.get_ydata()) == [-3.0, -3.0]
    assert ax.get_title() == "ratios"


def test_plot_update_ratios_of_a_diverged_run(histories):
    ax = plot_update_ratios(histories["lr 1e6"])
    assert all(math.isfinite(v) for v in ax.get_ylim())


def test_plot_update_ratios_with_infinite_values():
    h = History(update_ratio={"linear1": [-math.inf, -math.inf], "out": [-2.5, -3.5]})
    ax = plot_update_ratios(h, smooth=1)
    assert all(math.isfinite(v) for v in ax.get_ylim())
    assert np.isnan(ax.get_lines()[0].get_ydata()).all()




# --- fast axes for explorable figures -------------------------------------------------------------------


def test_fixed_axes_place_the_axes_at_the_given_margins():
    fig, (ax1, ax2) = fixed_axes(2, figsize=(8, 3), left=0.1, right=0.9, bottom=0.2, top=0.8)
    box1, box2 = ax1.get_position(), ax2.get_position()
    assert (box1.x0, box1.y0, box2.x1, box2.y1) == pytest.approx((0.1, 0.2, 0.9, 0.8))
    assert fig.get_layout_engine() is None  # no constrained or tight layout to recompute on each draw
    _, ax = fixed_axes()
    assert not isinstance(ax, (list, np.ndarray))


def test_log_axis_has_fixed_decade_ticks_with_plain_labels_and_no_minor_ticks():
    fig, ax = fixed_axes()
    log_axis(ax, 1e-16, 1e16, every=4)
    ax.plot([1, 2], [1e-30, 1e30])  # data beyond the limits leave them fixed
    fig.canvas.draw()
    assert ax.get_yscale() == "log" and ax.get_ylim() == pytest.approx((1e-16, 1e16))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1e-16", "1e-12", "1e-8", "1e-4", "1", "1e4", "1e8",
                                                            "1e12", "1e16"]
    assert ax.yaxis.get_minorticklocs().size == 0
    log_axis(ax, 0.5, 200, axis="x")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "1e1", "1e2"] and ax.get_xscale() == "log"


def test_every_layer_statistic_has_a_label(stats):
    arrays = [k for k, v in vars(stats["xavier"]).items() if isinstance(v, np.ndarray)]
    assert set(arrays) <= set(STAT_LABELS) and "activation_input_std" in STAT_LABELS
