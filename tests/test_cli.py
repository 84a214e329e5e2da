"""The command line as a person uses it: clear errors, nothing half done, no secrets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from campaigns.cli.sink import ScriptedSink
from tests.helpers import ledger, make_campaign, parse, write_csv


def test_bad_csv_rows_are_reported_by_line_and_the_rest_imported(project):
    csv_path = project.root / "clienti.csv"
    csv_path.write_text("\ufeffemail;nome;città\nanna@example.it;Anna;Forlì\n"
                        "mario.rossi@;Mario;Roma\nANNA@Example.it;Anna B;Cantù\n"
                        "luca@example.it;Luca;Napoli\n", encoding="utf-8")
    proc = project.cli("contacts", "import", str(csv_path), "--list", "clienti")
    assert f"{csv_path}:3: field 'email': 'mario.rossi@'" in proc.stderr
    assert "2 imported" in proc.stdout and "1 invalid" in proc.stdout
    assert "1 duplicate" in proc.stdout


def test_csv_without_email_column_changes_nothing(project):
    csv_path = write_csv(project.root / "bad.csv", [("x", "y")], header="mail,name")
    proc = project.cli("contacts", "import", str(csv_path), "--list", "l", check=False)
    assert proc.returncode == 1
    assert "bad.csv" in proc.stderr and "email" in proc.stderr
    assert "Traceback" not in proc.stderr
    lists = project.cli("contacts", "lists").stdout
    assert lists.strip() == ""


def test_launch_refused_naming_template_line_and_variable(project):
    html = "<p>Ciao</p>\n<p>riga due</p>\n<p>{{ contact.cognome }}</p>\n"
    make_campaign(project, "tpl", 5, html=html)
    proc = project.cli("launch", "tpl", check=False)
    assert proc.returncode == 1
    assert "tpl-tpl" in proc.stderr and "line 3" in proc.stderr
    assert "contact.cognome" in proc.stderr
    assert project.status("tpl")["status"] == "draft" and project.status("tpl")["total"] == 0


def test_sandbox_refuses_unsafe_template(project):
    make_campaign(project, "sbx", 2, html="<p>{{ ''.__class__.__mro__[1].__subclasses__() }}</p>")
    proc = project.cli("launch", "sbx", check=False)
    assert proc.returncode == 1 and "sbx-tpl" in proc.stderr


def test_header_injection_through_data_and_options_is_blocked(project):
    rows = [("eve@example.test", "Eve\r\nBcc: evil@attacker.test", "x"),
            ("bob@example.test", "Bob", "y")]
    make_campaign(project, "inj", rows=rows)
    project.workers(1)
    project.cli("launch", "inj")
    snap = project.wait_status("inj")
    assert snap["counts"]["sent"] == 2
    assert "evil@attacker.test" not in project.sink.counts()
    for received in project.sink.received:
        msg = parse(received.data)
        assert msg["Bcc"] is None
        assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    proc = project.cli("create", "inj2", "--list", "inj-list", "--template", "inj-tpl",
                       "--from", "A <a@shop.test>\r\nBcc: evil@attacker.test", check=False)
    assert proc.returncode == 1 and "--from" in proc.stderr


def test_relay_auth_failure_pauses_campaign_and_never_shows_the_password(project, tmp_path):
    secret = "S3cr3t-Pa55-xyzzy"
    with ScriptedSink(auth={"invoices@shop.test": "the-right-one"}) as auth_sink:
        project.sink = auth_sink
        project.relay_extra = f'username = "invoices@shop.test"\npassword = "{secret}"'
        project.write_config()
        check = project.cli("relays", "check", "sink", check=False)
        assert check.returncode == 1
        assert "authentication failed" in check.stderr.lower()
        assert secret not in check.stdout + check.stderr
        make_campaign(project, "auth", 5)
        project.workers(1)
        project.cli("launch", "auth")
        snap = project.wait_status("auth", ("paused",), timeout_s=30)
        assert snap["status"] == "paused"
        assert "auth" in (snap["reason"] or "").lower()
        assert snap["counts"]["bounced"] == 0 and snap["counts"]["queued"] == 5
        status = project.cli("status", "auth", "--json").stdout
        listing = project.cli("relays", "list").stdout
        logs = "".join(p.read_text(errors="replace") for p in tmp_path.glob("workers-*.log"))
        for text in (status, listing, logs, snap["reason"]):
            assert secret not in text
        assert not auth_sink.received


def test_attachments_per_recipient_and_preflight_lists_missing_files(project):
    docs = project.root / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"fattura_{i}.pdf").write_bytes(b"%PDF-1.4\n" + bytes([i]) * 500)
    rows = [(f"cliente{i}@example.test", f"N{i}", "x", f"docs/fattura_{i}.pdf") for i in range(3)]
    rows.append(("manca@example.test", "M", "x", "docs/fattura_99.pdf"))
    csv_path = project.root / "fatture.csv"
    csv_path.write_text("email,first_name,code,pdf\n" + "\n".join(",".join(r) for r in rows) + "\n")
    from campaigns import lifecycle
    from campaigns.audience.contacts import import_contacts
    from campaigns.content.templates import add_template
    import_contacts(project.ctx.db, csv_path, "fatture")
    (project.root / "f.html").write_text("<p>Gentile {{ contact.first_name }}, in allegato la fattura.</p>")
    add_template(project.ctx.db, "fattura", "La sua fattura", project.root / "f.html")
    lifecycle.create_campaign(project.ctx.db, project.ctx.settings, name="fat", list_name="fatture",
                              template="fattura", from_addr="Amministrazione <fatture@shop.test>",
                              attachment_column="pdf")
    proc = project.cli("launch", "fat", check=False)
    assert proc.returncode == 1
    assert "manca@example.test" in proc.stderr and "fattura_99.pdf" in proc.stderr
    (docs / "fattura_99.pdf").write_bytes(b"%PDF-1.4 late")
    project.workers(1)
    project.cli("launch", "fat")
    assert project.wait_status("fat")["counts"]["sent"] == 4
    for received in project.sink.received:
        msg = parse(received.data)
        [part] = list(msg.iter_attachments())
        assert part.get_content_type() == "application/pdf"
        i = received.rcpt.removeprefix("cliente").split("@")[0]
        expected = docs / (f"fattura_{i}.pdf" if i.isdigit() else "fattura_99.pdf")
        assert part.get_filename() == expected.name
        assert part.get_content() == expected.read_bytes()


def test_test_send_leaves_the_ledger_alone(project):
    make_campaign(project, "ts", 3)
    out = project.cli("test-send", "ts", "--to", "boss@shop.test", "--to", "me@shop.test").stdout
    assert out.count("sent to") == 2
    assert sorted(project.sink.counts()) == ["boss@shop.test", "me@shop.test"]
    msg = parse(project.sink.received[0].data)
    assert msg["Subject"] == "Offerta per Nome0"
    assert ledger(project, "ts") == {}
    assert project.status("ts")["status"] == "draft"


def test_preview_prints_rendered_message(project):
    make_campaign(project, "pv", 2)
    out = project.cli("templates", "preview", "pv-tpl", "--contact", "user1@example.test").stdout
    assert "Subject: Offerta per Nome1" in out and "C00001" in out


def test_demo_runs_end_to_end_on_embedded_defaults(tmp_path: Path):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CAMPAIGNS_")}
    env["CAMPAIGNS_DATA_DIR"] = str(tmp_path / "d")
    proc = subprocess.run([sys.executable, "-m", "workers.cli", "demo", "--count", "300"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the sink received" in proc.stdout
    assert not (tmp_path / "d" / "demo" / "redis.sock").exists(), "embedded Redis left running"


def test_a_demo_stopped_by_sigterm_stops_its_workers_and_redis(tmp_path: Path):
    import signal
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("CAMPAIGNS_")}
    env["CAMPAIGNS_DATA_DIR"] = str(tmp_path / "d")
    proc = subprocess.Popen([sys.executable, "-m", "workers.cli", "demo", "--count", "20000"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:                 # bounded: the demo prints a handful of lines
        seen.append(line)
        if line.startswith("launched:"):
            break
    assert seen and seen[-1].startswith("launched:"), "".join(seen)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert not (tmp_path / "d" / "demo" / "redis.sock").exists(), "embedded Redis left running"


def test_bounces_classify_prints_one_json_object_per_report(project):
    import json
    fixtures = sorted((Path(__file__).parent / "bounces").glob("postfix*.eml"))
    assert fixtures
    out = project.cli("bounces", "classify", *map(str, fixtures)).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows and all(r["category"] and r["recipient"] for r in rows)
    missing = project.cli("bounces", "classify", "nope.eml", check=False)
    assert missing.returncode == 1 and "nope.eml" in missing.stderr
