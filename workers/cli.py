"""Console script entry point: the CLI with Celery's enqueue plugged in."""
from __future__ import annotations

from typing import Optional, Sequence

from campaigns import cli


def _enqueue() -> "cli.Enqueue":
    from workers.dispatch import enqueue
    return enqueue


def main(argv: Optional[Sequence[str]] = None) -> None:
    cli.set_enqueue(_enqueue)
    cli.app(args=list(argv) if argv is not None else None, prog_name="campaigns")


if __name__ == "__main__":
    main()
