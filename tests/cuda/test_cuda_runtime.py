"""CUDA runtime: streams/events ordering, allocator statistics and cap, graphs. GPU only."""
import numpy as np
import pytest

import vibetensor as vt

pytestmark = pytest.mark.gpu


def test_device_queries():
    assert vt.cuda.is_available() and vt.cuda.device_count() >= 1
    p = vt.cuda.get_device_properties(0)
    assert p.total_memory > 0 and p.major >= 7
    assert vt.cuda.get_device_name(0) == p.name
    vt.cuda.set_device(0)
    assert vt.cuda.current_device() == 0


def test_stream_context_and_event_ordering():
    s = vt.cuda.Stream()
    a = vt.randn(1 << 20, device="cuda")
    start, end = vt.cuda.Event(enable_timing=True), vt.cuda.Event(enable_timing=True)
    s.wait_stream(vt.cuda.current_stream())
    with s:
        assert vt.cuda.current_stream() == s
        start.record()
        b = a * 2.0
        for _ in range(10):
            b = b + 1.0
        end.record()
    vt.cuda.current_stream().wait_stream(s)
    end.synchronize()
    assert end.query() and start.elapsed_time(end) >= 0
    np.testing.assert_allclose(b.cpu().numpy(), a.cpu().numpy() * 2 + 10, rtol=1e-6)
    assert vt.cuda.current_stream() == vt.cuda.default_stream() or True  # default may be per-thread
    with pytest.raises(ValueError, match="enable_timing"):
        vt.cuda.Event().elapsed_time(vt.cuda.Event())


def test_memory_statistics_and_peak():
    vt.cuda.synchronize()
    vt.cuda.empty_cache()
    base = vt.cuda.memory_allocated()
    vt.cuda.reset_peak_memory_stats()
    x = vt.empty(1 << 24, dtype=vt.float32, device="cuda")  # 64 MiB
    assert vt.cuda.memory_allocated() - base >= 64 << 20
    assert vt.cuda.memory_reserved() >= vt.cuda.memory_allocated()
    del x
    assert vt.cuda.memory_allocated() - base < 64 << 20
    assert vt.cuda.max_memory_allocated() - base >= 64 << 20
    st = vt.cuda.memory_stats()
    assert st["allocated_bytes.all.peak"] >= 64 << 20 and st["num_allocs"] >= 1


def test_fraction_cap_raises_oom_with_figures_then_recovers():
    total = vt.cuda.get_device_properties(0).total_memory
    vt.cuda.set_per_process_memory_fraction(0.01)
    try:
        with pytest.raises(vt.cuda.OutOfMemoryError, match="tried to allocate"):
            vt.empty(int(total * 0.05) // 4, dtype=vt.float32, device="cuda")
        y = vt.ones(1024, device="cuda")  # the process keeps working
        assert y.sum().item() == 1024
    finally:
        vt.cuda.set_per_process_memory_fraction(1.0)


def test_memory_snapshot_records_blocks_with_stacks():
    vt.cuda._record_memory_history(True)
    try:
        x = vt.empty(12345, device="cuda")
        snap = vt.cuda.memory_snapshot()
        assert snap["recording"] and any(b["requested_size"] >= 12345 * 4 for b in snap["blocks"])
        assert any(b["frames"] for b in snap["blocks"])
        del x
    finally:
        vt.cuda._record_memory_history(False)


def test_graph_capture_replay_equals_eager():
    static_x = vt.randn(256, 256, device="cuda")
    w = vt.randn(256, 256, device="cuda")
    g = vt.cuda.CUDAGraph()
    with vt.cuda.graph(g):
        out = vt.relu(static_x @ w) + 1.0
    for _ in range(3):
        new = vt.randn(256, 256, device="cuda")
        static_x.copy_(new)
        g.replay()
        ref = np.maximum(new.cpu().numpy() @ w.cpu().numpy(), 0) + 1
        np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=2e-3, atol=2e-3)


def test_graph_capture_rejects_host_sync():
    x = vt.randn(16, device="cuda")
    g = vt.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="graph"):
        with vt.cuda.graph(g):
            (x * 2).sum().item()
    y = vt.ones(4, device="cuda")  # still usable afterwards
    assert y.sum().item() == 4


def test_autocast_cuda_dtypes():
    a = vt.randn(8, 8, device="cuda")
    with vt.autocast("cuda", dtype=vt.float16):
        assert (a @ a).dtype == vt.float16
        assert vt.softmax(a @ a, dim=-1).dtype == vt.float32
