"""The hook behind `campaigns bounces classify FILE...`: one JSON-able dict per report."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from campaigns.bounces.parse import parse_bounce


def classify_files(paths: list[Path]) -> Iterator[dict[str, Any]]:
    """Parse each file as a returned message and yield one dict per recipient report. A file
    that names no recipient yields one row with category "unknown" and recipient None."""
    for path in paths:
        reports = parse_bounce(Path(path).read_bytes())
        if not reports:
            yield {"file": str(path), "recipient": None, "category": "unknown",
                   "permanent": False, "reason": "undefined", "status": None,
                   "reply_code": None, "diagnostic": None, "original_message_id": None,
                   "feedback_type": None, "final": True}
            continue
        for r in reports:
            yield {"file": str(path), "recipient": r.recipient, "category": r.category.value,
                   "permanent": r.permanent, "reason": r.reason, "status": r.status,
                   "reply_code": r.reply_code, "diagnostic": r.diagnostic,
                   "original_message_id": r.original_message_id,
                   "feedback_type": r.feedback_type, "final": r.final}
