"""A local HTTP server that answers like SendGrid, Mailgun, Postmark and the SES v2 API, in the
shapes their documentation gives (status codes, JSON bodies, rate-limit headers), on
127.0.0.1 with a free port. Tests point a relay's base_url / endpoint_url at `FakeProviders.url`.

The answer is chosen from the API key and the recipient's local part:
  key BAD_KEY (or none)  401 (SES: 403 UnrecognizedClientException)
  invalid@...            the provider's "not a valid address" refusal
  inactive@...           Postmark ErrorCode 406 "Inactive recipient"
  ratelimit@...          429 with the provider's rate-limit headers
  quota@...              SES ThrottlingException "Daily message quota exceeded."
  boom@...               500
  slow@...               no answer for SLOW_S seconds (a read timeout on our side)
  anything else          accepted, with an id
Every request is recorded (`requests`); `accepted(provider)` lists the sends that were taken,
and `arrived(record)` turns one into the provider-neutral `Arrived` view the tests compare.
"""
from __future__ import annotations

import base64
import email.policy
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GOOD_KEY = "sk-fake-Zq8-unmistakable-api-key"     # must never appear in any output
BAD_KEY = "bad-key-Vq3-unmistakable"                  # any key but GOOD_KEY is refused
AWS_KEY_ID = "AKIAFAKECAMPAIGNS0001"
AWS_SECRET = "fake/aws+Secret-unmistakable-Kx93"
MAILGUN_DOMAIN = "mg.example.org"
SES_CONFIGURATION_SET = "campaigns"
SLOW_S = 3.0
_SCENARIOS = {"invalid", "inactive", "ratelimit", "quota", "boom", "slow"}


@dataclass
class Recorded:
    provider: str                     # sendgrid | mailgun | postmark | ses
    method: str
    path: str
    headers: dict[str, str]           # lower-case names
    body: bytes
    status: int = 0                   # what we answered
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    answer: Any = None                # the body we answered
    answer_headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Arrived:
    """What a provider received, whatever its API: the same view for every kind."""
    recipient: str
    from_name: str
    subject: str
    attachments: dict[str, bytes]     # filename -> bytes
    headers: dict[str, str]           # lower-case name -> value (decoded)


def scenario(address: str) -> str:
    local = address.partition("@")[0].lower()
    return local if local in _SCENARIOS else "ok"


def arrived_from_mime(data: bytes, recipient: str) -> Arrived:
    """The Arrived view of a raw message (what an SMTP server, a file, Mailgun or SES got)."""
    msg = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(msg, EmailMessage)
    names = getaddresses([str(v) for v in msg.get_all("from", [])])
    files = {p.get_filename() or "": bytes(p.get_payload(decode=True) or b"")
             for p in msg.walk() if p.get_content_disposition() == "attachment"}
    return Arrived(recipient, names[0][0] if names else "", str(msg.get("subject", "")), files,
                   {k.lower(): str(v) for k, v in msg.items()})


class FakeProviders:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(_Handler):
            fake = owner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProviders:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def accepted(self, provider: str) -> list[Recorded]:
        """The send requests `provider` took (2xx)."""
        sends = {"sendgrid": "/v3/mail/send", "postmark": "/email", "ses": "/v2/email/outbound-emails"}
        return [r for r in self.requests if r.provider == provider and 200 <= r.status < 300
                and (r.path == sends.get(provider) or r.path.endswith("/messages.mime"))]

    @staticmethod
    def provider_id(rec: Recorded) -> str:
        """The message id as the provider gave it in its answer."""
        if rec.provider == "sendgrid":
            return rec.answer_headers["X-Message-Id"]
        key = {"mailgun": "id", "postmark": "MessageID", "ses": "MessageId"}[rec.provider]
        return str(rec.answer[key])

    @staticmethod
    def arrived(rec: Recorded) -> Arrived:
        if rec.provider == "mailgun":
            return arrived_from_mime(rec.files["message"], rec.form["to"])
        if rec.provider == "ses":
            raw = base64.b64decode(rec.json["Content"]["Raw"]["Data"])
            return arrived_from_mime(raw, rec.json["Destination"]["ToAddresses"][0])
        body = rec.json
        if rec.provider == "sendgrid":
            return Arrived(body["personalizations"][0]["to"][0]["email"],
                           body["from"].get("name", ""), body["subject"],
                           {a["filename"]: base64.b64decode(a["content"]) for a in body.get("attachments", [])},
                           {k.lower(): _decoded(v) for k, v in body.get("headers", {}).items()})
        name = getaddresses([body["From"]])[0][0]
        return Arrived(getaddresses([body["To"]])[0][1], name, body["Subject"],
                       {a["Name"]: base64.b64decode(a["Content"]) for a in body.get("Attachments", [])},
                       {h["Name"].lower(): _decoded(h["Value"]) for h in body.get("Headers", [])})


def _decoded(value: str) -> str:
    """A header value as a reader sees it (RFC 2047 words decoded)."""
    return str(email.policy.default.header_factory("x-h", value))


# --- the HTTP side -------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    fake: FakeProviders
    protocol_version = "HTTP/1.1"           # keep-alive, as the real APIs

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        provider = ("ses" if path.startswith("/v2/email/") else
                    "sendgrid" if path.startswith("/v3/mail/") or path == "/v3/scopes" else
                    "mailgun" if path.startswith("/v3/") else "postmark")
        rec = Recorded(provider, self.command, path, {k.lower(): v for k, v in self.headers.items()}, body)
        answer = getattr(self, f"_{provider}")(rec)
        rec.status, rec.answer, rec.answer_headers = answer
        self.fake.record(rec)
        if answer[0] == -1:                   # slow@: hold the request, then drop it
            time.sleep(SLOW_S)
            self.close_connection = True
            return
        self._reply(*answer)

    def _reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, (dict, list)):
            data, ctype = json.dumps(payload).encode(), "application/json; charset=utf-8"
        else:
            data, ctype = str(payload or "").encode(), "text/plain; charset=utf-8"
        self.send_response(status)
        if data:
            self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # --- SendGrid v3 -----------------------------------------------------------------------

    def _sendgrid(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        auth = rec.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return 401, {"errors": [{"field": None, "message": "authorization required"}]}, {}
        if auth != f"Bearer {GOOD_KEY}":
            return 401, {"errors": [{"field": None, "message": "The provided authorization grant "
                                     "is invalid, expired, or revoked", "help": None}]}, {}
        if rec.path == "/v3/scopes":
            return 200, {"scopes": ["mail.send", "scopes.read"]}, {}
        rec.json = json.loads(rec.body)
        problem = _sendgrid_invalid(rec.json)
        if problem:
            return 400, {"errors": [problem]}, {}
        to = rec.json["personalizations"][0]["to"][0]["email"]
        case = scenario(to)
        if case == "invalid":
            return 400, {"errors": [{"message": "Does not contain a valid address.",
                                     "field": "personalizations.0.to.0.email",
                                     "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/"
                                             "Mail/errors.html#message.personalizations.to"}]}, {}
        if case == "ratelimit":       # "X-RateLimit-Reset: 1392815263" (a Unix time)
            return 429, {"errors": [{"field": None, "message": "too many requests"}]}, {
                "X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + 30)}
        if case == "boom":
            return 500, {"errors": [{"field": None, "message": "internal error"}]}, {}
        if case == "slow":
            return -1, None, {}
        return 202, "", {"X-Message-Id": uuid.uuid4().hex[:22]}

    # --- Mailgun ---------------------------------------------------------------------------

    def _mailgun(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        expected = "Basic " + base64.b64encode(f"api:{GOOD_KEY}".encode()).decode()
        if rec.headers.get("authorization") != expected:
            return 401, "Forbidden", {}
        m = re.fullmatch(r"/v3/domains/([^/]+)|/v3/([^/]+)/messages\.mime", rec.path)
        if not m:
            return 404, {"message": "Not Found"}, {}
        domain = m.group(1) or m.group(2)
        if domain != MAILGUN_DOMAIN:
            return 404, {"message": f"Domain not found: {domain}"}, {}
        if m.group(1):
            return 200, {"domain": {"name": domain, "state": "active", "type": "custom"},
                         "receiving_dns_records": [], "sending_dns_records": []}, {}
        rec.form, rec.files = _multipart(rec.headers.get("content-type", ""), rec.body)
        if "to" not in rec.form or "message" not in rec.files:
            return 400, {"message": "to parameter is missing" if "to" not in rec.form
                         else "message parameter is missing"}, {}
        case = scenario(rec.form["to"])
        if case == "invalid":
            return 400, {"message": "to parameter is not a valid address. please check documentation"}, {}
        if case == "ratelimit":
            return 429, {"message": "Too many requests"}, {"Retry-After": "20"}
        if case == "boom":
            return 500, {"message": "Internal Server Error"}, {}
        if case == "slow":
            return -1, None, {}
        return 200, {"id": f"<{time.strftime('%Y%m%d%H%M%S')}.{uuid.uuid4().hex[:12]}@{domain}>",
                     "message": "Queued. Thank you."}, {}

    # --- Postmark --------------------------------------------------------------------------

    def _postmark(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        if rec.headers.get("x-postmark-server-token") != GOOD_KEY:
            return 401, {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}, {}
        if rec.path == "/server":
            return 200, {"ID": 1, "Name": "Campaigns test", "DeliveryType": "Live",
                         "SmtpApiActivated": True, "Color": "blue"}, {}
        stream = re.fullmatch(r"/message-streams/([^/]+)", rec.path)
        if stream:
            if stream.group(1) not in ("outbound", "broadcast"):
                return 422, {"ErrorCode": 1226, "Message": "The message stream for the provided "
                             "'ID' was not found."}, {}
            return 200, {"ID": stream.group(1), "ServerID": 1, "Name": stream.group(1),
                         "MessageStreamType": "Broadcasts" if stream.group(1) == "broadcast"
                         else "Transactional"}, {}
        if rec.path != "/email":
            return 404, {"ErrorCode": 404, "Message": "Not found"}, {}
        if "application/json" not in rec.headers.get("content-type", ""):
            return 415, {"ErrorCode": 409, "Message": "JSON required."}, {}
        rec.json = json.loads(rec.body)
        if not (rec.json.get("TextBody") or rec.json.get("HtmlBody")):
            return 422, {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody or both."}, {}
        to = getaddresses([rec.json.get("To", "")])[0][1]
        case = scenario(to)
        if case == "invalid":
            return 422, {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{to}'."}, {}
        if case == "inactive":
            return 422, {"ErrorCode": 406, "Message": "You tried to send to recipient(s) that have "
                         f"been marked as inactive. Found inactive addresses: {to}. Inactive "
                         "recipients are ones that have generated a hard bounce, a spam "
                         "complaint, or a manual suppression."}, {}
        if case == "ratelimit":        # Postmark documents 429 but no retry header
            return 429, {"ErrorCode": 429, "Message": "Rate limit exceeded."}, {}
        if case == "boom":
            return 500, "Internal Server Error", {}
        if case == "slow":
            return -1, None, {}
        return 200, {"To": rec.json["To"], "SubmittedAt": time.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
                     "MessageID": str(uuid.uuid4()), "ErrorCode": 0, "Message": "OK"}, {}

    # --- SES v2 (rest-json: errors as x-amzn-ErrorType plus {"message": ...}) ----------------

    def _ses(self, rec: Recorded) -> tuple[int, Any, dict[str, str]]:
        key_id = re.search(r"Credential=([^/]+)/", rec.headers.get("authorization", ""))
        if not key_id or key_id.group(1) != AWS_KEY_ID:
            return _aws_error(403, "UnrecognizedClientException",
                              "The security token included in the request is invalid.")
        if rec.path == "/v2/email/account":
            return 200, {"DedicatedIpAutoWarmupEnabled": False, "EnforcementStatus": "HEALTHY",
                         "ProductionAccessEnabled": True, "SendingEnabled": True,
                         "SendQuota": {"Max24HourSend": 50000.0, "MaxSendRate": 14.0,
                                       "SentLast24Hours": float(len(self.fake.accepted("ses")))}}, {}
        config_set = re.fullmatch(r"/v2/email/configuration-sets/([^/]+)", rec.path)
        if config_set:
            if config_set.group(1) != SES_CONFIGURATION_SET:
                return _aws_error(404, "NotFoundException",
                                  f"Configuration set <{config_set.group(1)}> does not exist.")
            return 200, {"ConfigurationSetName": SES_CONFIGURATION_SET}, {}
        if rec.path != "/v2/email/outbound-emails":
            return _aws_error(404, "NotFoundException", "Unknown operation")
        rec.json = json.loads(rec.body)
        if rec.json.get("ConfigurationSetName", SES_CONFIGURATION_SET) != SES_CONFIGURATION_SET:
            return _aws_error(404, "NotFoundException", "Configuration set does not exist.")
        case = scenario(rec.json["Destination"]["ToAddresses"][0])
        if case == "invalid":
            return _aws_error(400, "BadRequestException", "Illegal address")
        if case == "ratelimit":
            return _aws_error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        if case == "quota":
            return _aws_error(400, "ThrottlingException", "Daily message quota exceeded.")
        if case == "boom":
            return _aws_error(500, "InternalServiceErrorException", "Internal service error.")
        if case == "slow":
            return -1, None, {}
        return 200, {"MessageId": f"0102018c{uuid.uuid4().hex}-000000"}, {}


def _aws_error(status: int, code: str, message: str) -> tuple[int, Any, dict[str, str]]:
    return status, {"message": message}, {"x-amzn-ErrorType": f"{code}:", "x-amzn-RequestId": str(uuid.uuid4())}


def _sendgrid_invalid(body: dict[str, Any]) -> dict[str, Any] | None:
    """The checks SendGrid documents that our payload could fail."""
    reserved = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
                "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc"}
    try:
        assert body["personalizations"][0]["to"][0]["email"] and body["from"]["email"]
    except (KeyError, IndexError, AssertionError):
        return {"message": "The personalizations and from fields are required.", "field": None}
    types = [c.get("type") for c in body.get("content", [])]
    if not types or ("text/plain" in types and types[0] != "text/plain"):
        return {"message": "The text/plain content type must be first.", "field": "content"}
    for name, value in body.get("headers", {}).items():
        if name.lower() in reserved or not isinstance(value, str) or not value.isascii():
            return {"message": f"Invalid header {name!r}: reserved or not an ASCII string.",
                    "field": "headers"}
    return None


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """multipart/form-data fields and files, read by hand (a message/rfc822 file part must
    stay bytes, which the stdlib's MIME parser would not leave it)."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    form: dict[str, str] = {}
    files: dict[str, bytes] = {}
    if not boundary:
        return form, files
    for chunk in body.split(b"--" + boundary.group(1).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        data = data[:-2] if data.endswith(b"\r\n") else data
        name = re.search(rb'name="([^"]*)"', head)
        if not name:
            continue
        if re.search(rb'filename="', head):
            files[name.group(1).decode()] = data
        else:
            form[name.group(1).decode()] = data.decode("utf-8")
    return form, files
