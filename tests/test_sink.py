"""The scripted sink itself: rules, storage, concurrency and the command line."""
from __future__ import annotations

import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from campaigns.cli.sink import DEMO_RULES, Rule, ScriptedSink, parse_rule

pytestmark = pytest.mark.timeout(20)


def client(sink: ScriptedSink) -> smtplib.SMTP:
    conn = smtplib.SMTP(sink.host, sink.port, local_hostname="client.test", timeout=5)
    conn.ehlo()
    return conn


def test_demo_rules_bounce_always_defer_once(tmp_path: Path) -> None:
    with ScriptedSink(rules=DEMO_RULES, store_dir=tmp_path) as sink:
        conn = client(sink)
        for _ in range(2):
            assert conn.mail("a@example.org")[0] == 250
            assert conn.rcpt("bounce1@example.com") == (550, b"5.1.1 User unknown")
            conn.rset()
        assert conn.mail("a@example.org")[0] == 250
        assert conn.rcpt("defer1@example.com")[0] == 451
        assert conn.rcpt("defer1@example.com")[0] == 250      # second attempt accepted
        assert conn.rcpt("ok@example.com")[0] == 250
        code, reply = conn.data(b"Subject: x\r\n\r\nbody\r\n")
        assert code == 250 and reply.startswith(b"2.0.0 Ok: queued as")
        conn.quit()
        assert sink.counts() == {"defer1@example.com": 1, "ok@example.com": 1}
        assert sink.attempts("bounce1@example.com") == 2 and sink.attempts("defer1@example.com") == 2
        assert [p.name for p in tmp_path.iterdir()] == ["1.eml"]   # one message, two recipients
        assert (tmp_path / "1.eml").read_bytes() == b"Subject: x\r\n\r\nbody\r\n"


def test_421_closes_the_connection() -> None:
    with ScriptedSink(rules=[Rule("^x", 421, "4.3.2 Shutting down")]) as sink:
        conn = client(sink)
        conn.mail("a@example.org")
        assert conn.rcpt("x@example.com")[0] == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            conn.noop()


def test_concurrent_connections() -> None:
    with ScriptedSink(delay_s=0.05) as sink:
        def send(i: int) -> None:
            conn = client(sink)
            for j in range(5):
                conn.sendmail("a@example.org", [f"u{i}-{j}@example.com"], b"Subject: x\r\n\r\nhi\r\n")
            conn.quit()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sink.wait_for(40, timeout_s=5)
        assert sink.connections == 8
        # 8 connections x 5 messages x 50 ms delay would take 2 s one after the other
        assert time.monotonic() - started < 1.5


def test_wait_for_is_bounded() -> None:
    with ScriptedSink() as sink:
        started = time.monotonic()
        assert not sink.wait_for(1, timeout_s=0.1)
        assert time.monotonic() - started < 1


def test_parse_rule() -> None:
    rule = parse_rule("^defer=451 4.3.0 Try again later,times=2")
    assert (rule.pattern, rule.code, rule.text, rule.times, rule.stage) == ("^defer", 451, "4.3.0 Try again later", 2, "rcpt")
    rule = parse_rule("a=b=554 5.7.1 No, thanks,stage=data,disconnect")
    assert (rule.pattern, rule.text, rule.stage, rule.disconnect) == ("a=b", "5.7.1 No, thanks", "data", True)
    with pytest.raises(ValueError):
        parse_rule("no code here")


def test_command_line_runs_until_sigterm(tmp_path: Path) -> None:
    with subprocess.Popen(
            [sys.executable, "-m", "campaigns.cli.sink", "--port", "0", "--store", str(tmp_path),
             "--rule", "^bounce=550 5.1.1 User unknown"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _talk_then_stop(proc, tmp_path)


def _talk_then_stop(proc: subprocess.Popen[str], tmp_path: Path) -> None:
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("listening 127.0.0.1:")
        port = int(first.rsplit(":", 1)[1])
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as conn:
            assert conn.sendmail("a@example.org", ["ok@example.com", "bounce@example.com"],
                                 b"Subject: x\r\n\r\nhi\r\n") == {"bounce@example.com": (550, b"5.1.1 User unknown")}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert (tmp_path / "1.eml").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
