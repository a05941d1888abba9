"""Work handles, the per-group executor, and deadline polling.

Collectives of one group run in the order they were issued (the same order on every rank):
synchronous calls run on the caller's thread once earlier async work finished; ``async_op=True``
work runs on the group's worker thread (so DDP's bucket reductions proceed while backward runs).
Waiting polls nonblocking requests against a deadline, never a blocking MPI call.
"""
from __future__ import annotations

import collections
import os
import threading
import time

from .errors import CollectiveTimeout


def poll(test, deadline, on_slow=None, slow_at=None):
    """Spin, then yield, then sleep with backoff until ``test()`` or the deadline. False on timeout."""
    spins = 0
    nap = 20e-6
    # a worker thread (async collectives, DDP buckets) yields the GIL sooner: backward runs beside it
    pure = 200 if threading.current_thread() is threading.main_thread() else 16
    while True:
        if test():
            return True
        spins += 1
        if spins < pure:
            continue
        now = time.monotonic()
        if on_slow is not None and slow_at is not None and now >= slow_at:
            on_slow()
            on_slow = None
        if now >= deadline:
            return test()
        if spins < 2000:
            os.sched_yield()
        else:
            time.sleep(nap)
            nap = min(nap * 1.5, 2e-3)


class Work:
    """``async_op=True`` result: ``wait(timeout=None)``, ``is_completed()``, ``is_success()``, ``result()``."""

    def __init__(self, name, seq, group_name, fn=None, outputs=None):
        self.name = name
        self.seq = seq
        self.group_name = group_name
        self._fn = fn            # the collective body (run by the executor)
        self._outputs = [] if outputs is None else outputs
        self._done = threading.Event()
        self._exc = None
        self._poll = None        # p2p works complete by polling their handle instead

    def _run(self):
        try:
            self._fn()
        except BaseException as e:  # stored, re-raised in wait()
            self._exc = e
        finally:
            self._fn = None
            self._done.set()

    def is_completed(self) -> bool:
        if self._poll is not None and not self._done.is_set():
            try:
                if self._poll(False):
                    self._done.set()
            except BaseException as e:
                self._exc = e
                self._done.set()
        return self._done.is_set()

    def is_success(self) -> bool:
        return self.is_completed() and self._exc is None

    def exception(self):
        return self._exc

    def wait(self, timeout=None):
        """Block until done (``timeout`` seconds at most: then CollectiveTimeout). Re-raises the
        collective's error. Returns True like PyTorch."""
        if self._poll is not None and not self._done.is_set():
            try:
                self._poll(True, timeout)
            except BaseException as e:
                self._exc = e
            self._done.set()
        if not self._done.wait(None if timeout is None else float(timeout)):
            raise CollectiveTimeout(
                f"Work.wait: {self.name} (collective #{self.seq} of group {self.group_name!r}) did not finish "
                f"within {timeout} s; the collective keeps running until its own timeout",
                group=self.group_name, seq=self.seq, op=self.name, timeout=timeout)
        if self._exc is not None:
            raise self._exc
        return True

    def result(self):
        self.wait()
        return self._outputs

    def get_future(self):
        raise NotImplementedError("Work.get_future() is not supported; use wait() or is_completed()")

    def __repr__(self):
        st = "completed" if self._done.is_set() else "pending"
        return f"<Work {self.name} #{self.seq} group={self.group_name} {st}>"


class Executor:
    """Runs a group's collectives in issue order; async ones on one worker thread."""

    def __init__(self, name):
        self.name = name
        self._q = collections.deque()
        self._cv = threading.Condition()
        self._pending = 0
        self._thread = None
        self._closed = False

    def _worker(self):
        while True:
            with self._cv:
                while not self._q and not self._closed:
                    self._cv.wait()
                if self._closed and not self._q:
                    return
                w = self._q.popleft()
            w._run()
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()

    def submit(self, work: Work, async_op: bool):
        if async_op:
            with self._cv:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._worker, name=f"vt-coll-{self.name}", daemon=True)
                    self._thread.start()
                self._pending += 1
                self._q.append(work)
                self._cv.notify_all()
            return work
        # synchronous: earlier async work first (issue order is the same on every rank)
        with self._cv:
            while self._pending:
                self._cv.wait()
        work._run()
        if work._exc is not None:
            raise work._exc
        return None

    def run(self, fn):
        """A synchronous collective: after earlier async work (issue order is the same on every rank),
        on the caller's thread; its exception propagates as is."""
        with self._cv:
            while self._pending:
                self._cv.wait()
        fn()

    def drain(self, timeout=None):
        with self._cv:
            end = None if timeout is None else time.monotonic() + timeout
            while self._pending:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left)
        return True

    def close(self):
        with self._cv:
            self._closed = True
            self._cv.notify_all()
