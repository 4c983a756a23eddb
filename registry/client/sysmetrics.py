"""System metrics of a tracked run: CPU and memory through psutil, NVIDIA GPUs through NVML (``pynvml``).

Keys follow MLflow's names under ``system/`` so dashboards carry over. A background ``Sampler`` thread
reads them every few seconds and hands each sample to a sink (the run's metric buffer). GPUs sit behind
the small ``GpuReader`` protocol: tests drive the sampler with their own reader, and the NVML reader is
checked on a real driver. No reading ever raises into training: failures are logged and skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0
"""Seconds between samples (MLflow's default)."""
MB = 1e6
"""MLflow's "megabytes" are decimal."""

Sink = Callable[[dict[str, float], int, int], None]
"""Receives one sample: ``{key: value}``, the sample's step (0, 1, 2 ...) and its epoch-ms timestamp."""


class GpuUnavailable(Exception):
    """No GPU can be read: no NVIDIA driver, no NVML library, or no device."""


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU at one moment. A field the device does not report is None (and its metric is skipped)."""

    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperature_celsius: float | None = None
    power_watts: float | None = None


class GpuReader(Protocol):
    def describe(self) -> str:
        """What was found, for the run's ``modelkeep.system.gpu`` tag (``"1 x NVIDIA H100 ..."``)."""
        ...

    def count(self) -> int: ...

    def read(self, index: int) -> GpuReading: ...

    def close(self) -> None: ...


def _nvml_text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlGpuReader:
    """NVIDIA GPUs through NVML. Indexes are NVML's (physical order; ``CUDA_VISIBLE_DEVICES`` is ignored)."""

    def __init__(self) -> None:
        """Raises GpuUnavailable (with NVML's reason) when there is no driver, library or device."""
        try:
            import pynvml
        except ImportError as exc:
            raise GpuUnavailable(f"nvidia-ml-py is not installed ({exc})") from None
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise GpuUnavailable(str(exc) or exc.__class__.__name__) from None
        try:
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(int(pynvml.nvmlDeviceGetCount()))]
            self._names = [_nvml_text(pynvml.nvmlDeviceGetName(h)) for h in self._handles]
            self._driver = _nvml_text(pynvml.nvmlSystemGetDriverVersion())
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise GpuUnavailable(str(exc) or exc.__class__.__name__) from None
        if not self._handles:
            pynvml.nvmlShutdown()
            raise GpuUnavailable("the NVIDIA driver reports no GPU")

    def describe(self) -> str:
        names = sorted(set(self._names))
        return f"{len(self._handles)} x {', '.join(names)} (driver {self._driver})"

    def count(self) -> int:
        return len(self._handles)

    def _get(self, fn: Callable[[], Any]) -> Any:
        # One unsupported query (temperature on some boards, power on others) must not hide the rest.
        try:
            return fn()
        except self._nvml.NVMLError:
            return None

    def read(self, index: int) -> GpuReading:
        nvml, handle = self._nvml, self._handles[index]
        util = self._get(lambda: nvml.nvmlDeviceGetUtilizationRates(handle))
        memory = self._get(lambda: nvml.nvmlDeviceGetMemoryInfo(handle))
        temperature = self._get(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
        power = self._get(lambda: nvml.nvmlDeviceGetPowerUsage(handle))  # milliwatts
        return GpuReading(
            utilization_percent=float(util.gpu) if util is not None else None,
            memory_used_bytes=int(memory.used) if memory is not None else None,
            memory_total_bytes=int(memory.total) if memory is not None else None,
            temperature_celsius=float(temperature) if temperature is not None else None,
            power_watts=float(power) / 1000 if power is not None else None,
        )

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError:
            pass


def open_gpus() -> tuple[GpuReader | None, str]:
    """The NVML reader and its description, or None and ``"unavailable: <reason>"``. Never raises."""
    try:
        reader = NvmlGpuReader()
    except GpuUnavailable as exc:
        return None, f"unavailable: {exc}"
    except Exception as exc:  # a broken driver install must not stop a training run
        return None, f"unavailable: {exc.__class__.__name__}: {exc}"
    return reader, reader.describe()


def sample_host() -> dict[str, float]:
    """CPU (percent since the previous call, system-wide) and memory in use."""
    memory = psutil.virtual_memory()
    return {
        "system/cpu_utilization_percentage": float(psutil.cpu_percent(interval=None)),
        "system/memory_usage_megabytes": memory.used / MB,
        "system/memory_usage_percentage": memory.used / memory.total * 100,
    }


def sample_gpus(gpus: GpuReader) -> dict[str, float]:
    values: dict[str, float] = {}
    for i in range(gpus.count()):
        r = gpus.read(i)
        prefix = f"system/gpu_{i}_"
        if r.utilization_percent is not None:
            values[prefix + "utilization_percentage"] = r.utilization_percent
        if r.memory_used_bytes is not None:
            values[prefix + "memory_usage_megabytes"] = r.memory_used_bytes / MB
            if r.memory_total_bytes:
                values[prefix + "memory_usage_percentage"] = r.memory_used_bytes / r.memory_total_bytes * 100
        if r.temperature_celsius is not None:
            values[prefix + "temperature_celsius"] = r.temperature_celsius
        if r.power_watts is not None:
            values[prefix + "power_usage_watts"] = r.power_watts
    return values


class Sampler:
    """A daemon thread sampling every ``interval`` seconds, plus one last sample when stopped (so even a
    run shorter than the interval has system metrics). Owns ``gpus`` and closes it on stop."""

    def __init__(self, sink: Sink, *, interval: float = DEFAULT_INTERVAL, gpus: GpuReader | None = None) -> None:
        if interval <= 0:
            raise ValueError("the system metrics interval must be a positive number of seconds")
        self._sink = sink
        self._interval = interval
        self._gpus = gpus
        self._step = 0
        self._stop = threading.Event()
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="modelkeep-system-metrics", daemon=True)

    def start(self) -> None:
        psutil.cpu_percent(interval=None)  # the first call only sets the baseline (it returns 0.0)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, take the final sample, release the GPU library. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample_once()
        if self._gpus is not None:
            try:
                self._gpus.close()
            except Exception as exc:
                log.debug("closing the GPU reader failed: %s", exc)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample_once()

    def _warn_once(self, what: str, exc: BaseException) -> None:
        # A failing reading fails the same way every 10 s: say it once, not every sample.
        if what not in self._warned:
            self._warned.add(what)
            log.warning("modelkeep: %s (%s: %s); going on without", what, type(exc).__name__, exc)

    def sample_once(self) -> None:
        """Read everything readable and hand it to the sink; never raises."""
        values: dict[str, float] = {}
        try:
            values.update(sample_host())
        except Exception as exc:
            self._warn_once("cannot read CPU/memory metrics", exc)
        if self._gpus is not None:
            try:
                values.update(sample_gpus(self._gpus))
            except Exception as exc:
                self._warn_once("cannot read GPU metrics", exc)
        if not values:
            return
        try:
            self._sink(values, self._step, int(time.time() * 1000))
        except Exception as exc:
            self._warn_once("cannot buffer system metrics", exc)
        self._step += 1
