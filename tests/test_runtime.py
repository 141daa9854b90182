"""Tests for sigprop.runtime: device choice, seeding and the experiment-size knob, including bad input."""

import random

import numpy as np
import pytest
import torch

from sigprop.runtime import (
    SCALES,
    available_devices,
    by_scale,
    claim_checks_enabled,
    describe_device,
    experiment_scale,
    get_device,
    seed_everything,
)

CUDA = torch.cuda.is_available()
MPS = torch.backends.mps.is_available()


# --- get_device ---------------------------------------------------------------------------------------


def test_get_device_without_preference_picks_the_best_available(monkeypatch):
    monkeypatch.delenv("SIGPROP_DEVICE", raising=False)
    expected = "cuda" if CUDA else "mps" if MPS else "cpu"
    assert get_device().type == expected


def test_get_device_honours_sigprop_device(monkeypatch):
    monkeypatch.setenv("SIGPROP_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")


def test_get_device_treats_an_empty_sigprop_device_as_unset(monkeypatch):
    monkeypatch.setenv("SIGPROP_DEVICE", "")
    expected = "cuda" if CUDA else "mps" if MPS else "cpu"
    assert get_device().type == expected


def test_get_device_explicit_preference_beats_the_environment(monkeypatch):
    monkeypatch.setenv("SIGPROP_DEVICE", "not-a-device")
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("device", available_devices())
def test_get_device_accepts_every_available_device(device):
    assert get_device(device).type == device


def test_get_device_rejects_an_unknown_name_from_the_environment(monkeypatch):
    monkeypatch.setenv("SIGPROP_DEVICE", "tpu7")
    with pytest.raises(ValueError, match=r"expected a device such as 'cpu', 'cuda' or 'mps', got 'tpu7'"):
        get_device()


@pytest.mark.skipif(CUDA, reason="CUDA is available here, so asking for it is not an error")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_get_device_rejects_unavailable_cuda(monkeypatch, name):
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_device(name)
    monkeypatch.setenv("SIGPROP_DEVICE", name)
    with pytest.raises(ValueError, match="CUDA is not available"):
        get_device()


@pytest.mark.skipif(MPS, reason="Apple MPS is available here, so asking for it is not an error")
def test_get_device_rejects_unavailable_mps():
    with pytest.raises(ValueError, match="Apple MPS is not available"):
        get_device("mps")


def test_available_devices_lists_cpu_first_and_only_usable_devices():
    devices = available_devices()
    assert devices[0] == "cpu"
    assert ("cuda" in devices) == CUDA
    assert ("mps" in devices) == MPS
    assert len(set(devices)) == len(devices)


# --- describe_device ----------------------------------------------------------------------------------


@pytest.mark.parametrize("device", available_devices())
def test_describe_device_is_one_line_naming_device_torch_and_scale(monkeypatch, device):
    monkeypatch.delenv("SIGPROP_SCALE", raising=False)
    line = describe_device(device)
    assert "\n" not in line
    assert line.startswith(device)
    assert f"torch {torch.__version__}" in line
    assert line.endswith("scale=small")


def test_describe_device_cpu_reports_threads():
    assert "threads" in describe_device("cpu")


def test_describe_device_follows_sigprop_device(monkeypatch):
    monkeypatch.setenv("SIGPROP_DEVICE", "cpu")
    assert describe_device().startswith("cpu")


# --- seed_everything ----------------------------------------------------------------------------------


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_seed_everything_makes_python_numpy_and_torch_repeatable():
    seed_everything(0)
    first = _draws()
    seed_everything(0)
    second = _draws()
    assert first == second
    seed_everything(1)
    assert _draws() != first


def test_seed_everything_returns_a_cpu_generator_seeded_with_the_seed():
    g = seed_everything(7)
    assert isinstance(g, torch.Generator)
    assert g.device.type == "cpu"
    assert g.initial_seed() == 7
    expected = torch.randn(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.randn(5, generator=g), expected)


def test_seed_everything_generator_is_independent_of_the_global_stream():
    g1 = seed_everything(3)
    torch.rand(100)  # consume the global stream: the returned generator must not notice
    a = torch.rand(4, generator=g1)
    g2 = seed_everything(3)
    b = torch.rand(4, generator=g2)
    assert torch.equal(a, b)


@pytest.mark.parametrize("seed", [np.int64(5), 2**40])
def test_seed_everything_accepts_numpy_ints_and_large_seeds(seed):
    g = seed_everything(seed)
    assert g.initial_seed() == int(seed)


# --- experiment_scale and by_scale --------------------------------------------------------------------


def test_experiment_scale_defaults_to_small(monkeypatch):
    monkeypatch.delenv("SIGPROP_SCALE", raising=False)
    assert experiment_scale() == "small"
    assert by_scale(small=10, large=100) == 10


@pytest.mark.parametrize("value, expected", [("large", "large"), (" LARGE ", "large"), ("small", "small"),
                                             ("", "small"), ("  ", "small")])
def test_experiment_scale_reads_sigprop_scale(monkeypatch, value, expected):
    monkeypatch.setenv("SIGPROP_SCALE", value)
    assert experiment_scale() == expected
    assert experiment_scale() in SCALES


def test_by_scale_returns_large_when_scale_is_large(monkeypatch):
    monkeypatch.setenv("SIGPROP_SCALE", "large")
    assert by_scale(small=10, large=100) == 100
    assert by_scale(small=(1, 2), large=(3, 4)) == (3, 4)




@pytest.mark.parametrize(("check", "scale", "enabled"), [
    ("1", "small", True), ("1", None, True), ("1", "large", False), ("0", "small", False), (None, "small", False),
    ("", None, False),
])
def test_claim_checks_run_only_where_the_books_numbers_are_produced(monkeypatch, check, scale, enabled):
    for name, value in (("SIGPROP_CHECK_CLAIMS", check), ("SIGPROP_SCALE", scale)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert claim_checks_enabled() is enabled
