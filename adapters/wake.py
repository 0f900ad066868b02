"""Being told that another process wrote to the SQLite file, instead of polling for it.

Linux inotify (through ctypes: the standard library has no binding) reports writes to
the database's `-wal` file; the reactor then checks `PRAGMA data_version`. Where inotify
is missing the reactor falls back to polling.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct

IN_MODIFY = 0x00000002
IN_CREATE = 0x00000100
IN_MOVED_TO = 0x00000080
_EVENT_HEADER = struct.Struct("iIII")


class FileWriteWatcher:
    """Sets `event` whenever a file named `name` in `directory` is written."""

    def __init__(self, directory: str, name: str, event: asyncio.Event) -> None:
        self.directory, self.name, self.event = directory, name.encode(), event
        self._fd: int | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> bool:
        """False when inotify is not available here."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                return False
            mask = IN_MODIFY | IN_CREATE | IN_MOVED_TO
            if libc.inotify_add_watch(fd, self.directory.encode(), mask) < 0:
                os.close(fd)
                return False
        except (OSError, AttributeError):
            return False
        self._fd = fd
        loop.add_reader(fd, self._readable, fd)
        return True

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT_HEADER.size <= len(data):
            _, _, _, length = _EVENT_HEADER.unpack_from(data, offset)
            start = offset + _EVENT_HEADER.size
            if data[start : start + length].rstrip(b"\0") == self.name:
                self.event.set()
            offset = start + length

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._fd is not None:
            loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
