"""Auxiliary losses: outputs at several depths, weighted multi-task losses, hedging (chapters 5 and 6).

- :class:`MultiHeadMLP`: an MLP trunk with classifier heads after chosen hidden layers: deep
  supervision (Lee et al. 2015) and Inception's auxiliary classifiers (Szegedy et al. 2015).
- :class:`MainAuxNet`: two inputs, two outputs; an auxiliary output on the first input's encoder and
  a main output after the second input joins (the Keras functional-API guide's example).
- Loss weightings, each ``weighting(losses, shared=None) -> total``: :class:`FixedWeighting` (with an
  optional decay of the auxiliary weights), :class:`UncertaintyWeighting` (Kendall, Gal & Cipolla
  2018) and :class:`GradNorm` (Chen et al. 2018).
- :func:`fit_multitask`: the training loop for a model with several outputs and losses.
- :class:`HedgeMLP`, :class:`OnlineSGD`, :func:`run_online`: online deep learning by hedge
  backpropagation (Sahoo et al. 2018), the basis of Aux-Net (Agarwal et al. 2020).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from sigprop._validation import check_choice, check_int, check_number
from sigprop.models import make_activation, mlp

__all__ = ["MultiHeadMLP", "MainAuxNet", "FixedWeighting", "UncertaintyWeighting", "GradNorm",
           "MultiTaskHistory", "fit_multitask", "HedgeMLP", "OnlineSGD", "OnlineRecord", "run_online"]


# ---------------------------------------------------------------------------------------------------
# Validation


def _linear(n_in: int, n_out: int, generator: torch.Generator | None) -> nn.Linear:
    """An nn.Linear with PyTorch's default distribution, U(-1/sqrt(n_in), 1/sqrt(n_in)), from ``generator``."""
    layer = nn.Linear(n_in, n_out)
    bound = 1.0 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


# ---------------------------------------------------------------------------------------------------
# Models with several outputs


class MultiHeadMLP(nn.Module):
    """An MLP with extra classifier heads after chosen hidden layers (deep supervision).

    Lee et al., "Deeply-Supervised Nets", 2015; Szegedy et al., "Going Deeper with Convolutions",
    2015 (Inception's auxiliary classifiers, their losses weighted 0.3 in training and dropped at test).
    The trunk is :func:`sigprop.models.mlp`; head ``l`` is a linear classifier on hidden layer ``l``'s
    activation ``h_l``. Training minimizes ``L(main) + sum_l w_l L(head_l)``, so head ``l`` sends a
    gradient into layers ``1..l`` that does not pass through the layers above ``l``.

    Args:
        in_features, out_features, depth, width, activation, norm, init: as in :func:`sigprop.models.mlp`.
        heads_at: hidden layers (1 .. depth - 1) that get a head; the main output sits after ``depth``.
        generator: random source for the trunk's initialization and the heads.
        device: where to create the model.

    Shape:
        input (N, in_features); output a list ``[main, head at heads_at[0], ...]``, each (N, out_features).

    Example:
        >>> net = MultiHeadMLP(64, 10, depth=6, heads_at=(2, 4))
        >>> [tuple(o.shape) for o in net(torch.zeros(3, 64))]
        [(3, 10), (3, 10), (3, 10)]
    """

    def __init__(self, in_features: int = 64, out_features: int = 10, depth: int = 6, width: int = 64,
                 activation: str = "relu", norm=None, heads_at: Sequence[int] = (), init="default",
                 generator: torch.Generator | None = None, device=None) -> None:
        super().__init__()
        check_int("depth", depth, minimum=1)
        if isinstance(heads_at, (int, str)) or not isinstance(heads_at, Sequence):
            raise TypeError(f"heads_at must be a sequence of layer numbers, got {type(heads_at).__name__}")
        for layer in heads_at:
            check_int("each entry of heads_at", layer, minimum=1)
            if layer >= depth:
                raise ValueError(f"heads_at entries must be hidden layers 1 .. {depth - 1} (the main output "
                                 f"follows layer {depth}), got {layer}")
        if len(set(heads_at)) != len(heads_at):
            raise ValueError(f"heads_at has repeated layers: {tuple(heads_at)}")
        self.heads_at = tuple(heads_at)
        self.trunk = mlp(in_features, out_features, depth=depth, width=width, activation=activation,
                         norm=norm, init=init, generator=generator)
        self.heads = nn.ModuleDict({f"head{k}": _linear(width, out_features, generator) for k in self.heads_at})
        if device is not None:
            self.to(device)

    def hidden(self, x: Tensor) -> list[Tensor]:
        """Every hidden layer's activation ``[h_1, ..., h_depth]``, each (N, width)."""
        hs = []
        for name, module in self.trunk.named_children():
            if name == "out":
                break
            x = module(x)
            if name.startswith("act"):
                hs.append(x)
        return hs

    def forward(self, x: Tensor) -> list[Tensor]:
        hs = self.hidden(x)
        return [self.trunk.out(hs[-1])] + [self.heads[f"head{k}"](hs[k - 1]) for k in self.heads_at]


class MainAuxNet(nn.Module):
    """Two inputs, two outputs: a main output and an auxiliary one, both predicting the target.

    The Keras functional-API guide's example, in PyTorch: the main input passes through an
    ``encoder`` (in Keras an embedding and an LSTM); an auxiliary output reads the encoder's features
    directly; the auxiliary input then joins them (concatenation) and a ``head`` of dense layers makes
    the main output. The guide weights the auxiliary loss 0.2: ``L = L_main + 0.2 L_aux``. The encoder
    is the shared part: both losses reach it, only the main loss reaches the head.

    Args:
        main_features: size of the main input.
        aux_features: size of the auxiliary input (joins after the encoder).
        out_features: outputs of each of the two outputs (classes).
        encoder_depth: hidden layers of the encoder.
        head_depth: hidden layers between the join and the main output.
        width: units per hidden layer.
        activation: a name from :data:`sigprop.models.ACTIVATIONS`.
        init: ``"default"`` (PyTorch's distribution) or a scheme of :func:`sigprop.init.initialize`.
        generator: random source for the initialization.
        device: where to create the model.

    Shape:
        inputs (N, main_features) and (N, aux_features); outputs ``(main, aux)``, each (N, out_features).

    Example:
        >>> net = MainAuxNet(64, 16, 10)
        >>> [tuple(o.shape) for o in net(torch.zeros(2, 64), torch.zeros(2, 16))]
        [(2, 10), (2, 10)]
    """

    def __init__(self, main_features: int, aux_features: int, out_features: int, encoder_depth: int = 3,
                 head_depth: int = 2, width: int = 64, activation: str = "relu", init: str = "default",
                 generator: torch.Generator | None = None, device=None) -> None:
        super().__init__()
        for name, value in (("main_features", main_features), ("aux_features", aux_features),
                            ("out_features", out_features), ("encoder_depth", encoder_depth),
                            ("width", width)):
            check_int(name, value, minimum=1)
        check_int("head_depth", head_depth, minimum=0)
        make_activation(activation)
        enc, n = [], main_features
        for _ in range(encoder_depth):
            enc += [_linear(n, width, generator), make_activation(activation)]
            n = width
        self.encoder = nn.Sequential(*enc)
        self.aux_out = _linear(width, out_features, generator)
        head, n = [], width + aux_features
        for _ in range(head_depth):
            head += [_linear(n, width, generator), make_activation(activation)]
            n = width
        head.append(_linear(n, out_features, generator))
        self.head = nn.Sequential(*head)
        if init != "default":
            from sigprop.init import initialize  # the initialization chapter's schemes

            initialize(self, init, nonlinearity=activation, generator=generator)
        if device is not None:
            self.to(device)

    @property
    def shared_layer(self) -> nn.Linear:
        """The last layer both losses reach: the encoder's last linear layer (GradNorm's ``W``)."""
        return [m for m in self.encoder if isinstance(m, nn.Linear)][-1]

    def forward(self, x_main: Tensor, x_aux: Tensor) -> tuple[Tensor, Tensor]:
        features = self.encoder(x_main)  # (N, width)
        joined = torch.cat([features, x_aux], dim=1)  # (N, width + aux_features)
        return self.head(joined), self.aux_out(features)


# ---------------------------------------------------------------------------------------------------
# Loss weightings


def _check_losses(losses, num_tasks: int) -> Tensor:
    if not isinstance(losses, Tensor):
        raise TypeError(f"losses must be a tensor of shape ({num_tasks},), got {type(losses).__name__}")
    if losses.shape != (num_tasks,):
        raise ValueError(f"losses must have shape ({num_tasks},), one per task, got {tuple(losses.shape)}")
    return losses


class FixedWeighting(nn.Module):
    """A fixed weighted sum of the task losses, ``L = sum_i w_i L_i``.

    With ``aux_decay_steps = K`` the weights of tasks ``1, 2, ...`` (the auxiliary ones; task 0 is
    the main task) fall linearly to zero over the first ``K`` training calls, as deep supervision
    retires its companion losses (Lee et al. 2015). Only calls in training mode with gradients
    enabled advance the schedule.

    Args:
        weights: one non-negative weight per task.
        aux_decay_steps: ``None`` (constant weights) or the number of steps to decay the auxiliary weights.

    Shape:
        losses (T,), output a scalar.

    Example:
        >>> FixedWeighting([1.0, 0.2])(torch.tensor([2.0, 5.0])).item()
        3.0
    """

    def __init__(self, weights: Sequence[float], aux_decay_steps: int | None = None) -> None:
        super().__init__()
        if isinstance(weights, (int, float)) or len(weights) == 0:
            raise TypeError(f"weights must be a non-empty sequence of numbers, got {weights!r}")
        for w in weights:
            check_number("each weight", w, minimum=0.0)
        if aux_decay_steps is not None:
            check_int("aux_decay_steps", aux_decay_steps, minimum=1)
        self.register_buffer("base", torch.tensor([float(w) for w in weights]))
        self.aux_decay_steps = aux_decay_steps
        self.step_count = 0

    @property
    def num_tasks(self) -> int:
        return len(self.base)

    @property
    def weights(self) -> Tensor:
        """The weights in force now, (T,)."""
        w = self.base.clone()
        if self.aux_decay_steps is not None:
            w[1:] *= max(0.0, 1.0 - self.step_count / self.aux_decay_steps)
        return w

    def forward(self, losses: Tensor, shared: Tensor | None = None) -> Tensor:
        losses = _check_losses(losses, self.num_tasks)
        total = (self.weights.to(losses) * losses).sum()
        if self.training and torch.is_grad_enabled():
            self.step_count += 1
        return total


class UncertaintyWeighting(nn.Module):
    """Weights learned as task uncertainties (Kendall, Gal & Cipolla, "Multi-Task Learning Using
    Uncertainty to Weigh Losses for Scene Geometry and Semantics", 2018).

        L = sum_i 1/2 exp(-s_i) L_i + 1/2 s_i,   s_i = log sigma_i^2 learned with the network.

    For a Gaussian likelihood with variance sigma_i^2 this is the negative log-likelihood up to a
    constant; holding ``L_i`` fixed, ``dL/ds_i = 0`` at ``s_i = log L_i``, so a task's effective weight
    ``1/2 exp(-s_i)`` settles at ``1 / (2 L_i)``: it grows as the task's loss falls. (Kendall et al.
    drop the 1/2 before a classification loss; one formula is used here for every task.)

    Args:
        num_tasks: T.
        init_log_var: the starting value of every ``s_i`` (0: weights 1/2).

    Shape:
        losses (T,), output a scalar.

    Example:
        >>> UncertaintyWeighting(2)(torch.tensor([1.0, 3.0])).item()
        2.0
    """

    def __init__(self, num_tasks: int, init_log_var: float = 0.0) -> None:
        super().__init__()
        check_int("num_tasks", num_tasks, minimum=1)
        check_number("init_log_var", init_log_var)
        self.log_var = nn.Parameter(torch.full((num_tasks,), float(init_log_var)))

    @property
    def num_tasks(self) -> int:
        return len(self.log_var)

    @property
    def weights(self) -> Tensor:
        """The effective weights ``1/2 exp(-s_i)``, (T,)."""
        return 0.5 * torch.exp(-self.log_var.detach())

    def forward(self, losses: Tensor, shared: Tensor | None = None) -> Tensor:
        losses = _check_losses(losses, self.num_tasks)
        s = self.log_var.to(losses.device)
        return (0.5 * torch.exp(-s) * losses + 0.5 * s).sum()


class GradNorm(nn.Module):
    """Weights moved so each task's gradient norm tracks its relative training rate (Chen et al.,
    "GradNorm: Gradient Normalization for Adaptive Loss Balancing in Deep Multitask Networks", 2018).

    On the last shared layer's weight ``W``, with ``G_i = ||grad_W (w_i L_i)||``, the mean ``G``, the
    loss ratio ``r_i = (L_i(t)/L_i(0)) / mean_j (L_j(t)/L_j(0))`` and the asymmetry ``alpha``:

        L_grad = sum_i | G_i - G * r_i^alpha |      (G * r_i^alpha held constant)

    Each call returns ``sum_i w_i L_i`` with the current weights (for the network's backward) and,
    in training mode, takes one Adam step of ``w`` on ``L_grad``, then renormalizes ``sum_i w_i = T``.
    A task that trains slowly (large ``r_i``) or has a small gradient gets more weight. Weights are
    kept above ``min_weight`` before renormalizing (a safeguard, not in the paper).

    Args:
        num_tasks: T (at least 2).
        alpha: asymmetry; 0 equalizes gradient norms, larger values pull harder on slow tasks.
        lr: Adam learning rate of the weights.
        min_weight: floor on a weight before renormalization.

    Shape:
        losses (T,) with a graph to ``shared``; output a scalar.

    Example:
        >>> shared = torch.ones(3, requires_grad=True)
        >>> gn = GradNorm(2)
        >>> total = gn(torch.stack([(shared ** 2).sum(), 10 * shared.sum()]), shared)
        >>> round(gn.weights.sum().item(), 6)
        2.0
    """

    def __init__(self, num_tasks: int, alpha: float = 1.5, lr: float = 0.025, min_weight: float = 1e-3) -> None:
        super().__init__()
        check_int("num_tasks", num_tasks, minimum=2)
        self.alpha = check_number("alpha", alpha, minimum=0.0)
        self.lr = check_number("lr", lr, positive=True)
        self.min_weight = check_number("min_weight", min_weight, positive=True)
        self._num_tasks = num_tasks
        # A plain leaf tensor, not an nn.Parameter: the model's optimizer must not see it.
        self._w = torch.ones(num_tasks, requires_grad=True)
        self._optimizer = torch.optim.Adam([self._w], lr=self.lr)
        self.initial_losses: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return self._num_tasks

    @property
    def weights(self) -> Tensor:
        """The current weights, (T,), positive and summing to T."""
        return self._w.detach().clone()

    def forward(self, losses: Tensor, shared: Tensor | None = None) -> Tensor:
        losses = _check_losses(losses, self.num_tasks)
        if not isinstance(shared, Tensor) or not shared.requires_grad:
            raise TypeError("GradNorm needs shared=, the last shared layer's weight (a tensor that requires grad)")
        w = self._w.detach().clone().to(losses.device)  # a copy: the update below is in place
        total = (w * losses).sum()
        if not (self.training and torch.is_grad_enabled()):
            return total
        # ||grad_W L_i||, one backward per task through the shared layer only; G_i = w_i * g_i.
        g = torch.stack([torch.autograd.grad(losses[i], shared, retain_graph=True)[0].norm()
                         for i in range(self.num_tasks)]).detach().cpu()
        current = losses.detach().cpu()
        if self.initial_losses is None:
            self.initial_losses = current.clone()
        ratio = current / self.initial_losses
        r = ratio / ratio.mean()
        with torch.enable_grad():
            grad_norms = self._w * g  # (T,)
            target = (grad_norms.mean() * r ** self.alpha).detach()
            l_grad = (grad_norms - target).abs().sum()
            self._optimizer.zero_grad(set_to_none=True)
            l_grad.backward()
            self._optimizer.step()
        with torch.no_grad():
            self._w.clamp_(min=self.min_weight)
            self._w.mul_(self.num_tasks / self._w.sum())
        return total


# ---------------------------------------------------------------------------------------------------
# Training a model with several outputs


@dataclass
class MultiTaskHistory:
    """What one multi-task run recorded.

    Attributes:
        loss: the weighted total of every step.
        task_loss: every step's per-task losses, ``[[L_0, L_1, ...], ...]``.
        weights: every step's weights (before the step), ``[[w_0, w_1, ...], ...]``.
        evals: what ``evaluate(model)`` returned after each epoch.
        diverged: the run stopped on a non-finite loss; ``message`` says where.
    """

    label: str = ""
    loss: list[float] = field(default_factory=list)
    task_loss: list[list[float]] = field(default_factory=list)
    weights: list[list[float]] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    diverged: bool = False
    message: str = ""

    @property
    def steps(self) -> int:
        return len(self.loss)

    def __repr__(self) -> str:
        state = self.message if self.diverged else f"{self.steps} steps"
        return f"MultiTaskHistory({self.label!r}: {state})"


def fit_multitask(
    model: nn.Module,
    inputs: Tensor | Sequence[Tensor],
    targets: Sequence[Tensor],
    loss_fns: Callable | Sequence[Callable],
    weighting: nn.Module | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.1,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    shared: Tensor | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    label: str = "",
) -> MultiTaskHistory:
    """Train a model whose outputs each have a target and a loss, combined by ``weighting``.

    Each step: a mini-batch (a fresh permutation per epoch from ``generator``), ``outputs =
    model(*inputs)``, ``L_i = loss_fns[i](outputs[i], targets[i])``, ``total = weighting(L, shared)``,
    backward and one optimizer step over the model's and the weighting's parameters. After each
    epoch ``evaluate(model)`` runs in eval mode without gradients and its dict is recorded.

    Args:
        model: returns one output per task (a list or tuple), in the order of ``targets``.
        inputs: one tensor, or a tuple of tensors passed as separate arguments; samples along dim 0.
        targets: one tensor per task, samples along dim 0.
        loss_fns: one loss per task, or one for all.
        weighting: :class:`FixedWeighting`, :class:`UncertaintyWeighting`, :class:`GradNorm` or any
            module ``(losses, shared) -> total``; default equal weights.
        epochs, batch_size, lr, momentum: as in :func:`sigprop.train.fit`.
        optimizer: ``"sgd"`` or ``"adam"``.
        shared: the last shared layer's weight, for :class:`GradNorm`.
        evaluate: called after each epoch.
        generator: random source of the mini-batch order.
        progress: show a progress bar.
        label: a name for the run.

    Returns:
        A :class:`MultiTaskHistory`; a non-finite loss stops the run and says where.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    inputs = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    targets = tuple(targets) if not isinstance(targets, Tensor) else None
    if targets is None or len(targets) == 0:
        raise TypeError("targets must be a sequence of tensors, one per task")
    n = len(inputs[0])
    if any(len(t) != n for t in inputs + targets):
        raise ValueError(f"every input and target needs the same number of samples, got "
                         f"{[len(t) for t in inputs]} inputs and {[len(t) for t in targets]} targets")
    num_tasks = len(targets)
    loss_fns = [loss_fns] * num_tasks if callable(loss_fns) else list(loss_fns)
    if len(loss_fns) != num_tasks:
        raise ValueError(f"{len(loss_fns)} loss functions for {num_tasks} targets")
    weighting = FixedWeighting([1.0] * num_tasks) if weighting is None else weighting
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_number("lr", lr, positive=True)
    params = list(model.parameters()) + list(weighting.parameters())
    check_choice("optimizer", optimizer, ("sgd", "adam"))
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    else:
        opt = torch.optim.Adam(params, lr=lr)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    history = MultiTaskHistory(label=label)
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc=label or "training", leave=False,
               **({} if progress else {"disable": True}))
    device = inputs[0].device
    try:
        for epoch in range(epochs):
            model.train()
            weighting.train()
            order = torch.randperm(n, generator=generator).to(device)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                outputs = model(*(x[idx] for x in inputs))
                if len(outputs) != num_tasks:
                    raise ValueError(f"the model returned {len(outputs)} outputs for {num_tasks} targets")
                losses = torch.stack([fn(out, t[idx]) for fn, out, t in zip(loss_fns, outputs, targets,
                                                                                strict=True)])
                weights = weighting.weights.tolist()
                total = weighting(losses, shared)
                value = total.item()
                if not math.isfinite(value):
                    history.diverged = True
                    history.message = (f"diverged: loss became {value} at step {history.steps} "
                                       f"(epoch {epoch + 1}); the run was stopped there")
                    return history
                opt.zero_grad(set_to_none=True)
                total.backward()
                opt.step()
                history.loss.append(value)
                history.task_loss.append(losses.detach().tolist())
                history.weights.append(weights)
                bar.update(1)
            if evaluate is not None:
                model.eval()
                with torch.no_grad():
                    history.evals.append(dict(evaluate(model)))
    finally:
        bar.close()
        model.train()
    return history


# ---------------------------------------------------------------------------------------------------
# Online deep learning: hedge backpropagation


class HedgeMLP(nn.Module):
    """An MLP with a classifier after every hidden layer, combined by hedging (Sahoo, Pham, Lu & Hoi,
    "Online Deep Learning: Learning Deep Neural Networks on the Fly", 2018).

    The prediction is the weighted vote ``F(x) = sum_l alpha_l softmax(f_l(x))`` of the heads
    ``f_l``. After each example, with head losses ``L_l`` (cross-entropy):

    - every parameter takes an SGD step on ``sum_l alpha_l L_l`` (a hidden layer hears every head
      above it, each in proportion to its ``alpha``);
    - ``alpha_l <- alpha_l * beta ** L_l`` (the hedge algorithm; discount ``beta``), then
      ``alpha_l <- max(alpha_l, s / L)`` (the smoothing floor that keeps deep heads learning) and
      ``alpha <- alpha / sum(alpha)``.

    Starting from ``alpha = 1/L`` the floor holds after renormalizing, since flooring never raises the
    sum above 1. The effective depth moves to wherever the heads predict best, shallow at first.

    Args:
        in_features, num_classes: input size and classes.
        depth: L, hidden layers and heads.
        width: units per hidden layer.
        activation: a name from :data:`sigprop.models.ACTIVATIONS`.
        beta: the discount in (0, 1).
        smoothing: s in [0, 1]; each alpha stays at least s / L.
        lr: SGD learning rate.
        generator: random source of the initialization.
        device: where to create the model.

    Shape:
        input (N, in_features); ``forward`` gives every head's logits (L, N, num_classes).

    Example:
        >>> net = HedgeMLP(4, 3, depth=3, generator=torch.Generator().manual_seed(0))
        >>> mistake, losses = net.learn_one(torch.zeros(4), torch.tensor(1))
        >>> round(net.alpha.sum().item(), 6), tuple(losses.shape)
        (1.0, (3,))
    """

    def __init__(self, in_features: int, num_classes: int, depth: int = 8, width: int = 64,
                 activation: str = "relu", beta: float = 0.99, smoothing: float = 0.2, lr: float = 0.01,
                 generator: torch.Generator | None = None, device=None) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("num_classes", num_classes), ("depth", depth),
                            ("width", width)):
            check_int(name, value, minimum=1)
        self.beta = check_number("beta", beta, positive=True, maximum=1.0, below_maximum=True)
        self.smoothing = check_number("smoothing", smoothing, minimum=0.0, maximum=1.0)
        self.lr = check_number("lr", lr, positive=True)
        self.hidden_layers = nn.ModuleList(
            [_linear(in_features if k == 0 else width, width, generator) for k in range(depth)])
        self.heads = nn.ModuleList([_linear(width, num_classes, generator) for _ in range(depth)])
        self.act = make_activation(activation)
        self.register_buffer("alpha", torch.full((depth,), 1.0 / depth))
        if device is not None:
            self.to(device)

    @property
    def depth(self) -> int:
        return len(self.hidden_layers)

    def forward(self, x: Tensor) -> Tensor:
        logits, h = [], x
        for layer, head in zip(self.hidden_layers, self.heads, strict=True):
            h = self.act(layer(h))
            logits.append(head(h))
        return torch.stack(logits)  # (L, N, C)

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """The alpha-weighted vote of the heads' class probabilities, (N, C)."""
        return torch.einsum("l,lnc->nc", self.alpha, self(x).softmax(dim=-1))

    def learn_one(self, x: Tensor, y: Tensor) -> tuple[bool, Tensor]:
        """Predict one example, then learn from it; returns (the prediction was wrong, head losses (L,))."""
        x, y = x.reshape(1, -1), y.reshape(1)  # (1, in_features), (1,)
        logits = self(x)  # (L, 1, C)
        with torch.no_grad():
            vote = torch.einsum("l,lnc->nc", self.alpha, logits.softmax(dim=-1))
            mistake = bool(vote.argmax(dim=1) != y)
        losses = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(self.depth),
                                             reduction="none")  # (L,)
        self.zero_grad(set_to_none=True)
        (self.alpha * losses).sum().backward()
        with torch.no_grad():
            for p in self.parameters():
                p -= self.lr * p.grad
            self.alpha.mul_(self.beta ** losses.detach())
            self.alpha.clamp_(min=self.smoothing / self.depth)
            self.alpha.div_(self.alpha.sum())
        return mistake, losses.detach()


class OnlineSGD:
    """A plain network trained online like :class:`HedgeMLP`: predict one example, then one SGD step.

    Example:
        >>> learner = OnlineSGD(nn.Linear(4, 3), lr=0.1)
        >>> mistake, loss = learner.learn_one(torch.zeros(4), torch.tensor(0))
    """

    def __init__(self, model: nn.Module, lr: float = 0.01) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model, self.lr = model, check_number("lr", lr, positive=True)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=self.lr)

    def learn_one(self, x: Tensor, y: Tensor) -> tuple[bool, Tensor]:
        logits = self.model(x.reshape(1, -1))  # (1, C)
        mistake = bool(logits.argmax(dim=1) != y.reshape(1))
        loss = nn.functional.cross_entropy(logits, y.reshape(1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return mistake, loss.detach()


@dataclass
class OnlineRecord:
    """One online pass: which predictions were wrong and (for hedging) the heads' weights after each example.

    Attributes:
        mistakes: (N,) bool, the prediction for example t was made before learning from it.
        alpha: (N, L) for a :class:`HedgeMLP`, else ``None``.
        diverged: a non-finite loss stopped the pass; ``message`` says where.
    """

    label: str
    mistakes: Tensor
    alpha: Tensor | None = None
    diverged: bool = False
    message: str = ""

    @property
    def cumulative_error(self) -> Tensor:
        """The error rate over the first t examples, for t = 1 .. N, (N,)."""
        counts = torch.arange(1, len(self.mistakes) + 1, dtype=torch.float64)
        return self.mistakes.double().cumsum(0) / counts


def run_online(learner, x: Tensor, y: Tensor, progress: bool = True, label: str = "") -> OnlineRecord:
    """One pass over a stream, in order: for each example predict, record the mistake, then learn.

    Args:
        learner: a :class:`HedgeMLP` or :class:`OnlineSGD` (anything with ``learn_one(x, y)``).
        x: the stream's inputs (N, in_features), in arrival order.
        y: its labels (N,).
        progress: show a progress bar.
        label: a name for the pass.

    Returns:
        An :class:`OnlineRecord`.
    """
    if not hasattr(learner, "learn_one"):
        raise TypeError(f"learner must have a learn_one(x, y) method, got {type(learner).__name__}")
    if not isinstance(x, Tensor) or not isinstance(y, Tensor) or len(x) != len(y) or len(x) == 0:
        raise ValueError("x and y must be non-empty tensors with the same number of samples")
    hedge = isinstance(learner, HedgeMLP)
    mistakes, alphas = [], []
    message = ""
    for t in tqdm(range(len(x)), desc=label or "online", leave=False, **({} if progress else {"disable": True})):
        mistake, losses = learner.learn_one(x[t], y[t])
        if not torch.isfinite(losses).all():
            message = f"diverged: a non-finite loss at example {t}; the pass was stopped there"
            break
        mistakes.append(mistake)
        if hedge:
            alphas.append(learner.alpha.detach().cpu().clone())
    return OnlineRecord(label, torch.tensor(mistakes, dtype=torch.bool),
                        torch.stack(alphas) if alphas else None, diverged=bool(message), message=message)
