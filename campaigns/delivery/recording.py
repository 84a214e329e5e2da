"""A worker's group commit of `sent` answers: written off the send path, together.

A message handed to the relay is final once the relay said 250; writing that down is not
needed before the next message is claimed. Each thread of a worker hands its `sent` answers
(of rows nobody follows: no event, no callback) to the process's `GroupRecorder`, which
writes whatever has gathered in one transaction every `interval_s`, or sooner when
`max_batch` are waiting. What a crash loses is rows left `sending`: the upkeep turns them
`in_doubt` when their lease runs out, exactly as for a crash between the relay's answer and
a write of its own, never a second copy. Every other answer (deferrals, bounces, failures,
followed rows) is written at once by the sender, since what comes next depends on it.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from campaigns.db import Database
from campaigns.ledger import sends as ledger

log = logging.getLogger(__name__)


class GroupRecorder:
    def __init__(self, db: Database, interval_s: float = 0.05, max_batch: int = 200) -> None:
        self.db, self.interval_s, self.max_batch = db, interval_s, max_batch
        self._waiting: list[dict[str, Any]] = []
        self._lock = threading.Lock()            # guards _waiting
        self._writing = threading.Lock()         # one write at a time, in order
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0

    def add(self, answer: dict[str, Any]) -> None:
        """An answer made by `ledger.sends.record_values`, written within `interval_s`."""
        with self._lock:
            self._waiting.append(answer)
            full = len(self._waiting) >= self.max_batch
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="group-recorder",
                                                daemon=True)
                self._thread.start()
        if full:
            self._wake.set()

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> bool:
        """Write what is waiting now. False when the database refused it: the answers stay
        for the next try (their rows may meanwhile have become `in_doubt`; the write still
        tells the truth then, as `record` does)."""
        with self._writing:
            with self._lock:
                answers, self._waiting = self._waiting, []
            if not answers:
                return True
            try:
                ledger.record_many(self.db, answers)
            except Exception:  # noqa: BLE001 - kept, tried again; the rows are safe as they are
                self._failures += 1
                if self._failures == 1 or self._failures % 100 == 0:
                    log.exception("writing %d sent answers failed (%d times so far); kept "
                                  "to try again", len(answers), self._failures)
                with self._lock:
                    self._waiting[:0] = answers
                return False
            self._failures = 0
            return True

    def close(self, attempts: int = 3) -> None:
        """Stop the writer thread and write what is left (a few tries: the process is
        going away)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:                 # a later `add` starts a writer again
            self._thread = None
            self._stop.clear()
        for _ in range(attempts):
            if self.flush():
                return
        log.error("%d sent answers could not be written: their rows end in_doubt",
                  self.waiting)
