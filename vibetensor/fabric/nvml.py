"""Real-GPU discovery: NVML (``pynvml`` from nvidia-ml-py) for devices and links, the CUDA runtime
(through ``vibetensor.core.backend``'s CuPy) for peer access and UVA."""
from __future__ import annotations

import os

from .topo import DeviceInfo, TopologyError, TopologySnapshot, compute_cliques

# NVML errors that mean "this machine has no NVIDIA GPU/driver" rather than "the driver is broken"
_ABSENT = ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_NOT_FOUND")


def _pynvml():
    try:
        import pynvml  # noqa: PLC0415 - optional (nvidia-ml-py)
        return pynvml
    except ImportError:
        return None


def _err_name(pynvml, e) -> str:
    for n in _ABSENT:
        if getattr(e, "value", None) == getattr(pynvml, n, object()):
            return n
    return ""


def gpu_presence() -> tuple[bool, str]:
    """(GPUs present, why not). Raises TopologyError when NVML or the driver is broken."""
    pynvml = _pynvml()
    if pynvml is None:
        from ..core import backend
        if backend.cuda_device_count() > 0:
            return True, ""
        return False, "no GPU: nvidia-ml-py (pynvml) is not installed and CUDA reports no device"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        if _err_name(pynvml, e):
            return False, f"no GPU: the NVIDIA driver is not present ({e})"
        raise TopologyError(f"NVML failed to initialise: {e}; check the NVIDIA driver (nvidia-smi)") from None
    try:
        n = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as e:
        raise TopologyError(f"NVML could not count devices: {e}") from None
    finally:
        _shutdown(pynvml)
    if n == 0:
        return False, "no GPU: NVML sees no NVIDIA device"
    return True, ""


def _shutdown(pynvml):
    try:
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - shutting down is best effort
        pass


def _ranges(cpus: list[int]) -> str:
    out, start, prev = [], None, None
    for c in cpus:
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = c
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)


def _numa(bus_id: str) -> int | None:
    bus = bus_id.lower()
    if len(bus.split(":")[0]) == 8:  # NVML: 00000000:18:00.0, sysfs: 0000:18:00.0
        bus = bus[4:]
    try:
        with open(f"/sys/bus/pci/devices/{bus}/numa_node") as f:
            v = int(f.read().strip())
        return v if v >= 0 else None
    except (OSError, ValueError):
        return None


def _s(x):
    return x.decode() if isinstance(x, bytes) else str(x)


_LEVEL = {0: "X", 10: "PIX", 20: "PXB", 30: "PHB", 40: "NODE", 50: "SYS"}


def discover_gpus() -> TopologySnapshot:
    pynvml = _pynvml()
    if pynvml is None:
        return _cuda_only()
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as e:
        raise TopologyError(f"NVML failed to initialise: {e}; check the NVIDIA driver (nvidia-smi)") from None
    try:
        return _nvml_snapshot(pynvml)
    except pynvml.NVMLError as e:
        raise TopologyError(f"NVML error while reading the topology: {e}") from None
    finally:
        _shutdown(pynvml)


def _visible(n):
    """NVML indices in CUDA order, honouring CUDA_VISIBLE_DEVICES (integer lists only)."""
    v = os.environ.get("CUDA_VISIBLE_DEVICES")
    if v is None or v.strip() == "":
        return list(range(n))
    out = []
    for tok in v.split(","):
        tok = tok.strip()
        if not tok.isdigit():
            return list(range(n))  # UUID / MIG forms: fall back to NVML order
        if int(tok) < n:
            out.append(int(tok))
    return out


def _nvml_snapshot(pynvml) -> TopologySnapshot:
    notes = []
    order = _visible(pynvml.nvmlDeviceGetCount())
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in order]
    n = len(handles)
    devices, buses = [], []
    for k, h in enumerate(handles):
        bus = _s(pynvml.nvmlDeviceGetPciInfo(h).busId)
        buses.append(bus.upper())
        try:
            cc = "%d.%d" % pynvml.nvmlDeviceGetCudaComputeCapability(h)
        except pynvml.NVMLError:
            cc = None
        try:
            words = pynvml.nvmlDeviceGetCpuAffinity(h, (os.cpu_count() or 64) // 64 + 1)
            cpus = [w * 64 + b for w, word in enumerate(words) for b in range(64) if int(word) >> b & 1]
            aff = _ranges(cpus) or None
        except pynvml.NVMLError:
            aff = None
        devices.append(DeviceInfo(
            index=k, name=_s(pynvml.nvmlDeviceGetName(h)), type="cuda",
            memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(h).total), compute_capability=cc,
            pci_bus_id=bus, numa_node=_numa(bus), cpu_affinity=aff, uuid=_s(pynvml.nvmlDeviceGetUUID(h))))
    direct, to_switch, state = _nvlinks(pynvml, handles, buses)
    links, states = [], []
    for i in range(n):
        row, srow = [], []
        for j in range(n):
            if i == j:
                row.append("X")
                srow.append("-")
                continue
            cnt = direct[i].get(buses[j], 0)
            if not cnt and to_switch[i] and to_switch[j]:
                cnt = min(to_switch[i], to_switch[j])
            if cnt:
                row.append(f"NV{cnt}")
                srow.append("up" if state[i] else "down")
                continue
            srow.append("-")
            try:
                lvl = pynvml.nvmlDeviceGetTopologyCommonAncestor(handles[i], handles[j])
                row.append(_LEVEL.get(int(lvl), "SYS"))
            except pynvml.NVMLError as e:
                row.append("SYS")
                notes.append(f"common ancestor of GPU{i}/GPU{j} unknown ({e})")
        links.append(tuple(row))
        states.append(tuple(srow))
    peer, uva, cuda_notes = _peer_matrix(n)
    notes += cuda_notes
    try:
        drv = _s(pynvml.nvmlSystemGetDriverVersion())
    except pynvml.NVMLError:
        drv = None
    try:
        cv = pynvml.nvmlSystemGetCudaDriverVersion()
        cuda = f"{cv // 1000}.{cv % 1000 // 10}"
    except pynvml.NVMLError:
        cuda = None
    cl = tuple(tuple(devices[p].index for p in c) for c in compute_cliques(n, peer))
    return TopologySnapshot(source="nvml", devices=tuple(devices), links=tuple(links), nvlink_state=tuple(states),
                            peer_access=peer, uva=uva, cliques=cl, driver_version=drv, cuda_version=cuda,
                            notes=tuple(notes))


def _nvlinks(pynvml, handles, buses):
    """Per GPU: {peer bus id: active links}, links to NVSwitches, any link up."""
    direct = [dict() for _ in handles]
    to_switch = [0] * len(handles)
    up = [False] * len(handles)
    for i, h in enumerate(handles):
        for link in range(pynvml.NVML_NVLINK_MAX_LINKS):
            try:
                if pynvml.nvmlDeviceGetNvLinkState(h, link) != pynvml.NVML_FEATURE_ENABLED:
                    continue
            except pynvml.NVMLError:
                continue  # link not present on this GPU
            up[i] = True
            try:
                kind = pynvml.nvmlDeviceGetNvLinkRemoteDeviceType(h, link)
            except (pynvml.NVMLError, AttributeError):
                kind = None
            try:
                rbus = _s(pynvml.nvmlDeviceGetNvLinkRemotePciInfo(h, link).busId).upper()
            except pynvml.NVMLError:
                rbus = ""
            if kind == getattr(pynvml, "NVML_NVLINK_DEVICE_TYPE_SWITCH", -1) or (kind is None and rbus not in buses):
                to_switch[i] += 1
            else:
                direct[i][rbus] = direct[i].get(rbus, 0) + 1
    return direct, to_switch, up


def _peer_matrix(n):
    from ..core import backend
    notes = []
    if not backend.cuda_available():
        notes.append("peer access unknown: CuPy/CUDA runtime not usable; assuming none")
        return tuple(tuple(i == j for j in range(n)) for i in range(n)), False, notes
    cp = backend.cupy_module()
    rt = cp.cuda.runtime
    m = min(n, rt.getDeviceCount())
    peer = tuple(tuple(i == j or (i < m and j < m and bool(rt.deviceCanAccessPeer(i, j))) for j in range(n))
                 for i in range(n))
    uva = all(bool(rt.getDeviceProperties(i).get("unifiedAddressing", 0)) for i in range(m))
    return peer, uva, notes


def _cuda_only() -> TopologySnapshot:
    """No NVML: devices and peer access from the CUDA runtime; PCIe paths unknown (reported as SYS)."""
    from ..core import backend
    cp = backend.cupy_module()
    rt = cp.cuda.runtime
    n = rt.getDeviceCount()
    devices = []
    for i in range(n):
        p = rt.getDeviceProperties(i)
        name = p.get("name", b"GPU")
        devices.append(DeviceInfo(index=i, name=_s(name), type="cuda", memory_bytes=int(p.get("totalGlobalMem", 0)),
                                  compute_capability=f"{p.get('major', 0)}.{p.get('minor', 0)}"))
    peer, uva, notes = _peer_matrix(n)
    links = tuple(tuple("X" if i == j else "SYS" for j in range(n)) for i in range(n))
    cl = compute_cliques(n, peer)
    return TopologySnapshot(source="cuda", devices=tuple(devices), links=links,
                            nvlink_state=tuple(tuple("-" for _ in range(n)) for _ in range(n)), peer_access=peer,
                            uva=uva, cliques=cl,
                            notes=tuple(notes) + ("nvidia-ml-py (pynvml) is not installed: link types unknown",))


_peer_enabled: set = set()


def enable_peer_access(topo: TopologySnapshot) -> int:
    """Enable CUDA peer access between members of each clique, once per process; returns pairs enabled."""
    if topo.device_type != "cuda" or topo.source.startswith("file:"):
        return 0
    from ..core import backend
    if not backend.cuda_available():
        return 0
    rt = backend.cupy_module().cuda.runtime
    cp = backend.cupy_module()
    done = 0
    for c in topo.cliques:
        for i in c:
            for j in c:
                if i == j or (i, j) in _peer_enabled:
                    continue
                _peer_enabled.add((i, j))
                with cp.cuda.Device(i):
                    try:
                        rt.deviceEnablePeerAccess(j)
                        done += 1
                    except Exception:  # noqa: BLE001 - already enabled (cudaErrorPeerAccessAlreadyEnabled)
                        pass
    return done
