"""Encoded answers kept by (URL, ETag): an answer the log position determines is the same
bytes for every client until the position moves, so a hundred clients polling one page
cost one query and one encoding per change. Least recently used first out, within a byte
budget; shared by the worker threads."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

BUDGET = 64 * 1024 * 1024


@dataclass(frozen=True)
class Encoded:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class AnswerCache:
    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self._size = 0
        self._answers: OrderedDict[tuple[str, str], Encoded] = OrderedDict()
        self._lock = threading.Lock()
        self._making: dict[tuple[str, str], threading.Event] = {}

    def answer(self, key: tuple[str, str], make: Callable[[], Encoded]) -> Encoded:
        """The cached answer, else `make()`'s, kept. Requests that miss together wait for
        the first one's answer instead of each making it (after a change, every polling
        client misses at once)."""
        while True:
            found = self.get(key)
            if found is not None:
                return found
            with self._lock:
                making = self._making.get(key)
                if making is None:
                    making = self._making[key] = threading.Event()
                    break
            making.wait(5.0)  # (its maker failed or took too long: make it here)
            if not making.is_set():
                return make()
        try:
            found = make()
            self.put(key, found)
            return found
        finally:
            with self._lock:
                del self._making[key]
            making.set()

    def get(self, key: tuple[str, str]) -> Encoded | None:
        with self._lock:
            found = self._answers.get(key)
            if found is not None:
                self._answers.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], answer: Encoded) -> None:
        if len(answer.body) > self.budget // 4:
            return
        with self._lock:
            old = self._answers.pop(key, None)
            self._size += len(answer.body) - (len(old.body) if old else 0)
            self._answers[key] = answer
            while self._size > self.budget:
                _, evicted = self._answers.popitem(last=False)
                self._size -= len(evicted.body)
