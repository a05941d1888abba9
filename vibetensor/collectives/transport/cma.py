"""Cross-memory attach: ``process_vm_writev`` copies bytes straight into another process's memory,
one kernel copy with no shared staging buffer in between (MPI libraries use the same syscalls for
large messages on one host). Linux only, and it needs ptrace access to the peer (same user; a
container's seccomp profile or Yama may refuse it), so callers ``probe`` before relying on it.

Writes, not reads (``process_vm_readv``): measured on the 2-core VM (kernel 6.18), a peer's read of
a buffer made the owner's next write to it fault page by page (a 512 KiB in-place add: 18 -> 163 us),
while after a peer's write the owner's next add costs 28 us."""
from __future__ import annotations

import ctypes
import os
import sys


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_fn = None


def _writev():
    global _fn
    if _fn is None:
        _fn = False
        if sys.platform.startswith("linux"):
            try:
                f = ctypes.CDLL(None, use_errno=True).process_vm_writev
                f.restype = ctypes.c_ssize_t
                f.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.POINTER(_Iovec),
                              ctypes.c_ulong, ctypes.c_ulong]
                _fn = f
            except (OSError, AttributeError):
                pass
    return _fn or None


class Writer:
    """``write(pid, dst, src, n)``: copy ``n`` bytes at local address ``src`` to address ``dst`` of
    process ``pid``. The iovecs are made once, so a call costs one ctypes call (the GIL is released)."""

    def __init__(self):
        self.fn = _writev()
        self.loc, self.rem = _Iovec(), _Iovec()
        self._loc, self._rem = ctypes.byref(self.loc), ctypes.byref(self.rem)

    def write(self, pid, dst, src, n):
        while n > 0:
            self.loc.base, self.loc.len, self.rem.base, self.rem.len = src, n, dst, n
            got = self.fn(pid, self._loc, 1, self._rem, 1, 0)
            if got <= 0:
                err = ctypes.get_errno()
                raise OSError(err, f"process_vm_writev of {n} bytes to pid {pid} failed: {os.strerror(err)}")
            dst, src, n = dst + got, src + got, n - got

    def probe(self, pid, addr, value: int) -> bool:
        """Write the int64 ``value`` at ``addr`` of process ``pid`` (which must already hold it, so the
        probe changes nothing); True when the kernel lets us."""
        if self.fn is None:
            return False
        buf = ctypes.c_int64(value)
        try:
            self.write(pid, addr, ctypes.addressof(buf), 8)
        except OSError:
            return False
        return True
