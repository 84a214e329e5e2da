"""Debian packages a test needs (an independent client or server), installed on first use
when missing (CI runs as root). `apt-get update` only when the first install fails (stale or
missing package lists)."""
from __future__ import annotations

import os
import shutil
import subprocess


def find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/local/sbin/{binary}", f"/usr/bin/{binary}")
         if os.access(p, os.X_OK)), None)


def ensure(binary: str, package: str) -> str:
    """The path of `binary`, installing Debian's `package` when it is missing; RuntimeError
    saying why when that cannot be done."""
    found = find(binary)
    if found:
        return found
    if not shutil.which("apt-get"):
        raise RuntimeError(f"{binary} is not installed and apt-get is missing: install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]

    def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL, check=False)

    done = run(install)
    if done.returncode != 0:
        update = run(["apt-get", "update", "-qq"])
        if update.returncode != 0:
            raise RuntimeError(f"{binary} is not installed; `{' '.join(install)}` failed and "
                               f"`apt-get update -qq` failed (exit {update.returncode}): "
                               f"{update.stderr.strip()[-800:]}")
        done = run(install)
    found = find(binary)
    if not found:
        raise RuntimeError(f"{binary} is not installed and `{' '.join(install)}` failed "
                           f"(exit {done.returncode}, running as uid {os.geteuid()}): "
                           f"{(done.stderr or done.stdout).strip()[-800:]}")
    return found
