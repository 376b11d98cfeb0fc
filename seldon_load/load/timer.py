"""A precise sleep for the engine's loop: wake at an absolute time, not up to a millisecond late."""

from __future__ import annotations

import ctypes
import os
import sys
from time import perf_counter

import gevent
from greenlet import getcurrent


class TimerFd:
    """Sleep until an absolute ``perf_counter`` time (CLOCK_MONOTONIC on Linux) with
    microsecond precision: libev's epoll backend waits in whole milliseconds rounded up, so
    ``gevent.sleep`` wakes 0-1 ms late, which would show as send lag. A timerfd armed at the
    absolute due time wakes the loop on time at the cost of two cheap system calls."""

    _CLOCK_MONOTONIC = 1
    _TFD_TIMER_ABSTIME = 1

    class _Itimerspec(ctypes.Structure):
        _fields_ = [("it_interval", ctypes.c_long * 2), ("it_value", ctypes.c_long * 2)]

    def __init__(self, hub) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._settime = libc.timerfd_settime
        self._settime.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)
        fd = libc.timerfd_create(self._CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        self._spec = self._Itimerspec()
        self._spec_ref = ctypes.byref(self._spec)
        self._value = self._spec.it_value
        self._hub = hub
        self._watcher = hub.loop.io(fd, 1)

    def sleep_until(self, due: float) -> None:
        sec = int(due)
        value = self._value
        value[0] = sec
        value[1] = int((due - sec) * 1e9)
        if self._settime(self.fd, self._TFD_TIMER_ABSTIME, self._spec_ref, None) != 0:
            gevent.sleep(max(0.0, due - perf_counter()))
            return
        watcher = self._watcher
        while True:
            watcher.start(getcurrent().switch)
            try:
                self._hub.switch()
            finally:
                watcher.stop()
            try:
                os.read(self.fd, 8)
                return
            except BlockingIOError:
                continue  # woken by something else: the timer is still armed, wait on

    def close(self) -> None:
        self._watcher.close()
        os.close(self.fd)


def precise_sleeper(hub) -> TimerFd | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return TimerFd(hub)
    except (OSError, AttributeError):
        return None
