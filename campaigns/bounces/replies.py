"""The first three steps of classify_reply's precedence, before the codes are read:

1. **relay-account**: our own relay or account refuses us (SMTP AUTH failed, relaying or
   send-as denied, the account's own sending limit, an unverified sender identity). Category
   relay whether or not the caller says the reply came from our relay: no receiver's MX
   speaks of our credentials or our account's quota.
2. **throttle**: words about *our* rate, volume or unusual traffic, whatever the code (a 4xx
   or a 5xx that says "too many", "rate limited", "unexpected volume").
3. **server-trouble**: a 4xx in which the receiver speaks of its own trouble (busy, temporary
   system problem, service unavailable, greylisting) and not of our rate: soft.

Each row is (pattern, reason, source): the source is where the wording is documented."""
from __future__ import annotations

import re

Row = tuple[str, str, str]

#: (pattern, reason, source). Checked on the reply's text with its codes.
RELAY_ACCOUNT: tuple[Row, ...] = (
    (r"authentication (credentials )?(invalid|failed|unsuccessful|failure)|"
     r"auth(entication)? credentials invalid", "securityerror",
     "RFC 4954 sec. 6 (535 5.7.8); Microsoft 365 SMTP AUTH (535 5.7.3 Authentication "
     "unsuccessful); Sisimai Reason/SecurityError"),
    (r"username and password not accepted|application-specific password|"
     r"log in (via|with|through) your web browser|web login required", "securityerror",
     "Gmail SMTP error reference (535 5.7.8, 534 5.7.9, 534 5.7.14)"),
    (r"smtp ?auth\w* (is )?(required|disabled|not enabled)|smtpclientauthentication is "
     r"disabled|turn on smtp authentication|client (was )?not authenticated|"
     r"must (be )?authenticat|authentication (is )?required|unauthenticated senders? (are )?"
     r"not allowed|not authorized to send mail, authentication", "securityerror",
     "RFC 4954 (530 5.7.0); Microsoft 365 NDR 5.7.57, 5.7.139; SendGrid 550 Unauthenticated "
     "senders not allowed; Sisimai Reason/SecurityError"),
    (r"relay(ing)? (access )?(is )?(denied|not (permitted|allowed)|prohibited|refused)|"
     r"(unable|not permitted|not allowed|cannot|can't) (to )?relay|we do not relay|"
     r"mail relay denied|invalid credentials for relay|isn't in my list of allowed rcpthosts|"
     r"relay access denied|tenantattribution", "norelaying",
     "Postfix reject_unauth_destination; Microsoft 365 NDR 5.7.54, 5.7.64; Gmail SMTP relay "
     "(550 5.7.0 Mail relay denied, 550 5.7.1 Invalid credentials for relay); qmail-smtpd; "
     "Sisimai Reason/RelayingDenied"),
    (r"send ?as (this sender|denied|permission)|permissions? to send as|sendasdenied|"
     r"send on behalf|not (allowed|authorized|permitted) to send (as|on behalf|from this "
     r"(address|sender))|mail from (address )?not owned by|does not match a verified sender",
     "norelaying",
     "Microsoft 365 NDR 5.7.60 (Client does not have permissions to send as this sender); "
     "Exchange SendAsDeniedException; SendGrid Sender Identity"),
    (r"daily (user )?(sending |smtp relay |message )?(quota|limit)|sending (quota|limit) "
     r"(for|of) (this|your) (account|user)|submissionquotaexceeded|reached your daily limit|"
     r"(account|user) (has )?(exceeded|reached) (its|their|the|your) (daily |sending )?"
     r"(sending )?(quota|limit)|outbound spam|bad outbound sender|sending (has been |is )?"
     r"(paused|disabled|suspended)", "norelaying",
     "Gmail (550 5.4.5 Daily user sending quota exceeded); Amazon SES (Daily message quota "
     "exceeded, Sending paused); Microsoft 365 NDR 5.1.8, 5.1.90, 5.2.0 SubmissionQuota"),
    (r"(e-?mail )?address (is )?not verified|identit(y|ies) failed the check|unverified "
     r"(sender|domain|identity)|not subscribed to ses|sandbox subdomains|free accounts are "
     r"for test|not authorized to perform ses:", "norelaying",
     "Amazon SES (554 Message rejected: Email address is not verified; not authorized to "
     "perform ses:SendRawEmail); Mailgun sandbox and free accounts"),
)

#: Microsoft's RESOLVER.RST.AuthRequired is the recipient group refusing unauthenticated
#: (outside) senders, not SMTP AUTH: left to the later steps (Exchange Online NDR 5.7.1).
_NOT_OUR_ACCOUNT_RE = re.compile(r"RESOLVER\.RST\.", re.IGNORECASE)

#: (pattern, reason, source): our rate, our volume, our connections.
THROTTLE: tuple[Row, ...] = (
    (r"too many (concurrent |simultaneous |open |smtp )*(connections|sessions|connects)|"
     r"connection (rate|frequency|count) (limit|exceeded)|(ip|connection|domain) frequency "
     r"limited|trop de connexions|max(imum)? (number of )?(messages?|connections?) per "
     r"(connection|session|ip)", "toomanyconn",
     "Sisimai Reason/TooManyConn, RateLimited; Yahoo SMTP error codes (421 Max message per "
     "connection reached); Tencent QQ"),
    (r"rate.?limit|throttl|too many (messages|mails|e-?mails|recipients|errors)|"
     r"sending rate|(message|mail) rate|exceeded (the |its |your )?(sending |message |hourly )?"
     r"rate|unexpected volume|(unusual|excessive|high|suspicious) (volume|rate|amount|traffic|"
     r"activity)|volume of (mail|messages|e-?mail)|too fast|too quickly|slow(er)? down|"
     r"try again slower|mail flood|(recipients|messages) (this|per|an?) (hour|minute|day)|"
     r"sent (to )?too many|receiving mail at a rate|at a rate that", "speeding",
     "Gmail (421 4.7.28 rate limited, 550 5.2.1 ReceivingRate); Yahoo [TSS04] unexpected "
     "volume; Microsoft 4.7.650 rate limited; Amazon SES Maximum sending rate exceeded; "
     "Sisimai Reason/RateLimited, Speeding"),
)

#: (pattern, reason, source): the receiver's own temporary trouble, said in a 4xx.
SERVER_TROUBLE: tuple[Row, ...] = (
    (r"grey ?list|gray ?list", "greylisted",
     "Postgrey (450 4.2.0 Greylisted); DESIGN.md: greylisting is soft"),
    (r"temporary (local |system |server )(problem|error|failure)|temporary problem|"
     r"system (is )?(busy|overloaded|temporarily unavailable)|server (is )?(too |currently )?"
     r"busy|(service|server|system) (is )?(currently |temporarily )?(unavailable|not "
     r"available)|local error in processing|insufficient system storage|resources? "
     r"(temporarily )?unavailable|internal (server )?error|try again later.{0,30}(busy|"
     r"maintenance)|under maintenance|temporary service failure", "systemerror",
     "RFC 5321 sec. 4.2.2 (421 Service not available, 451 Local error in processing, 452 "
     "Insufficient system storage); Yahoo 451 temporary system problem; Amazon SES 451 "
     "Temporary service failure; Sisimai "
     "Reason/SystemError"),
)

_COMPILED = {name: tuple((re.compile(p, re.IGNORECASE), r, s) for p, r, s in rows)
             for name, rows in (("relay", RELAY_ACCOUNT), ("throttle", THROTTLE),
                                ("trouble", SERVER_TROUBLE))}
#: RFC 4954 sec. 6: 530 Authentication required, 534 mechanism too weak, 535 credentials
#: invalid, 538 encryption required for the mechanism; 454 4.7.0 temporary AUTH failure.
_AUTH_CODES = frozenset({534, 535, 538})
#: Enhanced codes that only a submission server gives about our account (IANA registry,
#: RFC 4954: X.7.8 credentials invalid, X.7.11 encryption needed
#: for the mechanism - not X.7.9, which Yahoo gives for policy; Microsoft 365: 5.7.57 not authenticated, 5.7.60 send-as, 5.7.64 relay
#: access denied, 5.7.139 SMTP AUTH disabled).
_AUTH_STATUSES = frozenset({"5.7.8", "5.7.11", "5.7.57", "5.7.60", "5.7.64", "5.7.139",
                            "4.7.8"})
_TLS_RE = re.compile(r"starttls|\btls\b", re.IGNORECASE)


def relay_account(code: int | None, status: str | None, text: str) -> tuple[str, str] | None:
    """(reason, rule) when the reply is our relay or account refusing us, else None."""
    if _NOT_OUR_ACCOUNT_RE.search(text):
        return None
    found = _first("relay", text)
    if found:
        return found[0], "relay-account:text"
    if (code in _AUTH_CODES or status in _AUTH_STATUSES) and not _TLS_RE.search(text):
        return "securityerror", f"relay-account:{status or code}"
    return None


def throttle(text: str) -> tuple[str, str] | None:
    """(reason, rule) when the words speak of our rate, volume or connections."""
    found = _first("throttle", text)
    return (found[0], "throttle") if found else None


def server_trouble(code: int | None, text: str) -> tuple[str, str] | None:
    """(reason, rule) for a 4xx in which the receiver speaks of its own trouble."""
    if not code or not 400 <= code < 500:
        return None
    found = _first("trouble", text)
    return (found[0], "server-trouble") if found else None


def _first(table: str, text: str) -> tuple[str, str] | None:
    for pattern, reason, source in _COMPILED[table]:
        if pattern.search(text):
            return reason, source
    return None
