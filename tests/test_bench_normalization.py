"""Speed of the from-scratch normalization layers against torch.nn (``make bench``; not part of ``make test``).

One forward and backward pass of each layer and of its ``torch.nn`` twin on the same input, timed on
CPU (and on CUDA where there is one); the ratio is printed with the target (at most 1.5x PyTorch on
CPU, 2x eager PyTorch on CUDA) met or missed. The test fails only above 6x, a regression. Batch norm
of images meets the target; batch norm of features, layer and group norm miss it (2-4x): PyTorch
fuses each into one or two native kernels per pass, while the Python layers here launch several
elementwise and reduction kernels (and pay Python's per-call overhead) for the same arithmetic.
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
