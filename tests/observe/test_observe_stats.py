import sys
import threading

from vibetensor.observe import counter_add, stats, reset_stats


def test_counters_add_prefix_and_reset():
    reset_stats("t_stats.")
    counter_add("t_stats.a")
    counter_add("t_stats.a", 4)
    counter_add("t_stats.b.c", 2)
    assert stats("t_stats.") == {"t_stats.a": 5, "t_stats.b.c": 2}
    assert stats("t_stats.b") == {"t_stats.b.c": 2}
    reset_stats("t_stats.a")
    assert stats("t_stats.") == {"t_stats.b.c": 2}
    reset_stats("t_stats.")
    assert stats("t_stats.") == {}


def test_counters_lose_no_update_across_threads():
    reset_stats("t_threads.")
    n, per = 8, 5000
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        ts = [threading.Thread(target=lambda: [counter_add("t_threads.x") for _ in range(per)]) for _ in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert stats("t_threads.") == {"t_threads.x": n * per}
