"""The migration linter: squawk's findings, the reviewed exemptions, stale exemptions."""

from __future__ import annotations

from pathlib import Path

from storefront.migrating import scripts
from storefront.migration_lint import (
    EXCLUDED_RULES,
    every_revision_sql,
    exemptions,
    judge,
    revision_sql,
    squawk,
)

UNSAFE = """\
SET LOCAL lock_timeout = '5s';
SET LOCAL statement_timeout = '60s';
CREATE INDEX ix_orders_currency ON orders (currency);
ALTER TABLE orders ADD COLUMN note VARCHAR(20);
"""


def test_squawk_flags_a_blocking_index_and_skips_the_excluded_rules(tmp_path: Path) -> None:
    sql = tmp_path / "unsafe.sql"
    sql.write_text(UNSAFE)
    rules = {finding.rule for finding in squawk(sql)}
    assert "require-concurrent-index-creation" in rules
    assert not rules & set(EXCLUDED_RULES)  # prefer-text-field would fire on VARCHAR(20)


def test_a_finding_fails_unless_exempted_with_a_reason(tmp_path: Path) -> None:
    sql = tmp_path / "unsafe.sql"
    sql.write_text(UNSAFE)
    findings = squawk(sql)
    bare = tmp_path / "0099_bare.py"
    bare.write_text('"""a revision"""\n')
    assert not judge("0099", bare, findings).ok

    exempt = tmp_path / "0099_exempt.py"
    exempt.write_text(
        '"""a revision"""\n'
        "# squawk-exempt: require-concurrent-index-creation -- orders is empty in every\n"
        "#   deployment at this revision (reviewed)\n"
    )
    report = judge("0099", exempt, findings)
    assert report.ok, report
    assert report.exempted == {"require-concurrent-index-creation": 1}
    allowed, problems = exemptions(exempt)
    assert "every deployment" in allowed["require-concurrent-index-creation"]
    assert problems == []


def test_an_exemption_without_a_reason_or_for_a_rule_that_does_not_fire_fails(
    tmp_path: Path,
) -> None:
    terse = tmp_path / "0099_terse.py"
    terse.write_text("# squawk-exempt: require-concurrent-index-creation -- safe\n")
    sql = tmp_path / "unsafe.sql"
    sql.write_text(UNSAFE)
    report = judge("0099", terse, squawk(sql))
    assert not report.ok
    assert "reason" in report.problems[0]

    stale = tmp_path / "0099_stale.py"
    stale.write_text(
        "# squawk-exempt: ban-drop-column -- a column was dropped here once, long ago\n"
    )
    report = judge("0099", stale, [])
    assert report.problems == ["stale exemption: ban-drop-column no longer fires here (remove it)"]


def test_new_revisions_set_both_timeouts_first() -> None:
    """Revisions written from the template (0012 on) set lock_timeout and statement_timeout
    before anything else in their transaction."""
    for script in scripts().walk_revisions():
        if script.revision < "0012":
            continue
        statements = [
            line for line in revision_sql(script).splitlines() if line and not line.startswith("--")
        ]
        begin = statements.index("BEGIN;")
        assert statements[begin + 1 : begin + 3] == [
            "SET LOCAL lock_timeout = '5s';",
            "SET LOCAL statement_timeout = '60s';",
        ], script.revision


def test_one_pass_renders_each_revision_as_rendering_it_alone() -> None:
    """The linter renders every revision in one offline pass and splits it; the pieces are
    what rendering each revision on its own gives (checked on the first and the newest)."""
    every = every_revision_sql()
    ordered = list(reversed(list(scripts().walk_revisions())))
    assert list(every) == [script.revision for script in ordered]
    for script in (ordered[0], ordered[-1]):
        assert every[script.revision] == revision_sql(script)
