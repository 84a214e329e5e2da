"""Issue 12: the layering is checked, not described only. `lint-imports` runs the contracts
in pyproject.toml ([tool.importlinter]); the ledger is the one writer of campaign and
delivery state (an AST scan of every module); no module grows past the size a reader takes
in at once."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: the tables whose state only campaigns/ledger writes
LEDGER_TABLES = {"Campaign", "Delivery", "BounceEvent", "Suppression", "Event", "Message",
                 "MessageAttachment", "IdempotencyKey"}
WRITES = {"update", "insert", "delete"}
MAX_LINES = 430


def _modules() -> list[Path]:
    return sorted(p for pkg in ("campaigns", "workers") for p in (ROOT / pkg).rglob("*.py")
                  if "migrations" not in p.parts)


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout


def _writes(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each UPDATE/INSERT/DELETE of a ledger table and each ORM add of one."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        target = node.args[0]
        name = target.id if isinstance(target, ast.Name) else None
        func = node.func
        called = (func.id if isinstance(func, ast.Name) else
                  func.attr if isinstance(func, ast.Attribute) else
                  "insert" if isinstance(func, ast.Call) else None)   # insert_for(d)(Model)
        if name in LEDGER_TABLES and called in WRITES:
            found.append((node.lineno, f"{called}({name})"))
        if called == "add" and isinstance(target, ast.Call) and \
                isinstance(target.func, ast.Name) and target.func.id in LEDGER_TABLES:
            found.append((node.lineno, f"add({target.func.id}(...))"))
    return sorted(found)


def test_only_the_ledger_writes_campaign_and_delivery_state() -> None:
    outside = {}
    inside = 0
    for path in _modules():
        writes = _writes(ast.parse(path.read_text(), str(path)))
        if "ledger" in path.relative_to(ROOT).parts:
            inside += len(writes)
        elif writes:
            outside[str(path.relative_to(ROOT))] = writes
    assert outside == {}, f"writes of ledger tables outside campaigns/ledger: {outside}"
    assert inside >= 10       # the scan sees the ledger's own writes: it is looking


def test_the_scan_would_see_a_write_outside_the_ledger() -> None:
    code = ("s.execute(update(Delivery).values(status='x'))\n"
            "s.add(Campaign(name='n'))\n"
            "s.execute(insert_for(d)(Suppression).values())\n")
    assert [w for _, w in _writes(ast.parse(code))] == [
        "update(Delivery)", "add(Campaign(...))", "insert(Suppression)"]


def test_no_module_is_longer_than_a_reader_takes_in() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"
