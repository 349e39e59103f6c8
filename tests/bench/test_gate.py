"""The regression gate's logic (bench/gate.py) on given measurements: nothing here is timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.gate import (
    KINDS,
    TOLERANCE,
    Check,
    Measured,
    Params,
    Sample,
    decide,
    main,
    ratio_key,
    ratios_of,
    table,
)

PARAMS = Params(scenarios=("cached",), connections=(16, 64), seconds=3, rounds=3, workers=1)
TOL = {"req/s": 0.4, "cpu": 0.4}
BARE_CPU = 100e-6  # the ceiling's CPU seconds per request in these examples


def pair(r: int, c: int, rps: float, cpu: float, bare: float = 1000.0) -> list[Sample]:
    """One round's ceiling and cached samples whose ratios are ``rps`` (throughput) and
    ``cpu`` (the ceiling's CPU per request over the scenario's)."""
    n_bare, n = int(3 * bare), int(3 * bare * rps)
    return [
        Sample(r, "bare", c, bare, 0, n_bare, n_bare * BARE_CPU),
        Sample(r, "cached", c, bare * rps, 0, n, n * BARE_CPU / cpu),
    ]


def measured(r16: float, r64: float, cpu: float = 0.5, errors: int = 0) -> Measured:
    s = [x for r in range(3) for c, v in ((16, r16), (64, r64)) for x in pair(r, c, v, cpu)]
    m = ratios_of(s, PARAMS)
    if errors:
        m.errors[ratio_key("cached", 64, "req/s")] = errors
    return m


def row(text: str, key: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(key))


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    path = tmp_path / "baseline.json"
    status, _ = decide(measured(0.5, 0.2), PARAMS, baseline_path=path, tolerance=TOL, write=True)
    assert status == 0
    return path


def test_a_ratio_is_the_median_of_each_rounds_own_pair() -> None:
    # the ceiling differs per round (other work on the machine): each round divides by its own
    s = [
        *pair(0, 16, 0.5, 0.4),
        *pair(1, 16, 0.52, 0.41, bare=400.0),  # a busy round: both sides drop
        *pair(2, 16, 0.1, 0.2),  # one disturbed sample
    ]
    m = ratios_of(s, Params(scenarios=("cached",), connections=(16,), rounds=3))
    assert m.ratios == pytest.approx({"cached/bare @16 req/s": 0.5, "cached/bare @16 cpu": 0.4})


def test_errors_are_counted_per_ratio() -> None:
    s = [x for r in range(3) for x in pair(r, 16, 0.5, 0.5)]
    s[0] = Sample(0, "bare", 16, 1000.0, 2, 3000, 0.3)
    m = ratios_of(s, Params(scenarios=("cached",), connections=(16,), rounds=3))
    assert m.errors == dict.fromkeys(("cached/bare @16 req/s", "cached/bare @16 cpu"), 2)


def test_a_missing_round_is_an_error_not_a_ratio() -> None:
    s = [x for r in range(2) for x in pair(r, 16, 0.5, 0.5)]
    with pytest.raises(ValueError, match="round 2"):
        ratios_of(s, Params(scenarios=("cached",), connections=(16,), rounds=3))


def test_write_stores_the_ratios_and_the_parameters(baseline: Path) -> None:
    data = json.loads(baseline.read_text())
    assert data["ratios"] == {
        "cached/bare @16 req/s": 0.5,
        "cached/bare @16 cpu": 0.5,
        "cached/bare @64 req/s": 0.2,
        "cached/bare @64 cpu": 0.5,
    }
    assert Params.from_json(data["params"]) == PARAMS


def test_write_refuses_a_measurement_with_errors(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    status, text = decide(
        measured(0.5, 0.2, errors=3), PARAMS, baseline_path=path, tolerance=TOL, write=True
    )
    assert status == 1
    assert "errors" in text
    assert not path.exists()


def test_the_same_ratios_pass(baseline: Path) -> None:
    status, text = decide(
        measured(0.5, 0.2), PARAMS, baseline_path=baseline, tolerance=TOL, write=False
    )
    assert status == 0
    assert "FAIL" not in text
    assert "bench-gate: PASS (4 ratios" in text


def test_a_drop_within_the_tolerance_passes_and_a_better_ratio_passes(baseline: Path) -> None:
    # 0.5 -> 0.31 is -38%, inside 40%; 0.2 -> 0.3 and the CPU ratio 0.5 -> 0.6 are better
    status, _ = decide(
        measured(0.31, 0.3, cpu=0.6), PARAMS, baseline_path=baseline, tolerance=TOL, write=False
    )
    assert status == 0


def test_a_worsened_throughput_ratio_beyond_the_tolerance_fails(baseline: Path) -> None:
    # 0.2 -> 0.11 is -45%: below the floor 0.12
    status, text = decide(
        measured(0.5, 0.11), PARAMS, baseline_path=baseline, tolerance=TOL, write=False
    )
    assert status == 1
    bad = row(text, "cached/bare @64 req/s")
    assert bad.split()[3:] == ["0.110", "0.200", "-40%", "0.120", "FAIL", "(-45%)"]
    assert "PASS" in row(text, "cached/bare @16 req/s")
    assert "PASS" in row(text, "cached/bare @64 cpu")
    assert "bench-gate: FAIL, 1 of 4 ratios regressed" in text
    assert "cached/bare @64 req/s" in text.splitlines()[-1]


def test_a_worsened_cpu_ratio_fails_at_the_same_throughput(baseline: Path) -> None:
    # the scenario now spends twice the CPU per request: 0.5 -> 0.25, below the floor 0.3
    status, text = decide(
        measured(0.5, 0.2, cpu=0.25), PARAMS, baseline_path=baseline, tolerance=TOL, write=False
    )
    assert status == 1
    assert "FAIL" in row(text, "cached/bare @16 cpu")
    assert "FAIL" in row(text, "cached/bare @64 cpu")
    assert "PASS" in row(text, "cached/bare @16 req/s")


def test_each_kind_has_its_own_tolerance(baseline: Path) -> None:
    m = measured(0.5, 0.2, cpu=0.35)  # CPU ratio -30%
    loose = {"req/s": 0.1, "cpu": 0.35}
    tight = {"req/s": 0.9, "cpu": 0.25}
    assert decide(m, PARAMS, baseline_path=baseline, tolerance=loose, write=False)[0] == 0
    assert decide(m, PARAMS, baseline_path=baseline, tolerance=tight, write=False)[0] == 1
    assert set(TOLERANCE) == set(KINDS)
    assert all(0 < t < 1 for t in TOLERANCE.values())


def test_errors_fail_even_at_a_good_ratio(baseline: Path) -> None:
    status, text = decide(
        measured(0.5, 0.2, errors=5), PARAMS, baseline_path=baseline, tolerance=TOL, write=False
    )
    assert status == 1
    assert "FAIL (5 errors)" in row(text, "cached/bare @64 req/s")


def test_a_ratio_without_a_baseline_fails(baseline: Path) -> None:
    data = json.loads(baseline.read_text())
    del data["ratios"]["cached/bare @64 cpu"]
    baseline.write_text(json.dumps(data))
    status, text = decide(
        measured(0.5, 0.2), PARAMS, baseline_path=baseline, tolerance=TOL, write=False
    )
    assert status == 1
    assert "FAIL (no baseline)" in row(text, "cached/bare @64 cpu")


def test_other_parameters_than_the_baselines_are_refused(baseline: Path) -> None:
    other = Params(scenarios=("cached",), connections=(16, 64), seconds=5, rounds=3)
    status, text = decide(
        measured(0.5, 0.2), other, baseline_path=baseline, tolerance=TOL, write=False
    )
    assert status == 2
    assert "same parameters" in text


def test_no_baseline_file_is_a_usage_error(tmp_path: Path) -> None:
    status, text = decide(
        measured(0.5, 0.2),
        PARAMS,
        baseline_path=tmp_path / "none.json",
        tolerance=TOL,
        write=False,
    )
    assert status == 2
    assert "--write" in text


def test_the_table_states_the_tolerance_and_the_floor() -> None:
    text = table([Check("cached/bare @16 cpu", 0.45, 0.5, 0.4)])
    header, _, line = text.splitlines()
    assert header.split() == ["ratio", "now", "baseline", "tolerance", "floor", "result"]
    assert line.split()[3:] == ["0.450", "0.500", "-40%", "0.300", "PASS", "(-10%)"]


def test_the_committed_baseline_matches_the_default_parameters() -> None:
    data = json.loads((Path(__file__).parents[2] / "bench" / "baseline.json").read_text())
    assert Params.from_json(data["params"]) == Params()
    p = Params()
    keys = {ratio_key(s, c, k) for s in p.scenarios for c in p.connections for k in KINDS}
    assert set(data["ratios"]) == keys
    assert all(0 < v < 2 for v in data["ratios"].values())


@pytest.mark.parametrize("tolerance", ["1", "-0.1"])
def test_a_tolerance_outside_zero_to_one_is_refused(tolerance: str) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--tolerance", tolerance])
    assert e.value.code == 2


def test_confirmation_rounds_are_pooled_into_the_median() -> None:
    # three rounds as asked, three more after a FAIL: the median runs over all six
    s = [x for r, v in enumerate([0.1, 0.1, 0.5, 0.5, 0.5, 0.5]) for x in pair(r, 16, v, v)]
    m = ratios_of(s, Params(scenarios=("cached",), connections=(16,), rounds=3))
    assert m.ratios == pytest.approx({"cached/bare @16 req/s": 0.5, "cached/bare @16 cpu": 0.5})


def test_a_missing_baseline_stops_the_gate_before_it_measures(tmp_path: Path) -> None:
    assert main(["--baseline", str(tmp_path / "none.json")]) == 2
