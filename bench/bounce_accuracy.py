"""Accuracy of the bounce classifier on the shared corpus of real messages.

    .venv/bin/python bench/bounce_accuracy.py [--quiet] [--only PREFIX]

Also scores the project's own documented fixture set (tests/bounces/documented/: SMTP reply
lines from RFCs and providers' published tables, returned messages in each MTA's documented
format), and reports hard precision: of the rows we call hard, the share whose truth is hard.

Reads ../shared/corpus/ beside the repository (override: CAMPAIGNS_CORPUS=DIR). For each row of
bounces/expected.tsv (sample, index) it compares the category of our report number `index`
with reason_to_category.tsv[expected reason], and checks that report names a recipient
address (the TSV has no recipient column; when a `recipient` column is present, the address
must be equal). It also scores every line of smtp_replies.tsv through classify_reply.
Exits 0 with a message when the corpus is absent.

Delay notices (DSN "Action: delayed", "will be retried") are scored like any report: category
expired, reason "delayed" (or the cause their words name), and `final=False`; how many rows
are delay notices is reported apart. Reply lines are classified as a receiver's replies
(`from_relay=False`), so "Relay access denied" there is auth, as the corpus labels it."""
from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campaigns.bounces import classify_reply, parse_bounce  # noqa: E402
from campaigns.bounces.model import BounceReport  # noqa: E402


def corpus_dir() -> Path:
    override = os.environ.get("CAMPAIGNS_CORPUS")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "corpus"


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


FIXTURES = ROOT / "tests" / "bounces" / "documented"


def score_bounces(corpus: Path, only: str | None
                  ) -> tuple[int, int, int, int, int, list[str], tuple[int, int]]:
    mapping = {r["reason"]: r["category"] for r in read_tsv(corpus / "reason_to_category.tsv")}
    rows = [r for r in read_tsv(corpus / "bounces" / "expected.tsv")
            if not only or r["sample"].startswith(only)]
    cache: dict[str, list[BounceReport]] = {}
    cat_ok = rcpt_ok = rcpt_total = delayed = called_hard = true_hard = 0
    misses: list[str] = []
    for row in rows:
        sample = row["sample"]
        if sample not in cache:
            cache[sample] = parse_bounce((corpus / "bounces" / "eml" / sample).read_bytes())
        reports = cache[sample]
        index = int(row["index"])
        got = reports[index - 1] if len(reports) >= index else None
        want = mapping.get(row["reason"], "unknown")
        if got is not None and got.category.value == "hard":
            called_hard += 1
            true_hard += want == "hard"
        if got is not None and got.category.value == want:
            cat_ok += 1
        else:
            misses.append(_miss(row, want, got))
        delayed += got is not None and not got.final
        rcpt_total += 1
        expected_rcpt = (row.get("recipient") or "").strip().lower()
        found = (got.recipient or "").lower() if got else ""
        if (found == expected_rcpt) if expected_rcpt else ("@" in found):
            rcpt_ok += 1
        elif got is None or not found:
            misses.append(f"  recipient  {sample}#{index}: got {found or None!r}")
    return cat_ok, rcpt_ok, rcpt_total, len(rows), delayed, misses, (true_hard, called_hard)


def _miss(row: dict[str, str], want: str, got: BounceReport | None) -> str:
    if got is None:
        return f"  {want:>9} <- (none)     {row['sample']}#{row['index']} [{row['reason']}]"
    diag = (got.diagnostic or "")[:110]
    return (f"  {want:>9} <- {got.category.value:<9} {row['sample']}#{row['index']} "
            f"[{row['reason']} {row['status']}] got {got.reason} {got.status} | {diag}")


def score_replies(path: Path) -> tuple[int, int, list[str]]:
    rows = read_tsv(path)
    ok = 0
    misses = []
    for row in rows:
        code = int(row["reply_code"]) if row["reply_code"].strip() else 0
        got = classify_reply(code, row["text"], row["enhanced_status"] or None)
        if got.category.value == row["expected_category"]:
            ok += 1
        else:
            misses.append(f"  {row['expected_category']:>9} <- {got.category.value:<9} "
                          f"{row['reply_code']} {row['enhanced_status']} {row['text'][:90]}")
    return ok, len(rows), misses


def score_fixtures() -> tuple[int, int, list[str]]:
    """Our own documented returned messages: tests/bounces/documented/expected.tsv (file,
    index, recipient, category, source)."""
    ok, rows, misses = 0, read_tsv(FIXTURES / "expected.tsv"), []
    for row in rows:
        reports = parse_bounce((FIXTURES / row["file"]).read_bytes())
        index = int(row["index"])
        got = reports[index - 1] if len(reports) >= index else None
        if got and got.category.value == row["category"] and \
                (got.recipient or "").lower() == row["recipient"].lower():
            ok += 1
        else:
            misses.append(f"  {row['category']:>9} <- {got.category.value if got else None!s:<9} "
                          f"{row['file']}#{index} {got.recipient if got else ''} "
                          f"{got.rule if got else ''}")
    return ok, len(rows), misses


def print_fixtures(quiet: bool) -> None:
    rep_ok, rep_total, rep_misses = score_replies(FIXTURES / "replies.tsv")
    msg_ok, msg_total, msg_misses = score_fixtures()
    if not quiet and (rep_misses or msg_misses):
        print("documented fixture misses (expected <- got):")
        print("\n".join(rep_misses + msg_misses))
    print(f"documented replies:  {rep_ok}/{rep_total} = {100 * rep_ok / max(rep_total, 1):.1f}%")
    print(f"documented messages: {msg_ok}/{msg_total} = {100 * msg_ok / max(msg_total, 1):.1f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quiet", action="store_true", help="print the figures only")
    parser.add_argument("--only", help="score only samples whose name starts with this")
    args = parser.parse_args()
    print_fixtures(args.quiet)
    corpus = corpus_dir()
    if not (corpus / "bounces" / "expected.tsv").is_file():
        print(f"bounce corpus not found at {corpus} (set CAMPAIGNS_CORPUS): skipped")
        return 0
    cat_ok, rcpt_ok, rcpt_total, total, delayed, misses, (true_hard, called_hard) = \
        score_bounces(corpus, args.only)
    rep_ok, rep_total, rep_misses = score_replies(corpus / "smtp_replies.tsv")
    print(f"corpus: {corpus}")
    if not args.quiet:
        print("misses (expected <- got):")
        print("\n".join(misses + rep_misses) or "  none")
    confusion = Counter((m.split()[0], m.split()[2]) for m in misses if "<-" in m)
    print("confusion (expected->got): " + ", ".join(f"{a}->{b} {n}" for (a, b), n in
                                                     confusion.most_common()))
    print(f"category accuracy:   {cat_ok}/{total} = {100 * cat_ok / max(total, 1):.1f}%")
    print(f"  {delayed} of the rows are delay notices (final=False)")
    print(f"hard precision:      {true_hard}/{called_hard} = "
          f"{100 * true_hard / max(called_hard, 1):.1f}% (of the rows called hard, truly hard)")
    rcpt_pct = 100 * rcpt_ok / max(rcpt_total, 1)
    print(f"recipient accuracy:  {rcpt_ok}/{rcpt_total} = {rcpt_pct:.1f}%")
    print(f"reply-line accuracy: {rep_ok}/{rep_total} = {100 * rep_ok / max(rep_total, 1):.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
