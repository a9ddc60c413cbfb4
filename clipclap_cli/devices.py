"""Checking a device before any work, so that a missing GPU is one line, not a failure midway."""

from __future__ import annotations

from clipclap_cli.errors import DeviceError


def check_device(device: str, given: str | None = None) -> None:
    """Refuse `device` unless torch can run on it here; `given` is how the user named it
    (default `--device DEVICE`), for the message."""
    import torch

    given = given or f"--device {device}"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"{given}: not a device (cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{given}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise DeviceError(f"{given}: this machine has {torch.cuda.device_count()} CUDA device(s)")
