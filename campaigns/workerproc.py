"""Starting and stopping Celery worker processes (the CLI's `worker`, the demo, the tests and
the benchmark). Only command lines here: the Celery app lives in `workers/`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import IO, Mapping


def worker_argv(index: int, *, queue: str, pool: str = "solo", concurrency: int = 1,
                loglevel: str = "WARNING") -> list[str]:
    """One Celery worker process. `-P solo` per core was about twice prefork's rate on two
    cores here (PERF-NOTES); gossip, mingle and heartbeats are not needed."""
    return [sys.executable, "-m", "celery", "-A", "workers", "worker", "-P", pool,
            "-c", str(concurrency), "-n", f"campaigns{index}-{os.getpid()}@%h", "-Q", queue,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", loglevel]


class WorkerGroup:
    """N worker processes, each in its own process group so a kill takes its children."""

    def __init__(self, count: int, *, queue: str, env: Mapping[str, str] | None = None,
                 pool: str = "solo", concurrency: int = 1, loglevel: str = "WARNING",
                 log: IO[bytes] | IO[str] | None = None, quiet: bool = True) -> None:
        self.count, self.queue, self.pool, self.concurrency = count, queue, pool, concurrency
        self.loglevel = loglevel
        # output to `log`, else discarded (quiet) or inherited from this process
        self.log = log if log is not None else (subprocess.DEVNULL if quiet else None)
        self.env = dict(os.environ if env is None else env)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> "WorkerGroup":
        for i in range(self.count):
            self.procs.append(subprocess.Popen(
                worker_argv(i, queue=self.queue, pool=self.pool, concurrency=self.concurrency,
                            loglevel=self.loglevel),
                env=self.env, stdout=self.log, stderr=self.log, start_new_session=True))
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def stop(self, timeout_s: float = 15.0) -> None:
        """Warm shutdown (SIGTERM: finish the current task), then SIGKILL after the timeout."""
        self.kill(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        self.kill(signal.SIGKILL)
        for proc in self.procs:
            proc.wait()
        self.procs.clear()

    def wait(self) -> int:
        codes = [proc.wait() for proc in self.procs]
        return max(codes, default=0)

    def __enter__(self) -> "WorkerGroup":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
