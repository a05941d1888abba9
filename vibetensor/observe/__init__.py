"""``vt.observe``: the event ring (flight recorder), stats counters, Chrome-trace export, dumps.

    vt.observe.record(EventKind.COLLECTIVE_START, "all_reduce", group="world", coll_seq=7, ...)
    vt.observe.mark("epoch 1"); with vt.observe.span("forward"): ...
    vt.observe.events(min_seq, max_events); vt.observe.snapshot(); vt.observe.counter_add("x")
    vt.observe.export_chrome_trace("trace.json"); vt.observe.dump("why")  # -> vt_dumps/vt_events_rank0_pid123.json
    vt.observe.install_signal_dump()                                     # kill -USR1 <pid> dumps too

``VT_EVENTS=off|basic|full`` (full adds the Python stack), ``VT_EVENTS_CAPACITY`` (default 2000),
``VT_DUMP_DIR``. ``vt-trace merge|analyze DIR`` reads the dumps; ``vibetensor.observe.analyze.analyze``
is the same analysis as a library call. Collectives record through ``vibetensor.observe.collective``.
"""
from .events import (  # noqa: F401
    Event, EventKind, Mode, record, events, latest_seq, clear, wait_for_event_seq, mark, span,
    set_mode, mode, enabled, set_rank, set_capacity, capacity,
)
from .stats import counter_add, stats, reset_stats  # noqa: F401
from .capture import snapshot  # noqa: F401
from .chrome import export_chrome_trace, chrome_trace  # noqa: F401
from .dumpfile import (  # noqa: F401
    dump, install_signal_dump, uninstall_signal_dump, install_exit_dump, load_dumps, DumpError,
)
from . import collective  # noqa: F401
