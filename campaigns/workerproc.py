"""Starting and stopping Celery worker processes (the CLI's `worker`, the demo, the tests and
the benchmark). Only command lines here: the Celery app lives in `workers/`."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from typing import IO, Callable, Mapping

#: `supervise` starts dead workers again at most this often per minute, then gives up
MAX_RESTARTS_PER_MIN = 5


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
            self.procs.append(self._spawn(i))
        return self

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            worker_argv(index, queue=self.queue, pool=self.pool, concurrency=self.concurrency,
                        loglevel=self.loglevel),
            env=self.env, stdout=self.log, stderr=self.log, start_new_session=True)

    def supervise(self, say: Callable[[str], None], *,
                  max_restarts: int = MAX_RESTARTS_PER_MIN, poll_s: float = 0.5) -> int:
        """Run until stopped (KeyboardInterrupt), starting again each worker process that
        exits, and saying so. More than `max_restarts` in a minute: the others are stopped
        and 1 returned, so a service manager (systemd Restart=on-failure) takes over."""
        restarts: deque[float] = deque()
        while True:
            time.sleep(poll_s)
            for i, proc in enumerate(self.procs):
                code = proc.poll()
                if code is None:
                    continue
                now = time.monotonic()
                while restarts and now - restarts[0] > 60:
                    restarts.popleft()
                how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                if len(restarts) >= max_restarts:
                    say(f"worker process {i} (pid {proc.pid}) died ({how}); {len(restarts)} "
                        "restarts in the last minute: giving up, stopping the others")
                    self.stop()
                    return 1
                restarts.append(now)
                self.procs[i] = self._spawn(i)
                say(f"worker process {i} (pid {proc.pid}) died ({how}); started again as "
                    f"pid {self.procs[i].pid}")

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
