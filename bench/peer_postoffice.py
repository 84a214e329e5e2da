"""The Python peer on our bench: django-post_office 3.x with its Celery integration.

`run_peer(db, port, count, workers)` sends `count` personalised copies of our bench's
newsletter (bench/mime_build.py's HTML and SUBJECT, two personalised fields) to the SMTP sink
listening on `port` and returns messages/s, timed like ours: from the first `send_many` call
to the last message recorded as sent.

How the peer is run, the way its README describes bulk sending with Celery:
- a venv of its own, made once and cached in .bench-venvs/postoffice (git-ignored):
  django, django-post_office 3.12, celery, redis, psycopg;
- a minimal Django project in a temporary folder: EMAIL_BACKEND = 'post_office.EmailBackend',
  POST_OFFICE = {'BACKENDS': {'default': Django's SMTP backend}, 'CELERY_ENABLED': True} with
  its defaults for BATCH_SIZE (100), THREADS_PER_PROCESS (5), MAX_RETRIES (0), LOG_LEVEL (2);
  database SQLite (a temporary file, WAL) or PostgreSQL (database campaigns_bench_peer,
  created and dropped here); Celery broker Redis db 10 (flushed);
- an EmailTemplate with our subject, HTML and a text part derived from it, queued with
  `mail.send_many` in calls of 1,000 (render_on_delivery=True with a per-recipient context:
  the content is rendered at delivery, as ours is); each call's commit fires post_office's
  `send_queued_mail` Celery task;
- `workers` Celery worker processes (`-P solo`, the flags ours use). post_office's task drains
  the whole queue under a file lock, so one worker sends at a time, batches of 100 spread
  over 5 threads (one SMTP connection each, closed after the batch). If nothing moves for
  2 s while messages are queued, the bench publishes `send_queued_mail` again (what the
  periodic beat entry the README recommends would do; counted as `kicks`).

Run alone (the sink must be listening):  .venv/bin/python bench/peer_postoffice.py PORT [N] [sqlite|postgresql]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".bench-venvs" / "postoffice"
PY = VENV / "bin" / "python"
REQUIREMENTS = ["django>=4.2,<6", "django-post_office==3.12.*", "celery[redis]>=5.3",
                "psycopg[binary]>=3.1"]
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432")
PG_DB = "campaigns_bench_peer"
REDIS_URL = os.environ.get("BENCH_PEER_REDIS_URL", "redis://127.0.0.1:6379/10")


def ensure_venv() -> Path:
    """The peer's venv, made on first use; a marker file names what was installed."""
    marker = VENV / ".bench-requirements"
    if marker.exists() and marker.read_text() == "\n".join(REQUIREMENTS):
        return PY
    shutil.rmtree(VENV, ignore_errors=True)
    VENV.parent.mkdir(exist_ok=True)
    print(f"creating {VENV.relative_to(ROOT)} (django-post_office, celery, redis)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
    marker.write_text("\n".join(REQUIREMENTS))
    return PY


SETTINGS = """\
import os
SECRET_KEY = "bench"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "post_office"]
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}]
if os.environ["PEER_DB"] == "postgresql":
    DATABASES = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "%(pg_db)s",
                             "HOST": "127.0.0.1", "PORT": 5432, "USER": "postgres"}}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["PEER_SQLITE"],
                             "OPTIONS": {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"}}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
EMAIL_BACKEND = "post_office.EmailBackend"
EMAIL_HOST = "127.0.0.1"
EMAIL_PORT = int(os.environ["PEER_SMTP_PORT"])
DEFAULT_FROM_EMAIL = "Bottega Rossi <news@bench.test>"
POST_OFFICE = {
    "BACKENDS": {"default": "django.core.mail.backends.smtp.EmailBackend"},
    "CELERY_ENABLED": True,
    "LOCK_FILE_NAME": os.path.join(os.environ["PEER_DIR"], "post_office"),
    # the documented defaults, spelled out: BATCH_SIZE 100, THREADS_PER_PROCESS 5, MAX_RETRIES 0
    "BATCH_SIZE": 100, "THREADS_PER_PROCESS": 5, "MAX_RETRIES": 0,
}
CELERY_BROKER_URL = os.environ["PEER_REDIS_URL"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "loggers": {"post_office": {"level": "WARNING"}}}
"""

CELERY_APP = """\
import os
from celery import Celery
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peerproj.settings")
app = Celery("peerproj")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""

# Runs in the peer's venv, in the project folder: template, warm-up, send_many, wait.
DRIVER = """\
import json, os, re, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peerproj.settings")
django.setup()
from post_office import mail
from post_office.models import Email, EmailTemplate, STATUS
from post_office.tasks import send_queued_mail

spec = json.load(sys.stdin)
html = spec["html"].replace("{{ campaign.name }}", "{{ campaign_name }}")
text = re.sub(r"\\n\\s*\\n+", "\\n\\n", re.sub(r"<[^>]+>", "", html.split("<body", 1)[1]))
EmailTemplate.objects.create(name="natale", subject=spec["subject"], content=text, html_content=html)

def queue(prefix, n, chunk=1000):
    for start in range(0, n, chunk):
        mail.send_many([{
            "recipients": [f"{prefix}{i}@bench.test"], "template": "natale", "render_on_delivery": True,
            "context": {"contact": {"first_name": f"Nome{i}", "city": "Forl\\u00ec"},
                        "campaign_name": "bench", "unsubscribe_url": f"https://bench.test/u/{i}"},
        } for i in range(start, min(n, start + chunk))])

def wait(prefix, n, timeout):
    deadline, last, last_change, kicks = time.monotonic() + timeout, -1, time.monotonic(), 0
    while time.monotonic() < deadline:
        done = Email.objects.filter(to__startswith=prefix).exclude(
            status__in=[STATUS.queued, STATUS.requeued]).count()
        if done >= n:
            return time.perf_counter(), kicks
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > 2:   # what a periodic beat entry would do
            send_queued_mail.delay(); kicks += 1; last_change = time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"peer: {last} of {n} done after {timeout} s")

queue("warm", 50)
wait("warm", 50, 120)
n = spec["count"]
started = time.perf_counter()
queue("cliente", n)
queued = time.perf_counter()
done, kicks = wait("cliente", n, 900)
sent = Email.objects.filter(to__startswith="cliente", status=STATUS.sent).count()
failed = Email.objects.filter(to__startswith="cliente", status=STATUS.failed).count()
print(json.dumps({"messages": n, "sent": sent, "failed": failed, "queue_s": queued - started,
                  "total_s": done - started, "rate": sent / (done - started),
                  "queue_rate": n / (queued - started), "kicks": kicks}))
"""


def _pg_admin(sql: str) -> None:
    from sqlalchemy import create_engine, text
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(sql))
    admin.dispose()


def run_peer(db: str, port: int, count: int, workers: int = 2,
             message: str = "newsletter") -> dict[str, float]:
    """django-post_office + Celery sends `count` messages to the sink on `port`."""
    import redis

    py = ensure_venv()
    folder = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    pkg = folder / "peerproj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .celery import app as celery_app\n")
    (pkg / "settings.py").write_text(SETTINGS % {"pg_db": PG_DB})
    (pkg / "celery.py").write_text(CELERY_APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGNS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(PEER_DB=db, PEER_SQLITE=str(folder / "peer.db"), PEER_SMTP_PORT=str(port),
               PEER_DIR=str(folder), PEER_REDIS_URL=REDIS_URL, DJANGO_SETTINGS_MODULE="peerproj.settings",
               PYTHONPATH=str(folder))
    if db == "postgresql":
        _pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
        _pg_admin(f"CREATE DATABASE {PG_DB}")
    redis.Redis.from_url(REDIS_URL).flushdb()
    subprocess.run([str(py), "-m", "django", "migrate", "-v", "0"], cwd=folder, env=env, check=True)
    procs = [subprocess.Popen([str(py), "-m", "celery", "-A", "peerproj", "worker", "-P", "solo",
                               "-n", f"peer{i}@%h", "--without-gossip", "--without-mingle",
                               "--without-heartbeat", "--loglevel", "WARNING"],
                              cwd=folder, env=env, stdout=subprocess.DEVNULL,
                              stderr=open(folder / f"worker{i}.log", "w"))
             for i in range(workers)]
    try:
        from mime_build import MESSAGES
        subject, html = MESSAGES[message]
        (folder / "driver.py").write_text(DRIVER)
        out = subprocess.run([str(py), "driver.py"], cwd=folder, env=env, text=True,
                             input=json.dumps({"html": html, "subject": subject, "count": count}),
                             stdout=subprocess.PIPE)
        if out.returncode:
            raise RuntimeError(f"peer driver failed (exit {out.returncode}); workers' logs in {folder}")
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if db == "postgresql":
            _pg_admin(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
    shutil.rmtree(folder, ignore_errors=True)
    return result


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
    print(run_peer(sys.argv[3] if len(sys.argv) > 3 else "sqlite", int(sys.argv[1]),
                   int(sys.argv[2]) if len(sys.argv) > 2 else 1000))
