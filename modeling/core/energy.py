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


class EnergyMeter:
    """Energy of one run: NVML's energy counter on an NVIDIA GPU, else watts x seconds.

    On CUDA with the ``pynvml`` package (``nvidia-ml-py``) and a GPU that keeps a total-energy
    counter (Volta and newer), the reading is the counter's difference over the run: a
    measurement. Otherwise the energy is ``stated_watts`` (or the typical draw of the device
    kind, :data:`DEVICE_WATTS`) times the seconds: an estimate. :attr:`source` says which.

    Use as ``meter.start()`` ... ``meter.stop(seconds)``.
    """

    def __init__(self, device: str, stated_watts: float | None = None) -> None:
        self.device = device
        self.stated_watts = stated_watts if stated_watts else device_watts(device)
        self.source = "stated"
        self._handle: object | None = None
        self._start_mj: int | None = None

    def start(self) -> None:
        if not self.device.startswith("cuda"):
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._start_mj = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception:  # no pynvml, no driver, or a GPU without the counter
            self._handle = self._start_mj = None

    def stop(self, seconds: float) -> float | None:
        """Watt-hours used since :meth:`start`; None when neither NVML nor a wattage is known."""
        if self._handle is not None and self._start_mj is not None:
            try:
                import pynvml

                end_mj = int(pynvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
                self.source = "nvml"
                return (end_mj - self._start_mj) / 1000 / 3600
            except Exception:
                pass
        self.source = "stated"
        return None if self.stated_watts is None else self.stated_watts * seconds / 3600
