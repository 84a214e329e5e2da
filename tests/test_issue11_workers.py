"""Issue 11: running workers as an operator meets them: configuration changes reach them
(item 9); `campaigns status` says why a campaign is slow or stuck (item 8); `campaigns worker`
starts a dead worker process again (item 11)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from campaigns.cli.sink import ScriptedSink
from tests.helpers import make_campaign

pytestmark = pytest.mark.timeout(120)

USER = "invoices@shop.test"


# --- item 9: a changed config file reaches running workers -----------------------------------

def test_a_fixed_relay_password_is_used_after_resume_without_restarting_workers(project: Any) -> None:
    with ScriptedSink(auth={USER: "the-right-one"}) as auth_sink:
        project.sink = auth_sink
        project.relay_extra = f'username = "{USER}"\npassword = "a-wrong-one"'
        project.write_config()
        make_campaign(project, "fixed", 5)
        group = project.workers(1)
        project.cli("launch", "fixed")
        snap = project.wait_status("fixed", ("paused",), timeout_s=30)
        assert snap["status"] == "paused" and "535" in (snap["reason"] or "")
        project.relay_extra = f'username = "{USER}"\npassword = "the-right-one"'
        project.write_config()
        project.cli("resume", "fixed")
        snap = project.wait_status("fixed", ("finished", "paused"), timeout_s=60)
        assert snap["status"] == "finished", snap
        assert snap["counts"]["sent"] == 5 and auth_sink.wait_for(5, timeout_s=10)
        assert all(proc.poll() is None for proc in group.procs)   # the same worker all along


# --- item 8: status says why -----------------------------------------------------------------

def why(project: Any, name: str) -> list[str]:
    return list(json.loads(project.cli("status", name, "--json").stdout)["why"])


def wait_why(project: Any, name: str, text: str, timeout_s: float = 40) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        lines = why(project, name)
        if any(text in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.5)


def test_status_says_when_no_worker_takes_tasks(project: Any) -> None:
    make_campaign(project, "first", 3)
    group = project.workers(1)
    project.cli("launch", "first")
    assert project.wait_status("first")["status"] == "finished"
    group.stop(timeout_s=5)
    make_campaign(project, "second", 3)
    project.cli("launch", "second")
    assert not [w for w in why(project, "second") if "no worker" in w]   # one took a task just now
    # the last task taken two minutes ago, as after two minutes without workers
    redis.Redis.from_url(project.redis_url).set("campaigns:last-task", f"{time.time() - 120:.3f}")
    lines = why(project, "second")
    assert any(w.startswith("no worker has taken a task for 1") for w in lines), lines
    text = project.cli("status", "second", "--once").stdout
    assert "why: no worker has taken a task for 1" in text and "queued=3" in text


def test_status_names_a_relay_whose_breaker_is_open(project: Any) -> None:
    project.extra_toml = "[breaker]\nfailures = 2\ncooldown_s = 300\n"
    project.write_config()
    project.sink.stop()                        # the relay cannot be reached
    make_campaign(project, "down", 5)
    project.workers(1)
    project.cli("launch", "down")
    lines = wait_why(project, "down", "circuit breaker")
    assert any(w.startswith("relay 'sink' circuit breaker open after") for w in lines), lines
    assert "why: relay 'sink' circuit breaker open" in project.cli("status", "down", "--once").stdout
    # item 11: a worker's warning names campaign, delivery and recipient domain
    logs = (project.root / "workers-0.log").read_text(errors="replace")
    assert re.search(r"campaign down, delivery \d+, to @example\.test: relay sink unavailable", logs)


def test_status_names_the_binding_limit_and_parked_messages(project: Any) -> None:
    make_campaign(project, "slow", 10)
    project.cli("rates", "set", "campaign:slow", "6/min")
    project.workers(1)
    project.cli("launch", "slow")
    lines = wait_why(project, "slow", "parked under campaign:slow")
    assert any(w.startswith("binding limit: campaign:slow at 0.1/s") for w in lines), lines
    assert any("messages parked under campaign:slow" in w for w in lines), lines
    project.cli("cancel", "slow")


# --- item 11: `campaigns worker` starts a dead worker process again ---------------------------

def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry))
    return out


def wait_for(check: Any, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return result


def test_campaigns_worker_starts_a_killed_worker_process_again(project: Any) -> None:
    log_path = project.root / "campaigns-worker.log"
    with open(log_path, "wb") as log:
        cli = subprocess.Popen([sys.executable, "-m", "workers.cli", "worker", "-c", "1"],
                               env=project.env, cwd=project.root, stdout=log, stderr=log)
    try:
        first = wait_for(lambda: children(cli.pid))
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        said = wait_for(lambda: "started again as pid" in log_path.read_text())
        text = log_path.read_text()
        assert said, text
        assert f"worker process 0 (pid {first[0]}) died (killed by SIGKILL); started again" in text
        assert cli.poll() is None
        make_campaign(project, "after", 5)
        project.cli("launch", "after")
        snap = project.wait_status("after", timeout_s=60)
        assert snap["status"] == "finished" and snap["counts"]["sent"] == 5
    finally:
        cli.send_signal(signal.SIGTERM)
        try:
            cli.wait(20)
        except subprocess.TimeoutExpired:
            cli.kill()
        for pid in children(cli.pid):
            os.kill(pid, signal.SIGKILL)
