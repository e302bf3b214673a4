"""Energy and cost of training runs, estimated from time on a device at a stated power draw.

There is no power meter to read on a CPU (NVML only measures NVIDIA GPUs), so every device
kind is given a typical draw while busy and the energy is that wattage times the seconds it
ran: a desktop CPU package at 65 W, a data-centre GPU at 300 W, an Apple GPU at 30 W. These
are estimates for comparing runs, not measurements. Cost is the device-hours times a price
per device-hour, which the caller supplies (0 means no price is known).
"""

from __future__ import annotations

DEVICE_WATTS = {"cpu": 65.0, "cuda": 300.0, "mps": 30.0}


def device_watts(device: str) -> float | None:
    """The assumed draw of a device such as "cpu" or "cuda:0"; None for an unknown kind."""
    return DEVICE_WATTS.get(device.split(":")[0].lower())


def energy_wh(device: str, seconds: float) -> float | None:
    """Estimated watt-hours for `seconds` busy on `device`; None for an unknown kind."""
    watts = device_watts(device)
    return None if watts is None else watts * seconds / 3600
