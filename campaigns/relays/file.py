"""File relay: writes each message as an .eml file into a folder (for the demo and for tests).

The file holds the message bytes exactly as an SMTP relay would receive them (no envelope).
Each file appears whole or not at all: written to a hidden temporary name, then renamed.
"""
from __future__ import annotations

import datetime
import errno
import os
import re
from pathlib import Path

from campaigns.errors import ConfigError, RelayConfigError, RelayError, RelayTemporaryError
from campaigns.relays.base import OutgoingMessage, SendResult
from campaigns.settings import RelayConfig

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+=-]+")
# A full disk may pass; a missing permission or a read-only folder needs a person.
_TEMPORARY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EAGAIN, errno.EINTR, errno.EBUSY})


def eml_name(message_id: str, now: datetime.datetime | None = None) -> str:
    """`<UTC timestamp>-<message id made safe for a file name>.eml`, sortable by time."""
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    safe = _UNSAFE.sub("_", message_id.strip().strip("<>")).strip("._")[:120] or "message"
    return f"{stamp}-{safe}.eml"


class FileRelay:
    """The Relay contract (campaigns.relays.base.Relay) over a folder, `config.path`."""

    def __init__(self, config: RelayConfig) -> None:
        if not config.path:
            raise ConfigError(f"relay '{config.name}': kind 'file' needs path = \"<folder>\"")
        self.name = config.name
        self.folder = Path(config.path)
        self._ready = False

    def open(self) -> None:
        """Create the folder when missing. RelayConfigError when that is not possible."""
        if self._ready:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise self._error(err, f"cannot create folder {self.folder}") from err
        self._ready = True

    def send(self, message: OutgoingMessage) -> SendResult:
        """Write the message to `<folder>/<timestamp>-<message id>.eml`, atomically."""
        self.open()
        target = self.folder / eml_name(message.message_id)
        temp = self.folder / f".{target.name}.{os.getpid()}.tmp"
        try:
            with open(temp, "wb") as out:
                out.write(message.data)
            os.replace(temp, target)
        except OSError as err:
            temp.unlink(missing_ok=True)
            self._ready = False     # the folder may have gone: create it again next time
            raise self._error(err, f"cannot write {target}") from err
        return SendResult(250, "2.0.0", f"written to {target}")

    def close(self) -> None:
        """Nothing to close."""

    def check(self) -> list[str]:
        """Create the folder if needed and write and remove a probe file in it."""
        try:
            self.open()
        except RelayError as err:
            restated = type(err)(f"check failed at step 'create folder': {err}")
            restated.__dict__.update(err.__dict__)     # relay_down and the like, as said
            raise restated from err
        probe = self.folder / f".check.{os.getpid()}.tmp"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise self._error(err, f"check failed at step 'write': folder {self.folder} "
                                   "is not writable") from err
        return [f"folder {self.folder.resolve()} exists", "folder is writable"]

    @staticmethod
    def _error(err: OSError, what: str) -> RelayError:
        detail = f"{what}: {err.strerror or err}"
        if err.errno in _TEMPORARY_ERRNOS:
            return RelayTemporaryError(detail, relay_down=True)   # a full disk: not the recipient
        return RelayConfigError(detail)
