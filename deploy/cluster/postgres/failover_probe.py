"""Writes through HAProxy's primary port while a fault is injected, and reports how long
writes failed and whether any acknowledged write was lost.

Run by kill-primary.sh with Patroni's venv (it has psycopg): a writer inserts numbered rows,
one autocommit INSERT at a time, into ``failover_probe`` in the ``postgres`` database; after
``--warmup`` seconds it runs ``--fault`` (a shell command), keeps writing until a write
succeeds again and ``--after`` seconds more, then checks that every insert that returned
success is in the table (Jepsen's lost-write check, at the SQL level). Output:
one ``key: value`` line per measure; exit 1 if an acknowledged write was lost.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid

import psycopg


def connect(dsn: str) -> psycopg.Connection[tuple[object, ...]] | None:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=1)
    except psycopg.Error:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--fault", required=True, help="shell command injecting the fault")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=3.0)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--give-up", type=float, default=120.0)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:12]
    setup = connect(args.dsn)
    if setup is None:
        print("error: cannot connect before the fault", file=sys.stderr)
        return 2
    with setup:
        setup.execute(
            "create table if not exists failover_probe"
            " (run text not null, n bigint not null, at timestamptz not null default now(),"
            " primary key (run, n))"
        )

    acked: list[int] = []
    failed = 0
    n = 0
    conn = connect(args.dsn)
    start = time.monotonic()
    fault_at: float | None = None
    last_ok_before: float | None = None
    fault: subprocess.Popen[bytes] | None = None
    fault_done: float | None = None
    last_ack = start
    longest_gap = 0.0
    first_ok_after: float | None = None
    while True:
        now = time.monotonic()
        if fault_at is None and now - start >= args.warmup:
            # in the background: writes go on while a slow fault (a graceful stop) runs
            fault = subprocess.Popen(args.fault, shell=True)  # noqa: S602
            fault_at = time.monotonic()
        if fault is not None and fault.poll() is not None:
            if fault.returncode != 0:
                print(f"error: the fault command exited {fault.returncode}", file=sys.stderr)
                return 2
            fault_done = time.monotonic()
            fault = None
        if (
            fault_done is not None
            and first_ok_after is not None
            and now - max(fault_done, first_ok_after) >= args.after
        ):
            break
        if fault_done is not None and first_ok_after is None and now - fault_done > args.give_up:
            print(f"error: no write succeeded within {args.give_up:.0f} s", file=sys.stderr)
            break
        n += 1
        try:
            if conn is None or conn.closed:
                conn = connect(args.dsn)
                if conn is None:
                    raise psycopg.OperationalError("connect failed")
            conn.execute("insert into failover_probe (run, n) values (%s, %s)", (run, n))
        except psycopg.Error:
            failed += 1
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(args.interval)
            continue
        done = time.monotonic()
        acked.append(n)
        if fault_at is not None:
            longest_gap = max(longest_gap, done - last_ack)
        last_ack = done
        if fault_done is None:
            last_ok_before = done
        elif first_ok_after is None:
            first_ok_after = done
        time.sleep(args.interval)
    if conn is not None:
        conn.close()

    check = None
    for _ in range(40):  # the check itself may meet a primary still settling
        check = connect(args.dsn)
        if check is not None:
            break
        time.sleep(0.5)
    if check is None:
        print("error: cannot connect for the lost-write check", file=sys.stderr)
        return 2
    with check:
        rows = check.execute(
            "select n, count(*) from failover_probe where run = %s group by n", (run,)
        ).fetchall()
        primary = check.execute("select inet_server_port()").fetchone()
    present = {int(str(r[0])): int(str(r[1])) for r in rows}
    lost = [k for k in acked if k not in present]
    if fault_done is None:
        return 2
    print(f"run: {run}")
    print(f"writes attempted: {n}, acknowledged: {len(acked)}, failed: {failed}")
    if first_ok_after is not None and last_ok_before is not None:
        print(
            f"write outage (last ack before the fault -> first ack after): "
            f"{first_ok_after - last_ok_before:.2f} s"
        )
        print(f"writes accepted again after the fault: {first_ok_after - fault_done:.2f} s")
    else:
        print("writes accepted again after the fault: never")
    print(f"longest gap between acknowledged writes after the fault: {longest_gap:.2f} s")
    print(f"new primary port: {primary[0] if primary else '?'}")
    print(f"acknowledged writes lost: {len(lost)}")
    if lost:
        print(f"lost: {lost[:20]}")
    sys.stdout.flush()
    return 1 if lost or first_ok_after is None else 0


if __name__ == "__main__":
    sys.exit(main())
