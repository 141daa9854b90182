"""Speed of the from-scratch normalization layers against torch.nn (``make bench``; not part of ``make test``).

One forward and backward pass of each layer and of its ``torch.nn`` twin on the same input, timed on
CPU (and on CUDA where there is one); the ratio is printed with the target (at most 1.5x PyTorch on
CPU, 2x eager PyTorch on CUDA) met or missed. The test fails only above 6x, a regression.

Status on the 2-core build machine (best times of six runs, one thread): batch norm of images meets
the target (about 0.6-0.9x: PyTorch's own CPU kernel for statistics over (N, H, W) is slow); batch
norm of features (about 1.7x), layer norm (about 2.7x) and group norm (about 2.4x) miss it, for two
measured reasons. (1) A fixed cost per call: on a tiny input, (4, 8), one forward and backward pass
of our BatchNorm1d or LayerNorm costs about 300-360 us there against 100-130 us for torch.nn (some
30 ATen calls of a few microseconds each from Python, and a Python autograd.Function), while
torch.nn's whole pass at the benchmark's (256, 512) takes only 220-300 us. (2) Memory traffic:
group norm's composed operations read or write a tensor of the input's size about 20 times per
forward and backward pass (8 forward, 12 backward) where PyTorch's fused kernels need about 8, and
its 2 MB input does not fit in the 512 KB L2 cache, so the ratio follows the traffic. Neither goes
away without fused kernels, which the from-scratch layers do not use.
"""

import time

import pytest
import torch
from torch import nn

from sigprop import normalization as sn
from sigprop.runtime import available_devices

CASES = {
    "BatchNorm1d (256, 512)": (lambda: sn.BatchNorm1d(512), lambda: nn.BatchNorm1d(512), (256, 512)),
    "BatchNorm2d (32, 64, 16, 16)": (lambda: sn.BatchNorm2d(64), lambda: nn.BatchNorm2d(64), (32, 64, 16, 16)),
    "LayerNorm (256, 512)": (lambda: sn.LayerNorm(512), lambda: nn.LayerNorm(512), (256, 512)),
    "GroupNorm(8) (32, 64, 16, 16)": (lambda: sn.GroupNorm(8, 64), lambda: nn.GroupNorm(8, 64), (32, 64, 16, 16)),
}
TARGET = {"cpu": 1.5, "cuda": 2.0}  # what the issue asks for; printed as met or missed
CEILING = 6.0  # fails: a regression such as torch.var_mean's slow CPU path (~10x) coming back


def _seconds_per_pass(layer: nn.Module, x: torch.Tensor, repeats: int = 7, number: int = 20) -> float:
    """Best over ``repeats`` of the mean time of ``number`` forward+backward passes."""
    grad = torch.randn_like(x)

    def run():
        for _ in range(number):
            x.grad = None
            layer(x).backward(grad)
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up: allocator, kernels, autograd graph caches
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - start) / number)
    return best


@pytest.mark.perf
@pytest.mark.parametrize("device", [d for d in available_devices() if d in TARGET])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_backward_speed_against_torch(case, device):
    make_ours, make_theirs, shape = CASES[case]
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_()
    ours, theirs = make_ours().to(device), make_theirs().to(device)
    # Alternate the two so that a load change on a shared machine hits both alike; keep the best of each.
    t_ours, t_theirs = float("inf"), float("inf")
    for _ in range(3):
        t_ours = min(t_ours, _seconds_per_pass(ours, x))
        t_theirs = min(t_theirs, _seconds_per_pass(theirs, x))
    ratio = t_ours / t_theirs
    verdict = "met" if ratio <= TARGET[device] else "MISSED"
    print(f"\n{case} on {device}: sigprop {t_ours * 1e3:.3f} ms, torch.nn {t_theirs * 1e3:.3f} ms, "
          f"ratio {ratio:.2f}x (target <= {TARGET[device]}x: {verdict})")
    assert ratio <= CEILING, f"{case} on {device} is {ratio:.2f}x torch.nn, above {CEILING}x"
