"""A whole campaign through the `ses` kind: real workers, SES v2 served by moto on loopback."""
from __future__ import annotations

import email
import email.policy
import json
import urllib.request
from collections import Counter
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from sqlalchemy import select

from campaigns.models import Delivery
from tests.helpers import make_campaign


def test_five_hundred_recipients_through_ses_arrive_complete(project: Any) -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client("sesv2", region_name="eu-west-1", endpoint_url=url, aws_access_key_id="x",
                     aws_secret_access_key="y").create_email_identity(EmailIdentity="shop.test")
        project.relay_extra = (f'\n[relays.ses]\nkind = "ses"\nregion = "eu-west-1"\n'
                               f'endpoint_url = "{url}"\naccess_key_id = "testing"\n'
                               f'secret_access_key = "testing-secret"\n')
        project.write_config()
        addresses = make_campaign(project, "via-ses", 500, relay="ses")
        project.workers(2)
        project.cli("launch", "via-ses")
        snap = project.wait_status("via-ses", timeout_s=180)
        assert snap["status"] == "finished" and snap["counts"]["sent"] == 500, snap
        with urllib.request.urlopen(url + "/moto-api/data.json", timeout=10) as answer:
            raw = json.load(answer)["ses"]["RawMessage"]
        got = Counter(m["destinations"][0] if isinstance(m["destinations"], list)
                      else m["destinations"]["ToAddresses"][0] for m in raw)
        assert sorted(got) == sorted(addresses) and set(got.values()) == {1}
        sample = email.message_from_string(raw[0]["raw_data"], policy=email.policy.default)
        assert sample["Subject"].startswith("Offerta per Nome")
        assert sample["X-Campaigns-Delivery"]
        with project.ctx.db.session() as s:
            rows = s.execute(select(Delivery.relay, Delivery.provider_message_id)).all()
        assert {r for r, _ in rows} == {"ses"}
        assert all(pid for _, pid in rows) and len({pid for _, pid in rows}) == 500
    finally:
        server.stop()
