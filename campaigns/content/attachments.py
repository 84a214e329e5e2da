"""Which files a recipient's attachment column may name, and reading them safely.

A contact's attachment column is data from an imported CSV, often a third party's: it must
never be able to mail a file of the server (/etc/shadow, /proc/self/environ, a key under
~/.ssh). One function, `resolve`, decides for the preflight, test sends and the worker:

- a file comes only from an attachment root: the `[attachments] roots` of the TOML, or, when
  none are configured, the folder of the CSV the contact was imported from (recorded at
  import time);
- the path is resolved (`..` and symlinks included) and must stay inside a root;
- no `~`, no hidden file or folder (a name starting with "."), nothing under /proc, /sys or
  /dev, and only regular files (no device, FIFO or socket);
- at most `max_file_bytes` per file and `max_message_bytes` for a message's attachments.

`read` opens the resolved path without following a symlink and checks the open file again
(a swap between the check and the read does not get past it)."""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence

from campaigns.errors import CampaignsError
from campaigns.settings import AttachmentPolicy

#: never a source of attachments, whatever the roots say
FORBIDDEN = (Path("/proc"), Path("/sys"), Path("/dev"))


class AttachmentError(CampaignsError):
    """A recipient's attachment is missing, unreadable or refused by a rule."""


def _refuse(who: str, column: str, value: str, rule: str) -> AttachmentError:
    return AttachmentError(f"{who}: attachment '{value}' (column '{column}') refused: {rule}")


def roots_for(policy: AttachmentPolicy, source_dir: str | None) -> list[Path]:
    if policy.roots:
        return [Path(r).resolve() for r in policy.roots]
    return [Path(source_dir).resolve()] if source_dir else []


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve(policy: AttachmentPolicy, who: str, column: str, value: str,
            source_dir: str | None) -> Path:
    """The real path of the file `value` names, or AttachmentError naming the recipient
    (`who`), the column, the value and the rule it breaks. Does not read the file."""
    raw = value.strip()
    if not raw:
        raise AttachmentError(f"{who}: column '{column}' is empty or missing")
    if raw.startswith("~"):
        raise _refuse(who, column, raw, "'~' is not expanded; give a path inside an "
                      "attachment root")
    if "\x00" in raw:
        raise _refuse(who, column, raw.replace("\x00", "\\0"), "a NUL byte in the path")
    roots = roots_for(policy, source_dir)
    if not roots:
        raise _refuse(who, column, raw, "no attachment root: set [attachments] roots, or "
                      "import the contact from a CSV whose folder holds the files")
    path = Path(raw)
    if any(part.startswith(".") and part not in (".", "..") for part in path.parts):
        raise _refuse(who, column, raw, "hidden files and folders are not attached")
    if not path.is_absolute():   # relative to the CSV's folder, else to the first root
        path = Path(source_dir) / path if source_dir else roots[0] / path
    real = Path(os.path.realpath(path))
    if any(_inside(real, f) for f in FORBIDDEN):
        raise _refuse(who, column, raw, f"files under {', '.join(map(str, FORBIDDEN))} are "
                      "never attached")
    if not any(_inside(real, root) for root in roots):
        where = ", ".join(map(str, roots))
        raise _refuse(who, column, raw, f"it resolves to {real}, outside the attachment "
                      f"root(s) {where}")
    if any(part.startswith(".") for part in real.relative_to(
            next(r for r in roots if _inside(real, r))).parts):
        raise _refuse(who, column, raw, "hidden files and folders are not attached")
    try:
        info = real.stat()
    except OSError as err:
        raise AttachmentError(f"{who}: attachment not found: {raw} (column '{column}'): "
                              f"{err.strerror or err}") from None
    _check_stat(policy, who, column, raw, info)
    return real


def _check_stat(policy: AttachmentPolicy, who: str, column: str, raw: str,
                info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise _refuse(who, column, raw, "not a regular file")
    if info.st_size > policy.max_file_bytes:
        raise _refuse(who, column, raw, f"{info.st_size:,} bytes, over the limit of "
                      f"{policy.max_file_bytes:,} per file ([attachments] max_file_bytes)")


def read(policy: AttachmentPolicy, who: str, column: str, raw: str, path: Path) -> bytes:
    """The bytes of a path `resolve` returned; the open file is checked again."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise AttachmentError(f"{who}: attachment {raw} (column '{column}'): "
                              f"{err.strerror or err}") from None
    with os.fdopen(fd, "rb") as fh:
        _check_stat(policy, who, column, raw, os.fstat(fd))
        return fh.read(policy.max_file_bytes + 1)


def check_total(policy: AttachmentPolicy, who: str, sizes: Sequence[int]) -> None:
    total = sum(sizes)
    if total > policy.max_message_bytes:
        raise AttachmentError(f"{who}: attachments of {total:,} bytes, over the limit of "
                              f"{policy.max_message_bytes:,} per message "
                              "([attachments] max_message_bytes)")
