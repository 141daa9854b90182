"""The training loop every chapter shares: mini-batch gradient descent that records what happened.

:func:`fit` returns a :class:`History` of per-step losses and per-epoch accuracies. A non-finite
loss ends that run at once: the history is marked ``diverged``, the message says at which step and
epoch, and the curves stop there instead of trailing NaN into the plots.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sigprop._validation import check_choice, check_generator, check_int, check_number, check_type
from sigprop.data import DataSplit
from sigprop.diagnostics import UpdateRatio, weight_layers

__all__ = ["History", "DivergenceWarning", "fit", "evaluate", "make_optimizer"]


class DivergenceWarning(RuntimeWarning):
    """Issued when a training run stops because its loss became NaN or infinite."""


@dataclass
class History:
    """What one training run recorded.

    Attributes:
        loss: training loss of every step (mini-batch), up to divergence.
        grad_norm: total gradient norm of every step, before any ``before_step`` hook (e.g. clipping).
        epoch_loss: mean training loss of each completed epoch.
        train_accuracy, test_accuracy: after each completed epoch (classification only).
        test_loss: after each completed epoch.
        update_ratio: per layer, ``log10(std(dW)/std(W))`` of every step (when tracked).
        layer_grad_norm: per layer, the weight-gradient norm of every step (when tracked).
        diverged: the run stopped on a non-finite loss; ``message`` says where.
    """

    label: str = ""
    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    update_ratio: dict[str, list[float]] = field(default_factory=dict)
    layer_grad_norm: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False
    diverged_at_step: int | None = None
    message: str = ""

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def epochs(self) -> int:
        return len(self.epoch_loss)

    @property
    def final_test_accuracy(self) -> float:
        return self.test_accuracy[-1] if self.test_accuracy else math.nan

    def epochs_to(self, accuracy: float, split: str = "test") -> int | None:
        """First epoch (1-based) whose accuracy reaches ``accuracy``, or ``None`` if never."""
        check_choice("split", split, ("test", "train"))
        values = self.test_accuracy if split == "test" else self.train_accuracy
        return next((i + 1 for i, a in enumerate(values) if a >= accuracy), None)

    def mean_update_ratio(self, layer: str) -> float:
        """Mean of ``layer``'s finite log10 update:data ratios over the run; -inf if no step changed it at all.

        A step whose update is below float32's resolution leaves the weights unchanged and records -inf;
        those steps are left out of the mean, and a layer that never moved gets -inf.
        """
        if layer not in self.update_ratio:
            raise ValueError(f"no update ratios for layer {layer!r}; recorded: {sorted(self.update_ratio)} "
                             "(train with fit(..., track_update_ratio=True))")
        values = [v for v in self.update_ratio[layer] if math.isfinite(v)]
        return sum(values) / len(values) if values else -math.inf

    def __repr__(self) -> str:
        state = self.message if self.diverged else f"test accuracy {self.final_test_accuracy:.3f}"
        return f"History({self.label!r}: {self.epochs} epochs, {self.steps} steps, {state})"


def make_optimizer(model: nn.Module, optimizer: str, lr: float, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """An optimizer by name: ``"sgd"`` (with optional momentum) or ``"adam"``."""
    lr = check_number("lr", lr, positive=True)
    momentum = check_number("momentum", momentum, minimum=0.0)
    weight_decay = check_number("weight_decay", weight_decay, minimum=0.0)
    check_choice("optimizer", optimizer, ("sgd", "adam"))
    params = model.parameters()
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, loss_fn: nn.Module | None = None,
             batch_size: int = 1024) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)`` in eval mode (accuracy NaN for regression).

    Shape:
        x (N, *features), y (N,) class indices or (N, T) regression targets.
    """
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    was_training = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0, len(x)
    classification = y.dtype == torch.int64
    for start in range(0, n, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        out = model(xb)
        total_loss += loss_fn(out, yb).item() * len(xb)
        if classification:
            correct += (out.argmax(dim=1) == yb).sum().item()
    model.train(was_training)
    return total_loss / n, (correct / n if classification else math.nan)


def _total_grad_norm(model: nn.Module) -> float:
    norms = [p.grad.detach().norm() for p in model.parameters() if p.grad is not None]
    return torch.stack(norms).norm().item() if norms else 0.0


def fit(
    model: nn.Module,
    data: DataSplit,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.1,
    optimizer: str | torch.optim.Optimizer = "sgd",
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    loss_fn: nn.Module | None = None,
    before_step: Callable[[nn.Module], object] | None = None,
    track_update_ratio: bool = False,
    track_layer_grad_norm: bool = False,
    generator: torch.Generator | None = None,
    progress: bool = True,
    label: str = "",
    quiet: bool = False,
) -> History:
    """Train ``model`` on ``data`` with mini-batch gradient descent and record the run.

    Each step: draw a mini-batch (a fresh permutation per epoch from ``generator``), compute the
    loss, backpropagate, record the total gradient norm, call ``before_step(model)`` (e.g. gradient
    clipping), then take the optimizer step. After each epoch the model is evaluated on both sets.

    Args:
        model: the network, already on ``data``'s device.
        data: train and test tensors.
        epochs: passes over the training set.
        batch_size: samples per step.
        lr: learning rate (ignored when ``optimizer`` is an optimizer instance).
        optimizer: ``"sgd"``, ``"adam"`` or a ready ``torch.optim.Optimizer``.
        momentum, weight_decay: for the named optimizers.
        loss_fn: defaults to cross-entropy.
        before_step: called with the model after ``backward()`` and before ``step()``.
        track_update_ratio: record per-layer update:data ratios (:class:`UpdateRatio`).
        track_layer_grad_norm: record per-layer weight-gradient norms every step.
        generator: random source of the mini-batch order.
        progress: show a progress bar.
        label: a name for the run, shown on the bar and in messages.
        quiet: no progress bar and no :class:`DivergenceWarning`, for runs whose outcome the caller
            reports itself (a divergence is still recorded in the History and still stops the run).

    Returns:
        A :class:`History`. If the loss becomes NaN or infinite the run stops there, ``diverged``
        is set, ``message`` says where, and (unless ``quiet``) a :class:`DivergenceWarning` says it too.

    Example:
        >>> from sigprop.data import make_spirals
        >>> from sigprop.models import mlp
        >>> data = make_spirals(50)
        >>> fit(mlp(2, 3, depth=2, width=16), data, epochs=2, progress=False).epochs
        2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(data, DataSplit):
        raise TypeError(f"data must be a sigprop.data.DataSplit, got {type(data).__name__}")
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    if before_step is not None and not callable(before_step):
        raise TypeError(f"before_step must be callable, got {type(before_step).__name__}")
    check_generator(generator)
    check_type("progress", progress, bool, "a bool")
    check_type("quiet", quiet, bool, "a bool")
    opt = optimizer if isinstance(optimizer, torch.optim.Optimizer) else make_optimizer(
        model, optimizer, lr, momentum, weight_decay)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    history = History(label=label)
    tracker = UpdateRatio(model) if track_update_ratio else None
    layers = weight_layers(model) if track_layer_grad_norm else []
    history.layer_grad_norm = {name: [] for name, _ in layers}
    n = len(data.x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    # Only an explicit progress=False forces the bar off, so TQDM_DISABLE=1 (set by the book build) still applies.
    bar = tqdm(total=epochs * steps_per_epoch, desc=label or "training", leave=False,
               **({} if progress and not quiet else {"disable": True}))
    model.train()
    try:
        for epoch in range(epochs):
            order = torch.randperm(n, generator=generator).to(data.device)
            epoch_losses = []
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                loss = loss_fn(model(data.x_train[idx]), data.y_train[idx])
                value = loss.item()
                if not math.isfinite(value):
                    history.diverged, history.diverged_at_step = True, history.steps
                    history.message = (f"diverged: loss became {value} at step {history.steps} "
                                       f"(epoch {epoch + 1}); the run was stopped there")
                    if not quiet:
                        warnings.warn(f"{label or 'training'} {history.message}", DivergenceWarning,
                                      stacklevel=2)
                    return history
                opt.zero_grad(set_to_none=True)
                loss.backward()
                history.loss.append(value)
                history.grad_norm.append(_total_grad_norm(model))
                for name, layer in layers:
                    history.layer_grad_norm[name].append(layer.weight.grad.norm().item())
                if before_step is not None:
                    before_step(model)
                if tracker is not None:
                    tracker.before_step()
                opt.step()
                if tracker is not None:
                    tracker.after_step()
                epoch_losses.append(value)
                bar.update(1)
            history.epoch_loss.append(sum(epoch_losses) / len(epoch_losses))
            train_loss, train_acc = evaluate(model, data.x_train, data.y_train, loss_fn)
            test_loss, test_acc = evaluate(model, data.x_test, data.y_test, loss_fn)
            history.train_accuracy.append(train_acc)
            history.test_accuracy.append(test_acc)
            history.test_loss.append(test_loss)
            bar.set_postfix(loss=f"{history.epoch_loss[-1]:.3f}", test_acc=f"{test_acc:.3f}")
    finally:
        bar.close()
        if tracker is not None:
            history.update_ratio = tracker.history
    return history
