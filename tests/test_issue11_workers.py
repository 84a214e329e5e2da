"""Issue 11: running workers as an operator meets them: configuration changes reach them
(item 9)."""
from __future__ import annotations

from typing import Any

import pytest

from campaigns.sink import ScriptedSink
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
