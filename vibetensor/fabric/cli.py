"""``vt-topo``: the device table, link matrix, cliques and peer access of this machine (or of a
topology file), ``--json``, ``--bandwidth`` (measured copy bandwidth), ``--explain``.

Exit codes: 0 (including "no GPU"), 2 on an NVML/driver error or a malformed topology file,
1 when a measurement fails."""
from __future__ import annotations

import argparse
import json
import os
import sys

EXPLAIN = """\
How to read the link matrix (the same codes as `nvidia-smi topo -m`)
  X      the device itself
  NV#    connected by # NVLink links (through NVSwitch on 8-GPU SXM boxes: NV18 on H100)
  PIX    through at most one PCIe bridge (e.g. the same PCIe switch): fast P2P
  PXB    through several PCIe bridges, without crossing a host bridge
  PHB    through a PCIe host bridge (the CPU's root complex)
  NODE   across PCIe host bridges inside one NUMA node
  SYS    across NUMA nodes (the CPU interconnect: QPI/UPI/Infinity Fabric): slowest; P2P often unavailable
  HOST   virtual CPU devices (VT_CPU_DEVICES): one host memory, copies are memcpy
Faster to slower: NV# (more links faster) > PIX > PXB > PHB > NODE > SYS.

Peer access: whether one GPU may read/write another's memory directly (cudaDeviceCanAccessPeer).
Cliques: groups of devices that can all access each other; Fabric keeps a mesh axis inside one clique
and orders rings so neighbours share the fastest links.

Bandwidth (vt-topo --bandwidth and collective benchmarks)
  copy GB/s      bytes moved by one copy / time (1 GB = 1e9 bytes), per direction
  algbw          data size / collective time: what the application sees
  busbw          algbw x a factor that makes it comparable to link speed, independent of the rank
                 count n: all_reduce 2(n-1)/n; all_gather and reduce_scatter (n-1)/n; broadcast,
                 reduce, send/recv 1. Compare busbw with the link's nominal rate (NVLink ~25 GB/s
                 per link per direction; PCIe 4.0 x16 ~25 GB/s, 5.0 ~50 GB/s).
"""


def _fmt_mem(b):
    return "-" if not b else f"{b / 2**30:.0f} GiB"


def _table(rows, header):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render(topo) -> str:
    out = [f"Topology source: {topo.source}"]
    if topo.driver_version or topo.cuda_version:
        out.append(f"Driver {topo.driver_version or '?'}, CUDA {topo.cuda_version or '?'}; UVA: "
                   f"{'yes' if topo.uva else 'no'}")
    out.append("")
    rows = [[d.label, d.name, _fmt_mem(d.memory_bytes), d.compute_capability or "-", d.pci_bus_id or "-",
             "-" if d.numa_node is None else d.numa_node, d.cpu_affinity or "-"] for d in topo.devices]
    out.append(_table(rows, ["device", "name", "memory", "cc", "pci bus", "numa", "cpu affinity"]))
    out.append("")
    labels = [f"{'GPU' if d.type == 'cuda' else 'CPU'}{d.index}" for d in topo.devices]
    out.append("Link matrix:")
    out.append(_table([[lab] + list(r) for lab, r in zip(labels, topo.links)], [""] + labels))
    if any(s not in ("-",) for r in topo.nvlink_state for s in r):
        out.append("")
        out.append("NVLink state:")
        out.append(_table([[lab] + list(r) for lab, r in zip(labels, topo.nvlink_state)], [""] + labels))
    out.append("")
    out.append("Peer access (row can access column):")
    out.append(_table([[lab] + ["X" if i == j else ("yes" if v else "no") for j, v in enumerate(r)]
                       for i, (lab, r) in enumerate(zip(labels, topo.peer_access))], [""] + labels))
    out.append("")
    out.append("Cliques (mutually peer-accessible): " + "  ".join(
        "{" + ", ".join(f"{topo.devices[0].type}:{i}" for i in c) + "}" for c in topo.cliques))
    for n in topo.notes:
        out.append(f"note: {n}")
    out.append("")
    out.append("Legend: X self, NV# NVLinks, PIX/PXB PCIe switch(es), PHB host bridge, NODE same NUMA node, "
               "SYS across NUMA nodes, HOST host memory (run vt-topo --explain)")
    return "\n".join(out)


def render_bandwidth(rep) -> str:
    labels = list(rep.devices)
    out = [f"Copy bandwidth, GB/s ({rep.nbytes / 1e6:.0f} MB per copy; row = source, column = destination; "
           f"diagonal = local copy):"]
    out.append(_table([[lab] + [f"{v:.1f}" for v in r] for lab, r in zip(labels, rep.gbps)], [""] + labels))
    out.append("")
    out.append("Latency of a 4-byte copy, us:")
    out.append(_table([[lab] + [f"{v:.1f}" for v in r] for lab, r in zip(labels, rep.latency_us)], [""] + labels))
    for w in rep.warnings:
        out.append(f"warning: {w}")
    return "\n".join(out)


def main(argv=None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `vt-topo | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="vt-topo", description="Show the devices of this machine and how they "
                                 "connect (NVML link matrix, peer access, cliques).")
    ap.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    ap.add_argument("--bandwidth", action="store_true", help="measure copy bandwidth between every device pair")
    ap.add_argument("--size-mb", type=float, default=64, help="bytes per measured copy, in MB (default 64)")
    ap.add_argument("--explain", action="store_true", help="how to read the matrix; algbw vs busbw")
    ap.add_argument("--file", help="read the topology from this JSON file (like VT_TOPOLOGY_FILE)")
    args = ap.parse_args(argv)
    if args.explain:
        print(EXPLAIN)
        return 0
    if args.file:
        os.environ["VT_TOPOLOGY_FILE"] = args.file
    from .. import _env
    from .topo import TopologyError, topology
    try:
        _env.reload()
        topo = topology(refresh=True)
    except TopologyError as e:
        print(f"vt-topo: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # a bad VT_* value
        print(f"vt-topo: error: {e}", file=sys.stderr)
        return 2
    rep = None
    if args.bandwidth and topo.devices:
        from .bandwidth import measure_bandwidth
        try:
            rep = measure_bandwidth(size_mb=args.size_mb, topo=topo)
        except Exception as e:  # noqa: BLE001 - report the cause, non-zero exit
            print(f"vt-topo: bandwidth measurement failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
    if args.json:
        d = topo.to_dict()
        if rep is not None:
            d["bandwidth"] = rep.to_dict()
        print(json.dumps(d, indent=2))
        return 0
    if not topo.devices:
        why = "; ".join(topo.notes) or "no GPU"
        print(f"No GPU found on this machine ({why}).")
        print("Set VT_CPU_DEVICES=N to create virtual CPU devices cpu:0..cpu:N-1, or VT_TOPOLOGY_FILE=<json> "
              "to inspect a saved topology.")
        return 0
    if topo.source == "virtual_cpu":
        print("No GPU found on this machine; showing the virtual CPU devices (VT_CPU_DEVICES).")
    print(render(topo))
    if args.bandwidth and rep is not None:
        print()
        print(render_bandwidth(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
