"""Shared test fixtures and helpers: the devices to parametrize over, seeded generators, one thread."""

import socket

import pytest
import torch

from sigprop.runtime import available_devices

DEVICES = available_devices()
# float64 from-scratch-versus-PyTorch comparisons need a device that has float64 (MPS does not).
FLOAT64_DEVICES = [d for d in DEVICES if d != "mps"]


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``: what the library's samplers take as ``generator=``."""
    return torch.Generator().manual_seed(seed)


def reachable(host: str) -> bool:
    """Whether ``host`` answers on port 443: the tests that need a package index skip without one."""
    try:
        socket.create_connection((host, 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny models: one thread is an order of magnitude faster than two when the cores are shared.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
