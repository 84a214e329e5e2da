"""The TLS client context of every outgoing connection (SMTP and HTTP relays, the IMAP
bounce mailbox): built here only, so a ca_file and tls_verify mean the same everywhere and a
bad CA file is one error type, `TlsSetupError`, naming the file and what was expected.
Standard library only."""
from __future__ import annotations

import ssl

from campaigns.errors import ConfigError


class TlsSetupError(ConfigError):
    """The TLS client context cannot be built: the CA file is missing, unreadable or holds
    no certificate. Callers add whose connection it is (relay 'x', imap host:port)."""


def client_context(ca_file: str | None = None, *, verify: bool = True,
                   system_cas: bool = True) -> ssl.SSLContext:
    """A client context that checks the server's certificate and host name, trusting the
    system's CAs (unless `system_cas` is false) plus `ca_file` when given. `verify=False`
    turns both checks off (the CA file is still loaded, so a wrong path is reported).
    TlsSetupError when `ca_file` cannot be loaded."""
    try:
        if system_cas or not ca_file:
            context = ssl.create_default_context()
            if ca_file:
                context.load_verify_locations(cafile=ca_file)
        else:
            context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as err:
        reason = getattr(err, "strerror", None) or err
        raise TlsSetupError(f"cannot load ca_file {ca_file}: {reason} (expected a readable "
                            "PEM file of CA certificates)") from err
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
