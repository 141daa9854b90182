"""Shared test fixtures: the devices to parametrize over and a quiet, deterministic torch."""

import pytest
import torch

from sigprop.runtime import available_devices

DEVICES = available_devices()
# float64 from-scratch-versus-PyTorch comparisons need a device that has float64 (MPS does not).
FLOAT64_DEVICES = [d for d in DEVICES if d != "mps"]


@pytest.fixture(autouse=True)
def _small_thread_pool():
    # Tiny models: one thread is faster than two, and pytest may run beside other work.
    torch.set_num_threads(1)
    yield
