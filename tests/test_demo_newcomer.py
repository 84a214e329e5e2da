"""A newcomer's first hour (issue 11 item 14): after `make demo` the demo says where its data
dir is and what to try next, the commands it suggests work as printed, and its progress
line is not cut at 80 columns."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from rich.cells import cell_len


class Demo(NamedTuple):
    root: Path
    command: list[str]
    stdout: str


def _console_script() -> list[str]:
    """The console script beside this interpreter (what `make demo` runs), else the module."""
    script = Path(sys.executable).parent / "campaigns"
    return [str(script)] if script.exists() else [sys.executable, "-m", "workers.cli"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """One `campaigns demo` run in an 80-column terminal, as `make demo` starts it."""
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env.update(CAMPAIGNS_DATA_DIR=str(root / "d"), COLUMNS="80")
    command = _console_script()
    proc = subprocess.run([*command, "demo", "--count", "300"], env=env, cwd=root,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Demo(root, command, proc.stdout)


def test_the_demo_names_its_data_dir_and_next_commands_that_work(demo: Demo) -> None:
    tmp_path, command, out = demo
    demo_dir = (tmp_path / "d" / "demo").resolve()
    assert f"demo data dir {demo_dir}" in out
    lines = out.splitlines()
    export = next(line for line in lines if line.strip().startswith("export CAMPAIGNS_DATA_DIR="))
    suggested = dict(word.split("=", 1) for word in shlex.split(export)[1:])
    assert suggested["CAMPAIGNS_DATA_DIR"] == str(demo_dir)
    cli = command[0] if len(command) == 1 else "campaigns"
    for args in ("status natale-2026", "bounces report natale-2026", "relays list"):
        assert f"  {shlex.quote(cli)} {args}" in lines, (args, out)

    # the suggested environment reaches the demo's campaign, its bounces and its relay
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")} | suggested
    run = [sys.executable, "-m", "workers.cli"]
    status = subprocess.run([*run, "status", "natale-2026"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert "campaign 'natale-2026': finished" in status.stdout, status.stdout + status.stderr
    bounces = subprocess.run([*run, "bounces", "report", "natale-2026"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert "hard" in bounces.stdout, bounces.stdout + bounces.stderr
    relays = subprocess.run([*run, "relays", "list"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert '"name": "sink"' in relays.stdout, relays.stdout + relays.stderr


def test_the_demo_progress_is_not_cut_at_80_columns(demo: Demo) -> None:
    lines = demo.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("launched:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("campaign 'natale-2026':"))
    progress = lines[start + 1:end]
    assert progress, demo.stdout
    assert all(cell_len(line) <= 80 for line in progress), progress
    assert not any("…" in line for line in progress), progress   # rich's mark of a cut
    text = " ".join(progress)
    assert "natale-2026" in text and "296/296" in text and "ETA" in text, progress
