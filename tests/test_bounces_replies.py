"""classify_reply: SMTP replies met while sending, by category."""
from __future__ import annotations

import pytest

from campaigns.bounces import BounceCategory, Classification, classify_reply

C = BounceCategory
# (code, text, enhanced, category)
REPLIES = [
    (550, "5.1.1 <x@example.com>: Recipient address rejected: User unknown", None, C.HARD),
    (550, "Requested action not taken: mailbox unavailable", "5.1.1", C.HARD),
    (550, "5.4.4 Unrouteable address", None, C.HARD),
    (556, "5.1.10 Recipient address has null MX", None, C.HARD),
    (550, "5.2.1 The email account that you tried to reach is disabled.", None, C.HARD),
    (552, "5.2.2 The email account that you tried to reach is over quota.", None, C.SOFT),
    (452, "4.2.2 Mailbox full, try again later", None, C.SOFT),
    (451, "4.3.0 Local error in processing", None, C.SOFT),
    (554, "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
     None, C.BLOCK),
    (550, "5.7.1 Message rejected as spam by Content Filtering.", None, C.BLOCK),
    (550, "5.7.1 This message is likely unsolicited mail.", None, C.BLOCK),
    (421, "4.7.0 Too many connections from your IP, slow down", None, C.THROTTLE),
    # in a live reply, words about our volume or rate decide first: slow down (throttle);
    # complaints or reputation alone are a block
    (421, "4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume "
          "or user complaints - 4.16.55.1", None, C.THROTTLE),
    (421, "4.7.0 [TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints",
     None, C.BLOCK),
    (451, "4.7.650 The mail server [192.0.2.25] has been temporarily rate limited due to IP "
          "reputation. (S3113)", None, C.THROTTLE),
    (451, "4.7.1 Deferred: poor reputation of the sending IP", None, C.BLOCK),
    (421, "4.7.0 [GL01] Message from 192.0.2.1 temporarily deferred", None, C.THROTTLE),
    (451, "4.3.0 Mail server temporarily unavailable, please try again later", None, C.SOFT),
    # the receiver's own trouble and greylisting are soft (DESIGN.md)
    (421, "mx.example.com Service not available, closing transmission channel", None, C.SOFT),
    (450, "4.7.1 Greylisted, please try again later", None, C.SOFT),
    (451, "4.7.1 You are sending too fast", None, C.THROTTLE),
    (452, "4.7.0 Temporarily rate limited", None, C.THROTTLE),
    (421, "Throttling failure: Maximum sending rate exceeded.", None, C.THROTTLE),
    (550, "5.7.1 Message content rejected due to local policy", None, C.POLICY),
    (550, "5.7.25 The IP address sending this message does not have a PTR record setup", None,
     C.POLICY),
    (554, "5.7.1 Virus found in message", None, C.POLICY),
    (550, "5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC "
          "policy", None, C.AUTH),
    (550, "5.7.23 SPF validation failed", None, C.AUTH),
    # our relay or account refusing us is relay whether or not from_relay is passed
    (554, "5.7.1 <x@example.org>: Relay access denied", None, C.RELAY),
    (550, "5.7.1 Relaying denied", None, C.RELAY),
    (530, "5.7.0 Authentication required", None, C.RELAY),
    (535, "5.7.8 Authentication credentials invalid", None, C.RELAY),
    (550, "5.7.1 RESOLVER.RST.AuthRequired; authentication required", None, C.AUTH),
    (552, "5.3.4 Message size exceeds fixed maximum message size", None, C.TOOLARGE),
    (250, "2.0.0 Ok: queued as 12345", None, C.DELIVERED),
]


@pytest.mark.parametrize("code,text,enhanced,category", REPLIES,
                         ids=[f"{r[0]}-{r[1][:30]}" for r in REPLIES])
def test_reply_category(code: int, text: str, enhanced: str | None,
                        category: BounceCategory) -> None:
    assert classify_reply(code, text, enhanced).category is category


OUR_RELAY = [
    (554, "5.7.1 <x@example.org>: Relay access denied"),
    (550, "5.7.1 Relaying denied"),
    (530, "5.7.0 Authentication required"),
    (535, "5.7.8 Authentication credentials invalid"),
    (550, "5.7.1 RESOLVER.RST.AuthRequired; authentication required"),
]


@pytest.mark.parametrize("code,text", OUR_RELAY, ids=[f"{c}-{t[:30]}" for c, t in OUR_RELAY])
def test_our_own_relay_refusing_us_is_relay_and_not_permanent(code: int, text: str) -> None:
    verdict = classify_reply(code, text, from_relay=True)
    assert verdict.category is C.RELAY and not verdict.permanent
    # Exchange's RESOLVER.RST.AuthRequired is the recipient group refusing outside senders
    outside = "RESOLVER.RST" in text
    assert classify_reply(code, text).category is (C.AUTH if outside else C.RELAY)


def test_from_relay_changes_nothing_but_relay_and_auth_replies() -> None:
    for code, text in ((550, "5.1.1 <x@example.com>: Recipient address rejected: User unknown"),
                       (421, "4.7.0 Too many connections from your IP, slow down"),
                       (550, "5.7.26 Unauthenticated email is not accepted due to DMARC")):
        assert classify_reply(code, text, from_relay=True) == classify_reply(code, text)


def test_enhanced_code_inside_text_or_apart_gives_the_same_answer() -> None:
    assert classify_reply(550, "5.1.1 no such user") == classify_reply(550, "no such user",
                                                                       "5.1.1")


def test_null_mx_and_5_4_4_are_hard_and_permanent() -> None:
    for verdict in (classify_reply(550, "5.4.4 Host or domain name not found"),
                    classify_reply(550, "", "5.4.4"),
                    classify_reply(556, "5.1.10 Recipient address has null MX")):
        assert verdict.category is C.HARD and verdict.permanent


def test_mailgun_style_temporary_failure_is_not_hard() -> None:
    for code, text in ((450, "4.0.0 Temporary failure"),
                       (451, "4.1.1 Temporary failure: user unknown, try again later")):
        verdict = classify_reply(code, text)
        assert verdict.category is not C.HARD and not verdict.permanent


def test_4xx_user_unknown_is_soft_but_keeps_its_reason() -> None:
    verdict = classify_reply(450, "4.1.1 <x@example.com>: Recipient address rejected: User "
                                  "unknown in local recipient table")
    assert verdict == Classification(C.SOFT, False, "userunknown")


def test_enhanced_code_decides_before_a_generic_label() -> None:
    assert classify_reply(550, "5.2.2 Requested action not taken").reason == "mailboxfull"
    assert classify_reply(550, "5.7.26 Message rejected").category is C.AUTH


def test_text_decides_when_a_code_is_overloaded() -> None:
    spam = classify_reply(550, "5.7.1 Our system has detected that this message is likely "
                               "unsolicited mail. https://support.google.com/mail/?p="
                               "UnsolicitedMessageError")
    policy = classify_reply(550, "5.7.1 The user or domain that you are sending to (or from) "
                                 "has a policy that prohibited the mail that you sent.")
    assert (spam.category, policy.category) == (C.BLOCK, C.POLICY)


def test_no_mx_is_the_domain_refusing_mail_even_in_a_temporary_reply() -> None:
    assert classify_reply(451, "4.0.0 No MX found for domain example.org").reason == "notaccept"
    assert classify_reply(550, "5.0.0 No MX found for domain example.org").category is C.HARD
    # a DNS lookup that failed this time is not: come back later
    assert classify_reply(451, "4.4.3 Host name lookup failure").reason == "networkerror"


def test_duplicate_message_id_is_loop_protection_not_a_policy() -> None:
    assert classify_reply(550, "Duplicated Message-ID in <x@example.org>").category is C.SOFT


def test_user_unknown_after_data_is_a_filter() -> None:
    assert classify_reply(550, "User unknown", command="RCPT").reason == "userunknown"
    assert classify_reply(550, "User unknown", command="DATA").reason == "filtered"


def test_empty_reply_is_unknown_not_an_error() -> None:
    verdict = classify_reply(0, "")
    assert verdict.category is C.UNKNOWN and not verdict.permanent


def test_every_reason_a_rule_can_give_has_a_category() -> None:
    from campaigns.bounces import rules, status
    from campaigns.bounces.detectors import exchange, imailserver, mms, powermta
    from campaigns.bounces.model import CATEGORY_OF_REASON
    from campaigns.bounces.receivers import google, isps, microsoft, orange, yahoo

    reasons = {r for _, r in rules.STRONG + rules.WEAK}
    reasons |= set(status._EXACT.values()) | set(status._FULL.values())
    reasons |= set(orange._CODES.values()) | set(microsoft._CODES.values())
    reasons |= {r for _, _, r in isps._SPECTRUM} | set(powermta._CATEGORIES.values())
    for table in (exchange._HINTS, imailserver._HINTS, mms._HINTS, google._RULES,
                  microsoft._RULES, yahoo._RULES, isps._RULES):
        reasons |= {r for _, r in table}
    assert reasons - set(CATEGORY_OF_REASON) == set()


def test_the_rule_that_decided_is_recorded() -> None:
    assert classify_reply(535, "5.7.8 Username and Password not accepted").rule.startswith(
        "relay-account")
    assert classify_reply(421, "4.7.0 Try again later, too many connections").rule == "throttle"
    assert classify_reply(451, "4.3.2 System busy, try again later").rule == "server-trouble"
    assert classify_reply(550, "", "5.1.1").rule == "status:5.1.1"
    assert classify_reply(450, "4.1.1 no such user").rule.endswith("+4xx")


def test_rule_takes_no_part_in_equality() -> None:
    assert classify_reply(550, "5.1.1 no such user") == Classification(C.HARD, True,
                                                                       "userunknown")
