"""Ordered text rules: (pattern, reason). The first pattern found in a server's words decides.

`STRONG` runs before the enhanced status code: phrases specific enough to overrule it (a
"5.1.1 ... has sent to too many recipients this hour" is a rate limit, not an unknown user).
`WEAK` runs after it: generic words ("rejected", "timed out") that only decide when the code
said nothing specific (X.0.0) or nothing at all."""
from __future__ import annotations

import re

Rule = tuple["re.Pattern[str]", str]


def rules(*pairs: tuple[str, str]) -> tuple[Rule, ...]:
    """Compile (pattern, reason) pairs, case-insensitive."""
    return tuple((re.compile(p, re.IGNORECASE), reason) for p, reason in pairs)


_RELAY = (
    (r"relay(ing)? (access )?(is )?(denied|not (permitted|allowed)|prohibited|refused)|"
     r"(not permitted|unable|not allowed|cannot|can't) (to )?relay|we do not relay|no relaying|"
     r"relaying (mail )?(to .{1,60})?(is )?(not (permitted|allowed)|denied)|mail relay denied|"
     r"relay not permitted|isn't in my list of allowed rcpthosts|invalid credentials for relay|"
     r"not authorized to send email directly to our servers|insecure (mail )?relay|(not configured|"
     r"configured not) to relay|email address is not verified|identities failed the check",
     "norelaying"),
    (r"smtp auth|authentication (is )?required|must (be )?authenticat|authrequired|"
     r"auth(entication)? (credentials )?(failed|invalid|rejected)|invalid credentials|"
     r"authentication unsuccessful|username and password not accepted|sender not authenticated|"
     r"application-specific password|log in (with|through) your web browser|"
     r"code d'authentification invalide|too many login attempts|security error|"
     r"unauthenticated senders? (are )?not allowed", "securityerror"),
)

#: Reputation of our IP that no content change fixes: dynamic or residential ranges, "use
#: your ISP's server" (Sisimai Reason/Blocked: "Please use the smtp server of your ISP",
#: "hosts with dynamic ip", "Dynamic/zombied/spam IPs blocked"; mail.ru "we do not accept
#: mail from dynamic IPs"; Spamhaus PBL). Before _CONTENT: "generic PTR" names a PTR too.
_DYNAMIC = (
    (r"smtp server of your (isp|provider)|use your (isp|provider)'?s? (smtp|mail) ?server|"
     r"(dynamic|residential|dial.?up|dsl|cable) (ip|address|host|pool|range|client)|"
     r"dynamic/zombied|generic (dns )?ptr|from dynamic ips?|\bpbl\b|end.?user (ip|range)",
     "blocked"),
)

#: The recipient refuses us by their own choice (Facebook RCP-P2 "Refused due to recipient
#: preferences"; AOL "recipient is only accepting mail from specific email addresses";
#: Sisimai Reason/Filtered "user refuses to receive this mail", "you have been blocked by
#: the recipient", "message rejected due to user rules").
_RECIPIENT_CHOICE = (
    (r"recipient(?:'s)? preferences|only accepting mail from specific|user refuses to receive|"
     r"blocked by the recipient|rejected due to user rules|recipient id refuse",
     "recipientrefusal"),
)

_AUTH = (
    (r"\bdmarc\b", "authfailure"),
    (r"\bspf\b.{0,80}(fail|not pass|did not pass|record|check|reject|invalid|policy)|"
     r"(fail|bad|invalid).{0,20}\bspf\b|sender policy framework", "authfailure"),
    (r"duplicate header", "notcompliantrfc"),
    (r"\bdkim\b.{0,80}(fail|not pass|did not pass|invalid|no valid)|"
     r"(fail|bad|invalid|no valid).{0,30}\bdkim\b", "authfailure"),
    (r"sender is unauthenticated|unauthenticated (e-?mail|message|sender)|"
     r"(fails? to pass|did not pass|not pass) .{0,20}authentication|authentication "
     r"(checks?|information)|senders to authenticate|sender authentication (fail|required)",
     "authfailure"),
)

#: A deferral or rate limit that cites reputation or complaints is the receiver refusing us,
#: not a volume limit: "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to
#: unexpected volume or user complaints", "451 4.7.650 The mail server [192.0.2.25] has been
#: temporarily rate limited due to IP reputation". Reputation beats volume, so this runs
#: before _THROTTLE.
_REPUTATION = (
    (r"reputation|user complaints|complaints (from|by) (our |its )?(users|recipients)|"
     r"spam complaints|poor sender|(sender|sending|ip) (score|rating)", "badreputation"),
)

_THROTTLE = (
    (r"too many (concurrent |simultaneous |open )?(smtp )?(connections|sessions)|"
     r"connection (rate|frequency|count) (limit|exceeded)|frequency limit|trop de connexions|"
     r"too many (smtp )?connect|max(imum)? messages? per connection", "toomanyconn"),
    (r"rate.?limit|rate of (unsolicited )?mail|at a rate|throttl|too many (messages|mails|"
     r"emails|recipients)|sending (rate|quota|limit)|(hourly|daily|message) (sending |user "
     r"sending |smtp relay )?(rate|limit|quota) (exceeded|reached)|exceeded (the |its |your )?"
     r"(sending |message |hourly |daily )?(rate|quota|limit)|unexpected volume|too fast|"
     r"too quickly|slow down|mail flood|"
     r"(recipients|messages) (this|per|an?) (hour|minute|day)|sent (to )?too many",
     "speeding"),
)

_SIZE = (
    (r"(message|mail|e-?mail) (size|length) (exceeds|is too|too)|"
     r"(?<!mailbox )size (limit|exceeds|of (the|your) message)|"
     r"(message|mail|e-?mail) (is |was )?too (big|large)|"
     r"exceed(s|ed)? (the |fixed |our |google's )?(maximum|max|size|allowed|message size)|"
     r"(?<!headers )too large|mesgtoobig|recipsizelimit|message size|(?<!mailbox )size limit|"
     r"taille limite|(message|mail) (size|length) is (more|greater|larger|bigger) than|"
     r"line limit exceeded", "mesgtoobig"),
)

_EXPIRED = (
    (r"message expired|envelope expired|(delivery|retry) (time|period) (has )?(expired|"
     r"exceeded)|expired after|retry time(out)? (exceeded|reached)|retry timeout|"
     r"unable to deliver in \d|(could not|couldn't|unable to) (be )?deliver(ed)? (for|in|"
     r"within|after) (the last )?\d|not (been )?delivered (for|after|within) \d|have been "
     r"failing for a long time|delivery attempts? (has|have) (failed|been failing) for|"
     r"failed \d+ attempts|after \d+ (delivery )?attempts|maximum (delivery )?(time|retries|"
     r"attempts)|will stop trying|no further attempts|queue.?expired|connection expired",
     "expired"),
)

_MAILBOX = (
    (r"insufficient (system |disk )?(disk )?(space|storage)|(disk|file ?system|system) "
     r"(is )?full|out of (disk|storage) space", "systemfull"),
    (r"mailbox (is |was )?(full|over|exceeded|size limit)|over ?quota|quota (exceeded|exceed|full|"
     r"limit)|(exceed|exceeded|exceeds|exceeding|over) (the |his |her |their |its )?"
     r"(mailbox |storage |disk |account )?(quota|storage|space)|out of storage|"
     r"(inbox|mailbox|account) (is )?(full|out of (storage|space))|mailbox ?full|"
     r"not enough (storage|space|disk)|storage (limit|allocation|space)|boite .{0,20}pleine|"
     r"mail ?box (has|is) (exceeded|over)|user has (too many messages|exceeded)|"
     r"overquota|disk quota|full mailbox|\bmbox full|mailbox exceeds|mailbox size limit|"
     # Sisimai Reason/MailboxFull; Domino "mail file is full"
     r"mail ?folder is full|mail ?file is full|space has been used up|would exceed (the )?"
     r"(maximum allowed storage|allowed quota)|too much mail data|exceeded storage "
     r"allocation|disc quota|quota violation", "mailboxfull"),
)

_SENDER = (
    (r"sender (address |domain )?(was |is )?(rejected|refused|denied|invalid|unknown|"
     r"not allowed|blocked)|(mail from|envelope sender|return.path|from address|sender "
     r"address|sender domain|sender verification|domain of sender address) .{0,60}(rejected|"
     r"refused|denied|invalid|failed|not (exist|allowed|found|verified)|does not exist)|"
     r"sender verify fail|sender (address )?verification|bad sender|(invalid|unknown|"
     r"unverified) sender|address of the sender|your (e-?mail )?address (has been |is )?"
     r"(rejected|blocked|denied)|not authorized to send|no permission to post|not allowed to "
     r"post|(restricted|closed) (group|list)|not a member|emetteur invalide|"
     r"mail sending denied|email address is not verified|identities failed|"
     # fml (Sisimai Lhost/FML), Yahoo 451 "unresolvable RFC.5321 from domain"
     r"not member article from|not a member of this (mailing )?list|reject mail from|"
     r"unresolvable rfc.?5321|"
     # RFC 7505 sec. 4.2: "550 5.7.27 Sender address has null MX" is about our sender
     r"sender (address|domain) has null ?mx", "rejected"),
)

_CONTENT = (
    (r"ptr record|reverse dns|\brdns\b|reverse (lookup|hostname|mapping|dns)|no ptr|"
     r"(cannot|can't|could not|unable to) (find|resolve|verify) your (host ?name|ip|"
     r"reverse)|(host ?name|ip address) (does not|doesn't) (resolve|match)|ip name lookup|"
     r"(missing|invalid|bad) (reverse|ptr)|fcrdns|mismatches client ip|"
     r"does not match (the )?(client|connecting|sending) ip", "requireptr"),
    (r"starttls|tls (is )?required|does not support tls|must (issue|use) (a )?(starttls|tls)|"
     r"encryption (is )?required|(secure|encrypted) connection (is )?required", "failedstarttls"),
    # not the header names a scanner adds to a quoted original ("X-Virus-Scanned: ClamAV")
    (r"(?<![\w-])virus(?!-)|malware|infected|trojan|\bworm\b|phishing", "virusdetected"),
    (r"malformed address|syntax (error|invalid) in (parameters|address)", "syntaxerror"),
    (r"\brfc ?(5322|2822|822|5321|2821)\b(?!;)|not (rfc|standards?).?(\d+ )?compliant|"
     r"non.?compliant|multiple .{1,40} headers?|(missing|invalid|malformed|duplicated?|bad|"
     r"disallowed) .{0,20}header|header (is )?(missing|invalid|malformed|error)|"
     r"message.id (is )?(missing|invalid)|malformed (message|mime|header)|message is "
     r"malformed|broken (mime|message)|bare (lf|cr)|headers too large|"
     r"missing a valid address in from|having no from: header|"     # Gmail 550 5.7.1
     r"syntax error in (the )?(message )?(header|message)|header syntax|headers? .{0,20}"
     r"syntax (error|invalid)|encoded-word syntax", "notcompliantrfc"),
    (r"8.?bit data|content error|invalid content|(bad|illegal|invalid) (character|charset|"
     r"encoding|mime)|mime (error|format)|invalid characters", "contenterror"),
    (r"does not allow external forwarding|"       # Microsoft 365 NDR 5.7.520
     r"for policy reasons|polic(y|ies) (violation|reasons)|violat\w+ .{0,30}polic|"
     r"local policy|denied by policy|illegal attachment|attachment .{0,30}(forbidden|"
     r"prohibited|not allowed)", "policyviolation"),
)

_ADDRESS = (
    (r"null ?mx|does ?n[o']t (accept|receive) (e-?)?mail|(domain|host) (does not|doesn't|"
     r"do not) accept|not accepting (e-?)?mail|accepts? no mail|no mail (is )?accepted|"
     r"indicated no smtp service|no smtp service", "notaccept"),
    # "No MX found for domain" (OpenSMTPD), "no MX record found": the domain takes no mail
    (r"no mx (records? )?found|no mx records? (for|exists?)", "notaccept"),
    (r"has moved|no longer (on|at|with) (this|the) (server|address|host|domain|organization)|"
     r"no longer (on|at) server|address (has )?changed|forwarding address", "hasmoved"),
    (r"(account|mailbox|user|address|recipient)('s)?( <address>| \S+@\S+)?( has been| is| was)? "
     r"(temporar(il)?y )?(disabled|suspended|"
     r"deactivated|discontinued|locked|frozen|terminated|expired|inactive|de-?activated|"
     r"blocked|archived|no longer (active|available|valid|in use))|disabled or discontinued|"
     r"(disabled|suspended|inactive|closed) (account|mailbox|user)|account (is )?(not active|"
     r"unavailable)|account that you tried to reach is (disabled|inactive)|compte .{0,30}"
     r"(bloque|desactive)|destinataire archivee|user account (is )?disabled|"
     # Yahoo: "554 delivery error: dd x@yahoo.com is no longer valid", "This mailbox is
     # disabled (554.30)"; Sisimai "this email address is wrong or no longer valid"
     r"(is|address is wrong or) no longer valid|this mailbox is disabled", "suspend"),
    (r"malformed or unexpected name server reply|name server (timeout|failure|error)|"
     r"\bservfail\b", "networkerror"),
    (r"host (or domain name |\S+ )?not found|(host ?name|domain|mx) lookup (failure|error)|"
     r"(domain|host) (name )?(does not exist|not found|unknown|lookup failed)|"
     r"name service error|no such domain|unknown (host|domain)|"
     r"unroutable|unrouteable|not a (valid|known) domain|domain (is )?not (reachable|valid|"
     r"resolvable|found)|invalid domain|no mx (record|host)|mx (record|lookup) (not found|"
     r"failed)|nxdomain|bad destination system|couldn't find a mail exchanger|"
     r"no (mx|mail exchanger)", "hostunknown"),
    (r"user( name)? (is )?unknown|unknown (user|recipient|mailbox|address|e-?mail|local ?part)|"
     r"no such (user|mailbox|recipient|address|account|person|local user)|"
     r"(user|recipient|mailbox|address|account|addressee|e-?mail address) "
     r"(\S+ )?(does not|doesn't|did not|not) (exist|found|known)|"
     r"(user|recipient|mailbox|address|account) (is )?(not (found|known|valid|recognized)|"
     r"invalid|unavailable|nonexistent|inactive)|recipientnotfound|recipient not found|"
     r"invalid (recipient|mailbox|user|address|e-?mail)|not a valid (recipient|mailbox|user)|"
     r"(bad|unknown|nonexistent|non-existent) (recipient|mailbox|address|destination)|"
     r"recipient address rejected: (access denied|invalid user|unknown|user)|"
     r"no (mailbox|account) (here )?(by that name|for|available)|no valid recipients|"
     r"(name|recipient) (is )?not recognized|is not a known user|no mailbox here|"
     r"doesn't have a .{1,40} account|inactive (e-?mail )?address|"
     r"not (a |an )?(local|valid|registered) (user|address|recipient)|(mailbox|user) "
     r"unavailable|utilisateur inconnu|destinataire invalide|account (\S+ )?does not exist|"
     r"recipient address rejected(?!:)|"
     r"not listed in (the )?(public name|domino directory)|"
     r"invalid or unknown virtual user|"          # vpopmail vdeliver
     r"badrcptto|no one (by that name |at this address)|couldn'?t find (any|the) (user|"
     r"mailbox|person)|mailbox not found", "userunknown"),
)

_ACCESS = (
    # sendmail's access map ("550 5.7.1 <x>... Access denied") and RFC 3463's X.7.1 wording
    (r"\.\.\. access denied|access denied \(state \d+\)|delivery not authorized",
     "securityerror"),
)

_BLOCK = (
    (r"\bspam(?!haus|cop)|\bube\b|\bucn\b|junk ?mail|unsolicited|bulk (e-?mail|mail)|"
     r"looks like spam|"
     r"suspicious|content (rejected|filter)|message content rejected|scored as|"
     r"(high|bad) (spam )?score|spam ?signature|mail rejete", "spamdetected"),
    (r"block ?list|black ?list|blocked (by|using|for|due|ip|because|mail)|\bdnsbls?\b|\brbl\b|"
     r"spamhaus|spamcop|sorbs|barracuda ?central|cbl\.abuseat|(listed|found) (in|on|at) "
     r"(an? |the )?(rbl|dnsbl|dns ?bl|block|black)|(ip|client|connection|server|your host) "
     r"(address )?(has been |is |was )?(blocked|banned|blacklisted|listed|denied|refused)|"
     r"client host rejected|banned|(access|connection) (denied|refused|blocked) (to|from|for) "
     r"(your|the|this|client)|your ip|dynamic ip|(residential|dial.?up|dynamic) (ip|address|"
     r"host)|refused to talk|not allowed to send|is an open relay|bloquee|ip (address )?blocked|"
     r"\bblocked\b|service refuse|access denied, please try again later", "blocked"),
    (r"cannot route mail to user|refused by (the )?recipient|(recipient|user|receiver|"
     r"addressee) (has )?(rejected|refused|declined|does not (want|accept))|"
     r"rejected by (the )?(recipient|user|filter|content filter|rule)|filtered|"
     r"filtering|mail (was )?(refused|rejected) by (the )?(recipient|rule|filter)|"
     r"not accept(ing)? mail from|does not accept (mail|messages|e-?mail) from|"
     r"white ?list|allow ?list", "filtered"),
)

_POLICY = (
    (r"polic(y|ies)|prohibited|not allowed|not permitted|violat|forbidden|restricted|"
     r"administratively denied|denied by", "policyviolation"),
)

_TRY_LATER = (
    (r"try (again )?later.{0,80}(not going to try again|giving up|given up)", "expired"),
    # not "try again later" alone: every temporary failure says it, not only a rate limit
    (r"temporar(il)?y (deferred|rejected|refused|blocked|limited)|"
     r"please retry|(retry|resend|try) (again )?(in|after) \d+", "speeding"),
    (r"grey ?list|gray ?list", "greylisted"),      # DESIGN.md: greylisting is soft
)

_AFTER_STATUS = (
    (r"in the queue too long|not going to try again", "expired"),
    # a mailing list refusing a Message-ID it has already seen is loop protection (fml)
    (r"several matches found in domino directory", "systemerror"),   # Sisimai Lhost/Domino
    (r"loop detected|mail loop|routing loop|too many hops|hop count|loops back|exceeded \d+ hops|"
     r"duplicated? message-id", "networkerror"),
    (r"connection (timed out|refused|reset|closed|lost|dropped)|timed? ?out|"
     r"no route to host|network (is )?unreachable|host (is )?unreachable|(could not|couldn't|"
     r"unable to|failed to|cannot|can't|wasn't able to) (connect|contact|reach|establish)|"
     r"lost connection|broken pipe|no answer|not reachable|unreachable|(connect|connection) "
     r"(to|with) .{0,60}(failed|refused)|network error|dns (error|failure|problem|timeout)|"
     r"temporary (dns|lookup|name) (error|failure)|did not accept our requests to connect",
     "networkerror"),
    (r"x-unix|procmail|\bpipe\b|mailer error|exit (code|status)|command (died|failed)|"
     r"local delivery failed|delivery to .{0,40} (program|file) failed|permission denied",
     "mailererror"),
    (r"system (error|failure|not available|unavailable|problem)|internal (server )?error|"
     r"server error|local error|(configuration|config) error|temporary (local )?problem|"
     r"resources (temporarily )?unavailable|service (is )?(currently |temporarily )?"
     r"(unavailable|not available)|(ldap|directory|database) (server )?(error|failure|"
     r"unavailable|lookup)|unable to contact ldap|transaction failed|error in processing|"
     r"processing error|write error|queue file|i/o error|server busy|"
     # Sisimai Reason/SystemError
     r"could not load drd|(local|mail system|server|system) config(uration)? error|"
     r"remote server is misconfigured|interrupted system call", "systemerror"),
    (r"syntax error|unrecognized command|command not (recognized|implemented)|"
     r"bad sequence of commands|improper sequence|invalid command|line too long|parameter "
     r"not implemented|(syntax|command) unrecognized|need (mail|rcpt) (command|from)",
     "syntaxerror"),
    (r"giving up|given up|gave up", "expired"),
)

#: Phrases that decide before the enhanced status code.
STRONG: tuple[Rule, ...] = rules(
    *_RELAY, *_RECIPIENT_CHOICE, *_DYNAMIC, *_AUTH, *_REPUTATION, *_THROTTLE, *_SIZE, *_MAILBOX, *_EXPIRED, *_CONTENT, *_SENDER,
    *_ACCESS, *_ADDRESS, *_BLOCK, *_POLICY, *_TRY_LATER,
)

#: Words that decide only after the status code said nothing specific (X.0.0 or none).
WEAK: tuple[Rule, ...] = rules(
    *_AFTER_STATUS,
    (r"(?<!recipient address )reject|refus|denied|not accepted|unacceptable|declined",
     "rejected"),
    (r"does not exist|not exist", "userunknown"),
)


#: Mailbox-full wording alone ("user has too many messages on the server" is not a rate).
MAILBOX: tuple[Rule, ...] = rules(*_MAILBOX)


#: Spam classification (Gmail UnsolicitedMessageError, Sisimai Reason/SpamDetected). It
#: decides before the SPF/DKIM words when those are only advice ("review your SPF setup",
#: "Please inspect your SPF settings"), not a failure the receiver names.
SPAM: tuple[Rule, ...] = rules(
    (r"(likely|classified as|detected as|identified as|considered( as)?|scored as|looks like|"
     r"suspected) (to be )?(unsolicited|spam|junk|bulk)|spam (detected|message|content)|"
     r"(message|mail|content) (was |is )?(rejected|blocked) (as|for) (possible )?spam|"
     r"\bube\b", "spamdetected"),
)
AUTH_FAILURE: tuple[Rule, ...] = rules(
    (r"\bdmarc\b|(spf|dkim)\W.{0,60}(fail|did not pass|not pass|does not pass|invalid)|"
     r"(fail\w*|not pass) .{0,20}(spf|dkim)|unauthenticated|5\.7\.2[0-9]\b", "authfailure"),
)


def match_text(text: str, table: tuple[Rule, ...]) -> str | None:
    """The reason of the first rule whose pattern occurs in `text`, or None."""
    for pattern, reason in table:
        if pattern.search(text):
            return reason
    return None
