"""``vt-trace``: merge per-rank event dumps into one Chrome trace; analyze them for hangs.

    vt-trace merge DIR -o trace.json     # open trace.json at https://ui.perfetto.dev
    vt-trace analyze DIR [--json]        # exit 0: consistent, 1: ranks diverge, 2: bad input

DIR holds ``vt_events_rank<R>_pid<P>.json`` files (``VT_DUMP_DIR``); single dump files work too.
"""
from __future__ import annotations

import argparse
import json
import sys

from .dumpfile import DumpError, load_dumps


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vt-trace", description="Merge and analyze vibetensor event-ring dumps.")
    sub = p.add_subparsers(dest="cmd", metavar="{merge,analyze}")
    sub.required = True
    m = sub.add_parser("merge", help="merge every rank's dump into one Chrome trace (pid = rank)")
    m.add_argument("paths", nargs="+", metavar="DIR", help="dump directory (or dump files)")
    m.add_argument("-o", "--output", default="trace.json", help="trace file to write (default trace.json)")
    a = sub.add_parser("analyze", help="say where the ranks' collectives diverge",
                       epilog="exit status: 0 consistent, 1 the ranks diverge (or a rank left no dump), "
                              "2 bad input (missing directory, no dumps, malformed JSON)")
    a.add_argument("paths", nargs="+", metavar="DIR", help="dump directory (or dump files)")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        dumps, notes = load_dumps(*args.paths)
    except DumpError as exc:
        print(f"vt-trace: error: {exc}", file=sys.stderr)
        return 2
    for n in notes:
        print(f"vt-trace: note: {n}", file=sys.stderr)
    if args.cmd == "merge":
        from .chrome import chrome_trace, write_json_atomic
        trace = chrome_trace(dumps)
        try:
            write_json_atomic(trace, args.output)
        except OSError as exc:
            print(f"vt-trace: error: cannot write {args.output}: {exc}", file=sys.stderr)
            return 2
        n = sum(1 for e in trace["traceEvents"] if e["ph"] != "M")
        ranks = ",".join(str(d["rank"]) for d in dumps)
        print(f"wrote {args.output}: {n} trace events from ranks {ranks} (open it at https://ui.perfetto.dev)")
        return 0
    from .analyze import analyze
    report = analyze(dumps)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(report.text())
    return 0 if report.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
