"""Measured copy bandwidth: P2P between every device pair (both directions) and local copies.

CUDA devices: CuPy device-to-device copies timed with CUDA events; virtual CPU devices: numpy copies
timed with perf_counter. Warnings flag peer bandwidth far below the link's nominal rate, variables
that disable P2P (NCCL_P2P_DISABLE ...), and pairs NVML links by NVLink/PCIe switch without P2P.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, asdict

from .topo import TopologySnapshot, nominal_gbps, parse_link, LinkKind, topology

_P2P_VARS = ("NCCL_P2P_DISABLE", "NCCL_P2P_LEVEL", "NCCL_SHM_DISABLE", "CUDA_VISIBLE_DEVICES_P2P_DISABLE",
             "NCCL_IGNORE_DISABLED_P2P")


@dataclass(frozen=True)
class BandwidthReport:
    device_type: str
    devices: tuple                      # device labels in matrix order
    nbytes: int                         # bytes per copy
    gbps: tuple                         # gbps[i][j]: copy i -> j (GB/s, 1e9); diagonal: local copy
    latency_us: tuple                   # small-copy latency i -> j
    warnings: tuple = field(default_factory=tuple)

    def to_dict(self):
        return asdict(self)


def _env_warnings() -> list:
    out = []
    for v in _P2P_VARS:
        val = os.environ.get(v)
        if val not in (None, "", "0") and not (v == "NCCL_IGNORE_DISABLED_P2P"):
            out.append(f"{v}={val} is set: NCCL/peer traffic may be forced through host memory")
    return out


def _time_cpu(n_bytes, reps):
    import numpy as np
    src = np.ones(n_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    t0 = time.perf_counter()
    for _ in range(reps):
        np.copyto(dst, src)
    dt = (time.perf_counter() - t0) / reps
    small_s, small_d = np.ones(1, np.float32), np.empty(1, np.float32)
    t0 = time.perf_counter()
    for _ in range(reps * 10):
        np.copyto(small_d, small_s)
    lat = (time.perf_counter() - t0) / (reps * 10)
    return n_bytes / dt / 1e9, lat * 1e6


def _time_cuda(cp, i, j, n_bytes, reps):
    with cp.cuda.Device(i):
        src = cp.ones(n_bytes // 4, dtype=cp.float32)
        small = cp.ones(1, dtype=cp.float32)
    with cp.cuda.Device(j):
        dst = cp.empty(n_bytes // 4, dtype=cp.float32)
        dsmall = cp.empty(1, dtype=cp.float32)
        dst.data.copy_from_device(src.data, n_bytes)  # warm up (and peer mapping)
        cp.cuda.Device(j).synchronize()
        start, end = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(reps):
            dst.data.copy_from_device(src.data, n_bytes)
        end.record()
        end.synchronize()
        ms = cp.cuda.get_elapsed_time(start, end) / reps
        start.record()
        for _ in range(reps):
            dsmall.data.copy_from_device(small.data, 4)
        end.record()
        end.synchronize()
        lat_ms = cp.cuda.get_elapsed_time(start, end) / reps
    return n_bytes / (ms / 1e3) / 1e9, lat_ms * 1e3


def link_warnings(topo: TopologySnapshot, gbps) -> list:
    """Warnings for measured peer bandwidth far below the link's nominal rate, and for pairs NVML
    links through NVLink or a PCIe switch that have no CUDA peer access."""
    out = []
    labels = [d.label for d in topo.devices]
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j:
                continue
            code = topo.links[i][j]
            kind, _ = parse_link(code)
            nom = nominal_gbps(code)
            if nom and gbps[i][j] < 0.25 * nom and topo.peer_access[i][j]:
                out.append(f"{labels[i]} -> {labels[j]}: measured {gbps[i][j]:.1f} GB/s, far below the nominal "
                           f"~{nom:.0f} GB/s of link {code}")
            if not topo.peer_access[i][j] and kind in (LinkKind.NVLINK, LinkKind.PIX, LinkKind.PXB):
                out.append(f"{labels[i]} -> {labels[j]}: NVML reports link {code} (a shared "
                           f"{'NVLink' if kind is LinkKind.NVLINK else 'PCIe switch'}) but CUDA peer access is "
                           f"unavailable (IOMMU/ACS or virtualisation?)")
    return out


def measure_bandwidth(size_mb: float = 64, reps: int = 5, topo: TopologySnapshot | None = None) -> BandwidthReport:
    """Copy bandwidth/latency matrix over the devices of ``topo`` (default: the current topology)."""
    topo = topo or topology()
    n_bytes = max(int(size_mb * 1e6) // 4 * 4, 4)
    warns = _env_warnings()
    if not topo.devices:
        raise RuntimeError(f"measure_bandwidth: no devices to measure ({'; '.join(topo.notes) or 'no GPU'}); "
                           f"set VT_CPU_DEVICES=N to measure virtual CPU devices")
    if topo.source.startswith("file:"):
        raise RuntimeError(f"measure_bandwidth: the topology comes from {topo.source[5:]} (VT_TOPOLOGY_FILE), not "
                           f"from this machine's devices; unset VT_TOPOLOGY_FILE to measure")
    labels = tuple(d.label for d in topo.devices)
    n = len(labels)
    gb = [[0.0] * n for _ in range(n)]
    lat = [[0.0] * n for _ in range(n)]
    if topo.device_type == "cpu":
        b, l_ = _time_cpu(n_bytes, reps)  # one host memory: every pair is a host copy
        for i in range(n):
            for j in range(n):
                gb[i][j], lat[i][j] = b, l_
    else:
        from ..core import backend
        from .nvml import enable_peer_access
        cp = backend.cupy_module()
        enable_peer_access(topo)
        for i in range(n):
            for j in range(n):
                gb[i][j], lat[i][j] = _time_cuda(cp, topo.devices[i].index, topo.devices[j].index, n_bytes, reps)
        warns += link_warnings(topo, gb)
    return BandwidthReport(device_type=topo.device_type, devices=labels, nbytes=n_bytes,
                           gbps=tuple(tuple(r) for r in gb), latency_us=tuple(tuple(r) for r in lat),
                           warnings=tuple(warns))
