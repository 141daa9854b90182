"""sigprop.sweeps: the batch-size sweep's protocol (linear lr scaling, fixed epochs) and its table."""

import math

import pytest
from conftest import gen

from sigprop.data import make_spirals
from sigprop.models import mlp
from sigprop.sweeps import SweepTable, batch_size_sweep

DATA = make_spirals(20, generator=gen())
MODELS = {"BN": lambda g: mlp(2, 3, depth=1, width=8, norm="batch", generator=g),
          "LN": lambda g: mlp(2, 3, depth=1, width=8, norm="layer", generator=g)}


def test_batch_size_sweep_scales_the_learning_rate_and_keeps_the_epochs():
    table = batch_size_sweep(MODELS, DATA, batch_sizes=[3, 9], base_lr=0.09, base_batch_size=9, epochs=2,
                             seeds=[0, 1], progress=False)
    assert len(table) == 2 * 2 * 2
    assert set(table.columns) >= {"model", "batch_size", "seed", "lr", "steps", "seconds", "diverged",
                                  "train_error", "test_error", "test_error_recalibrated"}
    for row in table:
        assert row["lr"] == pytest.approx(0.09 * row["batch_size"] / 9)
        assert row["steps"] == 2 * math.ceil(len(DATA.x_train) / row["batch_size"])
        assert 0 <= row["test_error"] <= 1
        # only the model with running statistics is recalibrated
        assert math.isnan(row["test_error_recalibrated"]) == (row["model"] == "LN")
    summary = table.summary("test_error")
    assert summary["BN", 3]["n"] == 2 and set(summary) == {(m, b) for m in MODELS for b in (3, 9)}
    assert "batch_size=3" in table.to_text() and "±" in str(table)


def test_epochs_to_target_is_recorded_when_asked():
    table = batch_size_sweep(MODELS, DATA, batch_sizes=[5], epochs=3, target_accuracy=0.0, progress=False)
    assert table.column("epochs_to_target") == [1, 1]
    table = batch_size_sweep(MODELS, DATA, batch_sizes=[5], epochs=1, target_accuracy=1.01, progress=False)
    assert table.column("epochs_to_target") == [None, None]


def test_a_diverged_run_is_a_row_with_nan_errors():
    table = batch_size_sweep({"plain": lambda g: mlp(2, 3, depth=2, width=8, init=1e3, generator=g)}, DATA,
                             batch_sizes=[4], base_lr=1e30, epochs=3, progress=False)
    (row,) = table.rows
    assert row["diverged"] and math.isnan(row["test_error"])
    assert table.summary("test_error")["plain", 4]["n"] == 0


def test_table_where_and_bad_columns():
    table = SweepTable([{"model": "a", "b": 1, "e": 0.5}, {"model": "b", "b": 1, "e": 0.1}])
    assert table.where(model="b").column("e") == [0.1]
    with pytest.raises(ValueError, match="no column 'x'"):
        table.where(x=1)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"models": {}}, TypeError, "non-empty dict"),
    ({"models": {"a": 3}}, TypeError, "must be a callable"),
    ({"data": "digits"}, TypeError, "DataSplit"),
    ({"batch_sizes": [0]}, ValueError, "each batch size must be at least 1"),
    ({"batch_sizes": [2.0]}, TypeError, "each batch size must be an int"),
    ({"batch_sizes": []}, ValueError, "at least one"),
    ({"base_lr": -1.0}, ValueError, "base_lr must be positive"),
])
def test_bad_arguments_are_rejected(kwargs, error, match):
    args = {"models": MODELS, "data": DATA, **kwargs}
    with pytest.raises(error, match=match):
        batch_size_sweep(args.pop("models"), args.pop("data"), progress=False, **args)
