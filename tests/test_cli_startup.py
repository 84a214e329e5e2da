"""The CLI starts without its heavy dependencies (issue 11 item 17): `--help` imports no
Celery, SQLAlchemy, Redis client, boto3, httpx or Starlette, and a command run on a database
already at the newest revision does not import Alembic. Behaviour, not timing: what a
process has in sys.modules after the command."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HEAVY = ("celery", "kombu", "sqlalchemy", "alembic", "redis", "boto3", "botocore", "httpx",
         "starlette", "uvicorn", "jinja2", "email_validator", "aiosmtpd")

PROBE = """
import json, sys
from workers.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def _loaded(tmp_path: Path, *args: str, database_url: str | None = None) -> set[str]:
    """Top-level packages imported by a process that ran `campaigns ARGS`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGNS_")}
    env["CAMPAIGNS_DATA_DIR"] = str(tmp_path / "data")
    if database_url:
        env["CAMPAIGNS_DATABASE_URL"] = database_url
    env["COLUMNS"] = "100"
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_importing_the_console_script_loads_no_heavy_dependency(tmp_path: Path) -> None:
    loaded = _loaded(tmp_path)   # no arguments: the import only (and the usage text)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_help_texts_load_no_heavy_dependency(tmp_path: Path) -> None:
    for args in (["--help"], ["status", "--help"], ["contacts", "import", "--help"],
                 ["rates", "--help"], ["bounces", "report", "--help"], ["api", "--help"]):
        loaded = _loaded(tmp_path, *args)
        assert not loaded & set(HEAVY), (args, sorted(loaded & set(HEAVY)))
    assert not (tmp_path / "data" / "campaigns.db").exists(), "--help opened the database"


def test_a_read_on_an_up_to_date_database_skips_alembic(tmp_path: Path, database_url: str) -> None:
    first = _loaded(tmp_path, "list", database_url=database_url)   # creates the schema: Alembic
    assert "alembic" in first
    again = _loaded(tmp_path, "list", database_url=database_url)   # at head: one query
    assert "alembic" not in again and "celery" not in again
    assert "sqlalchemy" in again


def test_the_head_read_from_the_files_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from campaigns.db import MIGRATIONS, head_revision
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert head_revision() == ScriptDirectory.from_config(cfg).get_current_head()
