"""The documented fixture set (tests/bounces/documented/): SMTP reply lines taken from RFCs
and providers' published reply tables, and returned messages composed in each MTA's
documented format. Each row names its source; a misclassified row fails on its own."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from campaigns.bounces import BounceCategory, classify_reply, parse_bounce

HERE = Path(__file__).parent / "bounces" / "documented"


def _rows(name: str) -> list[dict[str, str]]:
    with (HERE / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


REPLIES = _rows("replies.tsv")
MESSAGES = _rows("expected.tsv")


@pytest.mark.parametrize("row", REPLIES, ids=[f"{r['reply_code']}-{r['text'][:40]}"
                                              for r in REPLIES])
def test_documented_reply(row: dict[str, str]) -> None:
    code = int(row["reply_code"]) if row["reply_code"].strip() else 0
    got = classify_reply(code, row["text"], row["enhanced_status"] or None)
    assert got.category.value == row["expected_category"], (got, row["source"])
    assert got.rule, "every verdict names the rule that decided"


@pytest.mark.parametrize("row", MESSAGES, ids=[r["file"] for r in MESSAGES])
def test_documented_message(row: dict[str, str]) -> None:
    reports = parse_bounce((HERE / row["file"]).read_bytes())
    report = reports[int(row["index"]) - 1]
    assert report.recipient == row["recipient"]
    assert report.category.value == row["category"], (report, row["source"])


def test_fixture_set_is_large_enough_and_every_row_cites_a_source() -> None:
    assert len(REPLIES) >= 150 and len(MESSAGES) >= 40
    assert all(r["source"].strip() for r in REPLIES + MESSAGES)
    assert {p.name for p in HERE.glob("*.eml")} == {r["file"] for r in MESSAGES}


def test_no_4xx_reply_is_hard_and_no_relay_refusal_suppresses() -> None:
    for row in REPLIES:
        code = int(row["reply_code"]) if row["reply_code"].strip() else 0
        got = classify_reply(code, row["text"], row["enhanced_status"] or None)
        if 400 <= code < 500:
            assert got.category is not BounceCategory.HARD, row["text"]
        if got.category is BounceCategory.RELAY:
            assert not got.permanent, row["text"]


def test_delay_notices_are_not_final_but_keep_their_cause() -> None:
    ptr = parse_bounce((HERE / "postfix-ptr-delayed.eml").read_bytes())[0]
    assert (ptr.category, ptr.final, ptr.permanent) == (BounceCategory.POLICY, False, False)
    dns = parse_bounce((HERE / "postfix-dns-tryagain-delayed.eml").read_bytes())[0]
    assert dns.category is BounceCategory.SOFT and not dns.final
