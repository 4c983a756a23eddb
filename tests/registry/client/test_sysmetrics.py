"""System metrics: host readings, GPU readings through a GpuReader, the sampler thread, and NVML itself
(on a machine with an NVIDIA driver the real-GPU test runs; without one the "unavailable" path does)."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from registry.client import sysmetrics
from registry.client.sysmetrics import GpuReading

GB = 1_000_000_000


def nvml_reason() -> str | None:
    """None when NVML can read a GPU here, else why not."""
    try:
        sysmetrics.NvmlGpuReader().close()
    except sysmetrics.GpuUnavailable as exc:
        return str(exc)
    return None


NO_GPU = nvml_reason()


class FakeGpus:
    """A GpuReader over fixed readings (the GPU path is checked for real by the NVML tests)."""

    def __init__(self, readings: list[GpuReading], *, broken: bool = False) -> None:
        self.readings = readings
        self.broken = broken
        self.closed = False

    def describe(self) -> str:
        return f"{len(self.readings)} x Fake GPU"

    def count(self) -> int:
        return len(self.readings)

    def read(self, index: int) -> GpuReading:
        if self.broken:
            raise RuntimeError("GPU has fallen off the bus")
        return self.readings[index]

    def close(self) -> None:
        self.closed = True


class Collected:
    def __init__(self) -> None:
        self.samples: list[tuple[dict[str, float], int, int]] = []
        self.lock = threading.Lock()

    def __call__(self, values: dict[str, float], step: int, timestamp: int) -> None:
        with self.lock:
            self.samples.append((values, step, timestamp))


def test_host_sample() -> None:
    values = sysmetrics.sample_host()
    assert set(values) == {
        "system/cpu_utilization_percentage",
        "system/memory_usage_megabytes",
        "system/memory_usage_percentage",
    }
    assert 0 <= values["system/cpu_utilization_percentage"] <= 100
    assert 0 < values["system/memory_usage_percentage"] < 100
    assert values["system/memory_usage_megabytes"] > 0


def test_gpu_sample_uses_mlflow_names() -> None:
    gpus = FakeGpus(
        [
            GpuReading(
                utilization_percent=87.0,
                memory_used_bytes=20 * GB,
                memory_total_bytes=80 * GB,
                temperature_celsius=61.0,
                power_watts=312.5,
            ),
            # A board that reports no temperature or power: those keys are skipped, the rest kept.
            GpuReading(utilization_percent=0.0, memory_used_bytes=0, memory_total_bytes=16 * GB),
        ]
    )
    assert sysmetrics.sample_gpus(gpus) == {
        "system/gpu_0_utilization_percentage": 87.0,
        "system/gpu_0_memory_usage_megabytes": 20_000.0,
        "system/gpu_0_memory_usage_percentage": 25.0,
        "system/gpu_0_temperature_celsius": 61.0,
        "system/gpu_0_power_usage_watts": 312.5,
        "system/gpu_1_utilization_percentage": 0.0,
        "system/gpu_1_memory_usage_megabytes": 0.0,
        "system/gpu_1_memory_usage_percentage": 0.0,
    }


def test_sampler_samples_every_interval_and_once_more_at_stop() -> None:
    sink = Collected()
    gpus = FakeGpus([GpuReading(utilization_percent=50.0)])
    sampler = sysmetrics.Sampler(sink, interval=0.05, gpus=gpus)
    sampler.start()
    time.sleep(0.4)
    sampler.stop()
    sampler.stop()  # idempotent

    assert not any(t.name == "modelkeep-system-metrics" and t.is_alive() for t in threading.enumerate())
    assert gpus.closed
    steps = [step for _, step, _ in sink.samples]
    assert len(steps) >= 3 and steps == list(range(len(steps)))
    stamps = [ts for _, _, ts in sink.samples]
    assert stamps == sorted(stamps)
    assert all(v["system/gpu_0_utilization_percentage"] == 50.0 for v, _, _ in sink.samples)
    assert all("system/cpu_utilization_percentage" in v for v, _, _ in sink.samples)


def test_short_run_still_gets_one_sample() -> None:
    sink = Collected()
    sampler = sysmetrics.Sampler(sink, interval=60)
    sampler.start()
    sampler.stop()
    assert len(sink.samples) == 1 and "system/memory_usage_megabytes" in sink.samples[0][0]


def test_a_failing_gpu_is_reported_once_and_host_metrics_go_on(caplog: pytest.LogCaptureFixture) -> None:
    sink = Collected()
    sampler = sysmetrics.Sampler(sink, interval=0.02, gpus=FakeGpus([GpuReading()], broken=True))
    with caplog.at_level(logging.WARNING, logger="registry.client.sysmetrics"):
        sampler.start()
        time.sleep(0.2)
        sampler.stop()
    assert len(sink.samples) >= 3
    assert all("system/cpu_utilization_percentage" in v and not any("gpu" in k for k in v) for v, _, _ in sink.samples)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "fallen off the bus" in warnings[0]


def test_a_failing_sink_does_not_stop_the_sampler(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def sink(values: dict[str, float], step: int, timestamp: int) -> None:
        calls.append(step)
        raise ConnectionError("buffer gone")

    sampler = sysmetrics.Sampler(sink, interval=0.02)
    with caplog.at_level(logging.WARNING, logger="registry.client.sysmetrics"):
        sampler.start()
        time.sleep(0.15)
        sampler.stop()
    assert len(calls) >= 3 and len(caplog.records) == 1


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        sysmetrics.Sampler(Collected(), interval=0)


@pytest.mark.skipif(NO_GPU is None, reason="an NVIDIA driver is present")
def test_without_a_driver_gpus_are_unavailable() -> None:
    reader, description = sysmetrics.open_gpus()
    assert reader is None and description == f"unavailable: {NO_GPU}"


@pytest.mark.skipif(NO_GPU is not None, reason=f"needs an NVIDIA driver ({NO_GPU})")
def test_nvml_reads_real_gpus() -> None:
    reader, description = sysmetrics.open_gpus()
    assert reader is not None and "driver" in description
    try:
        values = sysmetrics.sample_gpus(reader)
    finally:
        reader.close()
    for i in range(reader.count()):
        assert 0 <= values[f"system/gpu_{i}_utilization_percentage"] <= 100
        assert 0 <= values[f"system/gpu_{i}_memory_usage_percentage"] <= 100
        assert values[f"system/gpu_{i}_memory_usage_megabytes"] > 0
        assert 0 < values[f"system/gpu_{i}_temperature_celsius"] < 120
