"""A running `campaigns gateway` for tests: the real command in its own process, on free
ports, with a credential made through the CLI."""
from __future__ import annotations

import re
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PASSWORD = "correct horse battery staple"
_WHERE = re.compile(r"gateway: (submission \(STARTTLS\)|implicit TLS) on [\d.]+:(\d+)")


@dataclass
class Gateway:
    proc: subprocess.Popen[str]
    submission: int
    implicit: int
    cert: str
    lines: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tls(self) -> ssl.SSLContext:
        """A client context that trusts the gateway's self-signed certificate (only it)."""
        context = ssl.create_default_context(cafile=self.cert)
        return context

    def login(self, user: str = "erp", password: str = PASSWORD,
              implicit: bool = False) -> smtplib.SMTP:
        if implicit:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", self.implicit,
                                                  context=self.tls(), timeout=30)
        else:
            smtp = smtplib.SMTP("127.0.0.1", self.submission, timeout=30)
            smtp.starttls(context=self.tls())
        smtp.ehlo("erp.example.it")
        smtp.login(user, password)
        return smtp


def gateway_toml(extra: str = "") -> str:
    return ("\n[gateway]\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\n"
            "hostname = \"localhost\"\n" + extra)


def add_user(project: Any, name: str = "erp", *args: str) -> None:
    env = dict(project.env, GW_PASSWORD=PASSWORD)
    proc = subprocess.run([sys.executable, "-m", "workers.cli", "gateway", "users", "add", name,
                           "--password-env", "GW_PASSWORD", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd=project.root)
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr


def start_gateway(project: Any, timeout_s: float = 30) -> Gateway:
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "gateway"], env=project.env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=project.root, start_new_session=True)
    ports: dict[str, int] = {}
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while len(ports) < 2 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = _WHERE.search(line)
        if m:
            ports[m.group(1)] = int(m.group(2))
    if len(ports) < 2:
        proc.kill()
        raise AssertionError("the gateway did not start:\n" + "".join(lines))
    # keep reading its output so it never blocks on a full pipe
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    cert = str(Path(project.root / "data" / "tls" / "gateway-cert.pem"))
    return Gateway(proc, ports["submission (STARTTLS)"], ports["implicit TLS"], cert, lines)
