"""Real parts only: a real Redis, real Celery worker processes, a real SMTP server on
127.0.0.1, SQLite or PostgreSQL (TEST_DATABASE_URL). A missing service skips locally and
fails under CI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
from sqlalchemy import create_engine, text

from campaigns.context import Context, open_context
from campaigns.settings import load_settings
from campaigns.cli.sink import Rule, ScriptedSink
from campaigns.workerproc import WorkerGroup

CI = bool(os.environ.get("CI"))
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


def need(service: str, exc: Exception) -> None:
    if CI:
        raise exc
    pytest.skip(f"{service} not available: {exc}")


def reset_database(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    if not DATABASE_URL:
        return f"sqlite:///{tmp_path / 'campaigns.db'}"
    try:
        reset_database(DATABASE_URL)
    except Exception as exc:  # noqa: BLE001 - any connection failure
        need("PostgreSQL", exc)
    return DATABASE_URL


UNIT_REDIS_URL = "redis://127.0.0.1:6379/12"   # the limiter's own tests, no workers


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """A clean Redis database for tests of the Redis-backed pieces (limiter, throttling)."""
    conn = redis.Redis.from_url(UNIT_REDIS_URL, socket_timeout=5)
    try:
        conn.flushdb()
    except redis.RedisError as exc:
        need("Redis", exc)
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture
def redis_url() -> str:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
        client.flushdb()
    except redis.RedisError as exc:
        need("Redis", exc)
    return REDIS_URL


def _enqueue_factory(env: dict[str, str]) -> Any:
    """The Celery enqueue of workers/cli.py, for the project whose environment this is."""
    def factory() -> Any:
        from campaigns.context import broker_url
        from workers import dispatch   # first import: workers.app reads the (patched) environment
        settings = load_settings(env)
        if dispatch.app.conf.broker_url != broker_url(settings):
            raise AssertionError("in-process CLI: the Celery app of this test process uses "
                                 f"{dispatch.app.conf.broker_url}; use project.cli(..., process=True)")

        def enqueue(ids: Any, countdown: float | None = None, priority: str = "bulk") -> None:
            saved, dispatch.settings = dispatch.settings, settings   # this project's queue names
            try:
                dispatch.enqueue(ids, countdown, priority)
            finally:
                dispatch.settings = saved
        return enqueue
    return factory


def run_cli_in_process(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`campaigns ARGS` run by typer's CliRunner in this process, with `env` as os.environ
    (the clock, settings and paths read it) and `cwd`; the contexts the command opened are
    closed after it, and this process's render limits restored."""
    import traceback

    from typer.testing import CliRunner

    import campaigns.context as context_module
    from campaigns import cli
    from campaigns.cli import common
    from campaigns.content import render_limits

    opened: list[Context] = []
    real_open = context_module.open_context

    def open_context(*a: Any, **kw: Any) -> Context:
        c = real_open(*a, **kw)
        opened.append(c)
        return c

    full_env: dict[str, str | None] = {k: None for k in os.environ if k not in env}
    full_env.update(env)
    saved_factory, saved_limits, saved_cwd = common._enqueue_factory, render_limits.current_limits(), os.getcwd()
    context_module.open_context = open_context   # type: ignore[assignment]
    cli.set_enqueue(_enqueue_factory(env))
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli.app, args, env=full_env, prog_name="campaigns")
    finally:
        os.chdir(saved_cwd)
        context_module.open_context = real_open   # type: ignore[assignment]
        common._enqueue_factory = saved_factory
        render_limits.configure_limits(saved_limits)
        for c in opened:
            redis_client = c._parts.get("redis")
            if redis_client is not None:
                redis_client.close()
            c.close_sender()
            c.db.dispose()
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["campaigns", *args], result.exit_code, result.stdout, stderr)


@dataclass
class Project:
    """One isolated installation: its data dir, config, database and a sink as its relay."""
    root: Path
    sink: ScriptedSink
    database_url: str
    redis_url: str
    sending: dict[str, Any] = field(default_factory=dict)
    relay_extra: str = ""
    bounces: dict[str, Any] = field(default_factory=dict)   # the [bounces] table
    extra_toml: str = ""                                     # appended to campaigns.toml
    extra_env: dict[str, str] = field(default_factory=dict)  # for every process started
    groups: list[WorkerGroup] = field(default_factory=list)
    clock_offset_s: float = 0.0   # the workers' injected clock (daily caps, warm-up days)
    _ctx: Context | None = None

    def write_config(self) -> None:
        sending = {"retry_base_s": 0.3, "max_attempts": 3, "lease_s": 4,
                   "visibility_timeout_s": 6, **self.sending}
        lines = ['default_relay = "sink"', 'unsubscribe_url = "https://news.example.test/u/"',
                 "", "[sending]"] + [f"{k} = {json.dumps(v)}" for k, v in sending.items()]
        lines += ["", "[relays.sink]", 'kind = "smtp"', 'host = "127.0.0.1"',
                  f"port = {self.sink.port}", 'security = "none"', "timeout_s = 10",
                  self.relay_extra]
        if self.bounces:
            flat = {k: v for k, v in self.bounces.items() if not isinstance(v, dict)}
            lines += ["", "[bounces]"] + [f"{k} = {json.dumps(v)}" for k, v in flat.items()]
            for name, table in self.bounces.items():
                if isinstance(table, dict):
                    lines += ["", f"[bounces.{name}]"]
                    lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
        lines += ["", self.extra_toml]
        (self.root / "campaigns.toml").write_text("\n".join(lines) + "\n")
        self._ctx = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
        env.update(CAMPAIGNS_DATA_DIR=str(self.root / "data"),
                   CAMPAIGNS_CONFIG=str(self.root / "campaigns.toml"),
                   CAMPAIGNS_DATABASE_URL=self.database_url, CAMPAIGNS_REDIS_URL=self.redis_url)
        if self.clock_offset_s:
            env["CAMPAIGNS_CLOCK_OFFSET_S"] = str(self.clock_offset_s)
        env.update(self.extra_env)
        return env

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = open_context(load_settings(self.env))
        return self._ctx

    def cli(self, *args: str, check: bool = True, timeout: float = 120,
            process: bool | None = None) -> subprocess.CompletedProcess[str]:
        """`campaigns ARGS`. A call that must succeed (`check`) runs in this process (typer's
        runner, the project's environment, Celery's enqueue as workers/cli.py plugs it in):
        a second saved on each. A call whose exit code and stderr the test reads
        (`check=False`), or `process=True`, runs the real command in a subprocess."""
        if process is None:
            process = not check
        if process:
            proc = subprocess.run([sys.executable, "-m", "workers.cli", *args], env=self.env,
                                  capture_output=True, text=True, timeout=timeout, cwd=self.root)
        else:
            proc = run_cli_in_process(list(args), self.env, self.root)
        if check and proc.returncode != 0:
            raise AssertionError(f"campaigns {' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def status(self, name: str) -> dict[str, Any]:
        from campaigns import lifecycle
        return lifecycle.counts(self.ctx.db, name)

    def workers(self, n: int = 2) -> WorkerGroup:
        log = open(self.root / f"workers-{len(self.groups)}.log", "ab")
        group = WorkerGroup(n, queue=self.ctx.settings.worker_queues, env=self.env, loglevel="INFO", log=log).start()
        self.groups.append(group)
        return group

    def wait_status(self, name: str, statuses: tuple[str, ...] = ("finished",),
                    timeout_s: float = 90) -> dict[str, Any]:
        """Bounded wait; runs the ledger upkeep itself like `campaigns status` does."""
        from campaigns import lifecycle
        deadline = time.monotonic() + timeout_s
        while True:
            lifecycle.maintenance(self.ctx.db)
            snap = self.status(name)
            if snap["status"] in statuses or time.monotonic() > deadline:
                return snap
            time.sleep(0.2)

    def close(self) -> None:
        for group in self.groups:   # the test is over: no warm shutdown to wait for
            group.kill(signal.SIGKILL)
            for proc in group.procs:
                proc.wait()
            group.procs.clear()
        if self._ctx is not None:
            self._ctx.db.dispose()


@pytest.fixture
def sink() -> Iterator[ScriptedSink]:
    rules = [Rule(pattern=r"^bounce", code=550, text="5.1.1 User unknown"),
             Rule(pattern=r"^defer", code=451, text="4.3.0 Temporary local problem", times=1)]
    with ScriptedSink(rules=rules) as s:
        yield s


@pytest.fixture
def project(tmp_path: Path, sink: ScriptedSink, database_url: str, redis_url: str) -> Iterator[Project]:
    p = Project(root=tmp_path, sink=sink, database_url=database_url, redis_url=redis_url)
    p.write_config()
    yield p
    p.close()
