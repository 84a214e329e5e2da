"""Issue 11: relays as an operator meets them: TLS mode mismatches named with their fix
(item 13), secrets resolved only when a relay is used or checked (item 10)."""
from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from campaigns.cli.sink import ScriptedSink
from tests.helpers import make_campaign, write_csv

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def implicit_tls_sink(server_tls: ssl.SSLContext) -> Iterator[ScriptedSink]:
    with ScriptedSink(tls_context=server_tls, implicit_tls=True) as sink:
        yield sink


@pytest.fixture
def plain_sink() -> Iterator[ScriptedSink]:
    with ScriptedSink() as sink:
        yield sink


def campaigns(tmp_path: Path, toml: str, *args: str,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI on a config of its own (no database or Redis needed for relays commands)."""
    (tmp_path / "campaigns.toml").write_text(toml)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    run_env.update(CAMPAIGNS_DATA_DIR=str(tmp_path / "data"),
                   CAMPAIGNS_CONFIG=str(tmp_path / "campaigns.toml"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "workers.cli", *args], env=run_env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=50)


def relay_toml(port: int, security: str, timeout_s: float = 30) -> str:
    return (f'[relays.mail]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "{security}"\n'
            f"timeout_s = {timeout_s}\n")


# --- item 13: TLS mode mismatches -----------------------------------------------------------

@pytest.mark.parametrize("security", ["starttls", "none"])
def test_starttls_against_an_implicit_tls_port_names_the_fix(
        security: str, implicit_tls_sink: ScriptedSink, tmp_path: Path) -> None:
    # the server waits for a TLS ClientHello and never greets: found after the greeting
    # timeout (10 s), not the configured 30 s times each reconnect
    proc = campaigns(tmp_path, relay_toml(implicit_tls_sink.port, security), "relays", "check", "mail")
    assert proc.returncode == 1
    assert (f"no SMTP greeting from 127.0.0.1:{implicit_tls_sink.port} within 10 s: is this an "
            'implicit-TLS port (465)? use security = "tls"') in proc.stderr
    assert "timed out" not in proc.stderr


def test_implicit_tls_against_a_plain_port_names_the_fix(plain_sink: ScriptedSink,
                                                         tmp_path: Path) -> None:
    proc = campaigns(tmp_path, relay_toml(plain_sink.port, "tls"), "relays", "check", "mail")
    assert proc.returncode == 1
    assert "the server answered in plain text" in proc.stderr
    assert 'use security = "starttls" there; security = "tls" is for implicit-TLS ports' in proc.stderr


def test_matching_modes_still_pass(implicit_tls_sink: ScriptedSink, plain_sink: ScriptedSink,
                                   tmp_path: Path) -> None:
    toml = relay_toml(implicit_tls_sink.port, "tls") + "tls_verify = false\n"
    assert "is ready" in campaigns(tmp_path, toml, "relays", "check", "mail").stdout
    assert "is ready" in campaigns(tmp_path, relay_toml(plain_sink.port, "none"),
                                   "relays", "check", "mail").stdout


# --- item 10: a relay's secret is resolved when the relay is used or checked ----------------

UNSET = "CAMPAIGNS_TEST_SPARE_PASSWORD"
SPARE = (f'[relays.spare]\nhost = "127.0.0.1"\nport = 1\nusername = "spare@shop.test"\n'
         f'password_env = "{UNSET}"\n')


def test_an_unused_relay_with_an_unset_password_env_blocks_nothing(project: Any) -> None:
    assert UNSET not in project.env
    project.extra_toml = SPARE
    project.write_config()
    csv = write_csv(project.root / "c.csv", [("anna@example.test", "Anna", "C1")])
    imported = project.cli("contacts", "import", str(csv), "--list", "clienti").stdout
    assert "1 imported" in imported
    listing = project.cli("relays", "list").stdout
    assert f'"password": "password_env {UNSET} not set"' in listing
    check = project.cli("relays", "check", "spare", check=False)
    assert check.returncode == 1
    assert (f"[relays.spare]: password_env names {UNSET}, which is not set; expected the name "
            "of an environment variable holding the secret") in check.stderr
    assert "is ready" in project.cli("relays", "check", "sink").stdout   # the used relay works


def test_a_campaign_through_a_relay_with_an_unset_secret_pauses_saying_why(project: Any) -> None:
    project.extra_toml = SPARE
    project.write_config()
    make_campaign(project, "spare", 3, relay="spare")
    project.workers(1)
    project.cli("launch", "spare")
    snap = project.wait_status("spare", ("paused",), timeout_s=30)
    assert snap["status"] == "paused"
    assert f"password_env names {UNSET}, which is not set" in (snap["reason"] or "")
    assert snap["counts"]["queued"] == 3 and not project.sink.received
