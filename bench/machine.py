"""The machine a benchmark ran on, as a JSON-ready dict (docs/notes/benchmarks.md: state the
CPU model, cores, torch threads, and the GPU model when on CUDA)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    return platform.processor() or platform.machine()


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_machine(device: torch.device | str = "cpu") -> dict[str, object]:
    """CPU model, cores, torch threads and versions; GPU model and memory on CUDA."""
    dev = torch.device(device)
    info: dict[str, object] = {
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count() or 1,
        "usable_cores": _usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": str(dev),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews every timing
        info["load_average_1_5_15min"] = [round(x, 2) for x in os.getloadavg()]
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        info["gpu_name"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda_version"] = torch.version.cuda
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info
