"""Sweeps over one training hyperparameter for several models, seeds included (chapters 3 and 4).

:func:`batch_size_sweep` trains every model of a dict at every batch size and seed, with the learning
rate scaled linearly with the batch size and the number of epochs fixed, the protocol of Wu & He
(2018) for comparing normalizations at small batches. It returns a :class:`SweepTable`, one row per
run (tidy: one column per variable), which the chapters summarize and plot.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from sigprop._validation import check_int, check_number
from sigprop.data import DataSplit
from sigprop.normalization import recalibrate_bn_, running_stat_layers
from sigprop.train import evaluate, fit

__all__ = ["SweepTable", "batch_size_sweep"]

ModelFactory = Callable[[torch.Generator], nn.Module]


@dataclass
class SweepTable:
    """Rows of a sweep, one dict per run, all with the same keys.

    Example:
        >>> t = SweepTable([{"model": "a", "x": 1, "err": 0.1}, {"model": "a", "x": 1, "err": 0.3}])
        >>> t.summary("err", by=("model", "x"))[("a", 1)]["mean"]
        0.2
    """

    rows: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.rows)

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0]) if self.rows else []

    def column(self, name: str) -> list:
        """Every row's value of ``name``."""
        if self.rows and name not in self.rows[0]:
            raise ValueError(f"no column {name!r}; columns are {self.columns}")
        return [row[name] for row in self.rows]

    def where(self, **equal) -> SweepTable:
        """The rows whose columns equal the given values, e.g. ``table.where(model="BN", batch_size=2)``."""
        for name in equal:
            self.column(name)  # validates the name
        return SweepTable([r for r in self.rows if all(r[k] == v for k, v in equal.items())])

    def summary(self, value: str, by: Sequence[str] = ("model", "batch_size")) -> dict[tuple, dict[str, float]]:
        """Mean, sample standard deviation (0 for one run), min, max and count of ``value`` per group.

        Non-finite values (a diverged run's error is NaN) are left out of the statistics; ``n`` counts
        the finite ones and ``runs`` all of them.
        """
        groups: dict[tuple, list[float]] = {}
        for row in self.rows:
            groups.setdefault(tuple(row[k] for k in by), []).append(row[value])
        out = {}
        for key, values in groups.items():
            finite = [v for v in values if v is not None and math.isfinite(v)]
            out[key] = {"mean": statistics.fmean(finite) if finite else math.nan,
                        "std": statistics.stdev(finite) if len(finite) > 1 else 0.0,
                        "min": min(finite, default=math.nan), "max": max(finite, default=math.nan),
                        "n": len(finite), "runs": len(values)}
        return out

    def to_text(self, value: str = "test_error", row: str = "model", col: str = "batch_size",
                percent: bool = True) -> str:
        """A pivot of ``value`` (mean ± std over the seeds) with ``row`` down and ``col`` across."""
        stats = self.summary(value, by=(row, col))
        rows = list(dict.fromkeys(k[0] for k in stats))
        cols = sorted(dict.fromkeys(k[1] for k in stats))
        scale, unit = (100.0, "%") if percent else (1.0, "")
        width = max([len(str(r)) for r in rows] + [len(row)])
        lines = [f"{row:<{width}}" + "".join(f"{f'{col}={c}':>16}" for c in cols)]
        for r in rows:
            cells = []
            for c in cols:
                s = stats.get((r, c))
                if s is None or s["n"] == 0:
                    cells.append(f"{'-':>16}")
                else:
                    cell = f"{s['mean'] * scale:.1f} ± {s['std'] * scale:.1f}{unit}"
                    cells.append(f"{cell:>16}")
            lines.append(f"{r:<{width}}" + "".join(cells))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text() if self.rows and "test_error" in self.rows[0] else repr(self)


def batch_size_sweep(
    models: Mapping[str, ModelFactory],
    data: DataSplit,
    batch_sizes: Sequence[int] = (2, 8, 32),
    *,
    base_lr: float = 0.1,
    base_batch_size: int = 32,
    epochs: int = 3,
    seeds: Sequence[int] = (0,),
    recalibrate: bool = True,
    recalibration_batch_size: int | None = None,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    target_accuracy: float | None = None,
    progress: bool = True,
) -> SweepTable:
    """Test error against batch size for several models: Wu & He's (2018) protocol at small scale.

    Every model is trained at every batch size ``b`` and seed with learning rate
    ``base_lr * b / base_batch_size`` (the linear scaling rule of Goyal et al., 2017) for the same
    number of epochs, so that a smaller batch takes proportionally more, smaller steps. After training
    the test error is measured in eval mode (running statistics, where the model has them); with
    ``recalibrate`` the running statistics are then re-estimated over the training set
    (:func:`sigprop.normalization.recalibrate_bn_`) and the test error measured again, which separates
    the error of the running averages from what the small batches did to the weights.

    Args:
        models: name -> factory; ``factory(generator)`` returns a fresh, untrained model initialized
            from that ``torch.Generator`` (seeded with the run's seed), e.g.
            ``lambda g: mlp(norm="batch", init="kaiming_normal", generator=g)``. The model is moved to
            ``data``'s device.
        data: the training and test sets.
        batch_sizes: the batch sizes to train with (each >= 1; batch norm needs >= 2).
        base_lr: learning rate at ``base_batch_size``.
        base_batch_size: the batch size at which ``base_lr`` applies.
        epochs: passes over the training set, the same for every batch size.
        seeds: one run per seed (model initialization and mini-batch order).
        recalibrate: also measure the test error after recalibrating the running statistics, for
            models that have them (``NaN`` in that column for the others).
        recalibration_batch_size: batch size of the recalibration passes; ``None`` uses each run's
            own training batch size, so the statistics are those of the batches the model trained on.
        optimizer, momentum, weight_decay: as in :func:`sigprop.train.fit`.
        target_accuracy: also record ``epochs_to_target``, the first epoch after which the test
            accuracy (eval mode) reached this value (``None`` if it never did).
        progress: a progress bar over the runs.

    Returns:
        A :class:`SweepTable` with one row per run and the columns ``model``, ``batch_size``, ``seed``,
        ``lr``, ``steps``, ``seconds`` (training wall-clock time), ``diverged``, ``train_error``,
        ``test_error`` and ``test_error_recalibrated`` (errors are fractions; NaN after divergence), and
        ``epochs_to_target`` when ``target_accuracy`` is given. A sweep over learning rates at one
        batch size is ``batch_size_sweep(..., batch_sizes=[b], base_lr=lr, base_batch_size=b)``
        once per ``lr``, the rows concatenated.

    Example:
        >>> from sigprop.data import make_spirals
        >>> from sigprop.models import mlp
        >>> table = batch_size_sweep({"BN": lambda g: mlp(2, 3, depth=1, width=8, norm="batch", generator=g)},
        ...                          make_spirals(30), batch_sizes=[4, 16], epochs=1, progress=False)
        >>> table.column("batch_size"), len(table)
        ([4, 16], 2)
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"models must be a non-empty dict of name -> factory, got {type(models).__name__}")
    for name, factory in models.items():
        if not callable(factory):
            raise TypeError(f"models[{name!r}] must be a callable generator -> nn.Module, got {type(factory).__name__}")
    if not isinstance(data, DataSplit):
        raise TypeError(f"data must be a sigprop.data.DataSplit, got {type(data).__name__}")
    if len(batch_sizes) == 0 or len(seeds) == 0:
        raise ValueError("batch_sizes and seeds must each hold at least one value")
    for b in batch_sizes:
        check_int("each batch size", b, minimum=1)
    check_int("base_batch_size", base_batch_size, minimum=1)
    check_int("epochs", epochs, minimum=1)
    check_number("base_lr", base_lr, positive=True)
    rows = []
    runs = [(name, b, s) for name in models for b in batch_sizes for s in seeds]
    for name, b, seed in tqdm(runs, desc="batch-size sweep", leave=False, **({} if progress else {"disable": True})):
        model = models[name](torch.Generator().manual_seed(seed))
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] returned {type(model).__name__}, not an nn.Module")
        model = model.to(data.device)
        lr = base_lr * b / base_batch_size
        start = time.perf_counter()
        # quiet: a diverged run is a row with diverged=True, not a warning
        history = fit(model, data, epochs=epochs, batch_size=b, lr=lr, optimizer=optimizer, momentum=momentum,
                      weight_decay=weight_decay, quiet=True, generator=torch.Generator().manual_seed(seed),
                      label=f"{name}, batch {b}, seed {seed}")
        seconds = time.perf_counter() - start
        row = {"model": name, "batch_size": b, "seed": seed, "lr": lr, "steps": history.steps,
               "seconds": seconds, "diverged": history.diverged, "train_error": math.nan,
               "test_error": math.nan, "test_error_recalibrated": math.nan}
        if target_accuracy is not None:
            row["epochs_to_target"] = history.epochs_to(target_accuracy)
        if not history.diverged:
            row["train_error"] = 1 - history.train_accuracy[-1]
            row["test_error"] = 1 - history.test_accuracy[-1]
            if recalibrate and running_stat_layers(model):
                recalibrate_bn_(model, data.x_train, batch_size=recalibration_batch_size or b)
                row["test_error_recalibrated"] = 1 - evaluate(model, data.x_test, data.y_test)[1]
        rows.append(row)
    return SweepTable(rows)
