"""``python -m storefront.migration_lint`` (``make migration-lint``): squawk on the PostgreSQL
SQL of every migration, one revision at a time (Alembic offline mode).

A finding fails the run unless the revision carries a reviewed exemption for that rule, a
line ``# squawk-exempt: <rule>[, <rule>...] -- <why it is safe here>`` (the reason is
required). An exemption whose rule no longer fires fails too: stale exemptions hide nothing.
A few rules are off everywhere (``EXCLUDED_RULES``, each with its reason; docs/migrations.md).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess  # nosec B404
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.script import Script

from storefront.migrating import alembic_config, scripts

# rules off for every revision, and why (docs/migrations.md, "The linter")
EXCLUDED_RULES = {
    # String(n) is the API's validation contract, mirrored in the schema; widening a varchar
    # is a catalogue-only change on PostgreSQL (no rewrite, no scan)
    "prefer-text-field": "varchar(n) lengths are part of the contract; widening is cheap",
    # counters and positions that are bounded far below 2^31 by the application's limits
    "prefer-bigint-over-int": "bounded counters; money is BigInteger everywhere",
    "prefer-bigint-over-smallint": "bounded enumerations (chain_version)",
    # each revision runs in one transaction (transaction_per_migration): a failure rolls the
    # whole revision back, so IF [NOT] EXISTS adds nothing; a CONCURRENTLY index, which
    # cannot be in a transaction, must use IF NOT EXISTS (checked in review)
    "prefer-robust-stmts": "one transaction per revision; a failed revision leaves nothing",
}
PG_VERSION = "15.0"
EXEMPTION = re.compile(r"^\s*#\s*squawk-exempt:\s*(?P<rules>[a-z0-9, -]+?)\s+--\s*(?P<why>.*)$")
MARKER = re.compile(r"^\s*#\s*squawk-exempt\b")
MIN_REASON = 20  # characters: "safe" is not a reason


@dataclass(slots=True)
class Finding:
    rule: str
    line: int
    message: str


@dataclass(slots=True)
class RevisionReport:
    revision: str
    path: str
    findings: list[Finding] = field(default_factory=list)  # not exempted: failures
    exempted: dict[str, int] = field(default_factory=dict)  # rule -> findings it covered
    problems: list[str] = field(default_factory=list)  # bad or stale exemptions

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problems


def exemptions(path: Path) -> tuple[dict[str, str], list[str]]:
    """The revision file's exemptions (rule -> reason) and what is wrong with any of them."""
    found: dict[str, str] = {}
    problems: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not MARKER.match(line):  # a comment line; the word elsewhere (docs) is not one
            continue
        match = EXEMPTION.match(line)
        if match is None:
            problems.append(f"line {number}: malformed exemption (# squawk-exempt: rule -- why)")
            continue
        why = match["why"].strip()
        for following in lines[number:]:  # the reason may go on over indented comment lines
            if not following.startswith("#   "):
                break
            why += " " + following.lstrip("# ").strip()
        if len(why) < MIN_REASON:
            problems.append(f"line {number}: the exemption needs a reason ({MIN_REASON}+ chars)")
        for rule in (r.strip() for r in match["rules"].split(",")):
            if rule:
                found[rule] = why
    return found, problems


def revision_sql(script: Script) -> str:
    """The PostgreSQL statements ``upgrade`` runs for this revision alone (offline mode)."""
    span = f"{script.down_revision}:{script.revision}" if script.down_revision else script.revision
    return _render(span)


def _render(span: str) -> str:
    cfg = alembic_config("postgresql+asyncpg://lint@localhost/lint")
    buffer = io.StringIO()
    cfg.output_buffer = buffer
    command.upgrade(cfg, span, sql=True)
    return buffer.getvalue()


MARK = re.compile(r"^-- Running upgrade\s+(?:(\S+)\s+)?->\s+(\S+)$", re.MULTILINE)


def every_revision_sql() -> dict[str, str]:
    """Each revision's statements, from one offline pass over them all (loading the
    revisions once instead of once per revision): what comes before the first revision
    (the session's settings) is repeated in front of each, as each runs after it."""
    sql = _render("base:head")
    marks = list(MARK.finditer(sql))
    if not marks:
        return {}
    starts = [sql.rfind("BEGIN;", 0, m.start()) for m in marks]
    starts = [start if start >= 0 else m.start() for start, m in zip(starts, marks, strict=True)]
    preamble = sql[: starts[0]]
    ends = [*starts[1:], len(sql)]
    return {
        m.group(2): preamble + sql[start:end]
        for m, start, end in zip(marks, starts, ends, strict=True)
    }


def squawk_binary() -> str:
    beside = Path(sys.executable).with_name("squawk")
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if found is None:
        raise SystemExit("squawk is not installed (dev dependency squawk-cli): run `make install`")
    return found


def squawk(sql_file: Path) -> list[Finding]:
    args = [squawk_binary(), "--reporter", "json", "--pg-version", PG_VERSION]
    args += [f"--exclude={rule}" for rule in sorted(EXCLUDED_RULES)]
    result = subprocess.run(  # noqa: S603  # nosec B603
        [*args, str(sql_file)], capture_output=True, text=True, check=False
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        if result.returncode == 0:
            return []
        raise RuntimeError(f"squawk failed ({result.returncode}): {result.stderr.strip()}")
    return [
        Finding(rule=item["rule_name"], line=int(item["line"]) + 1, message=item["message"])
        for item in json.loads(result.stdout)
    ]


def lint(sql_dir: Path) -> list[RevisionReport]:
    reports = []
    rendered = every_revision_sql()
    for script in reversed(list(scripts().walk_revisions())):
        path = Path(script.path)
        sql_file = sql_dir / f"{script.revision}.sql"
        sql_file.write_text(rendered[script.revision], encoding="utf-8")
        reports.append(judge(script.revision, path, squawk(sql_file)))
    return reports


def judge(revision: str, path: Path, findings: list[Finding]) -> RevisionReport:
    """Squawk's findings for one revision against the exemptions its file carries."""
    report = RevisionReport(revision, path.name)
    allowed, report.problems = exemptions(path)
    for finding in findings:
        if finding.rule in allowed:
            report.exempted[finding.rule] = report.exempted.get(finding.rule, 0) + 1
        else:
            report.findings.append(finding)
    for rule in sorted(set(allowed) - set(report.exempted)):
        report.problems.append(f"stale exemption: {rule} no longer fires here (remove it)")
    return report


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    keep = Path(args[0]) if args else None
    with tempfile.TemporaryDirectory(prefix="migration-sql-") as tmp:
        sql_dir = keep or Path(tmp)
        sql_dir.mkdir(parents=True, exist_ok=True)
        reports = lint(sql_dir)
    failed = 0
    for report in reports:
        exempt = ", ".join(f"{rule} x{n}" for rule, n in sorted(report.exempted.items()))
        status = "ok" if report.ok else "FAIL"
        print(
            f"{report.revision} {status:4} {report.path}"
            + (f"  (exempt: {exempt})" if exempt else "")
        )
        for finding in report.findings:
            print(f"    {report.revision}.sql:{finding.line}: {finding.rule}: {finding.message}")
        for problem in report.problems:
            print(f"    {problem}")
        failed += not report.ok
    where = f" (SQL kept in {keep})" if keep else ""
    print(f"{len(reports)} revisions linted by squawk, {failed} failing{where}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
