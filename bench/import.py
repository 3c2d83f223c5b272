#!/usr/bin/env python3
"""make bench-import: the rate of `crm-load import meetings` from a local PostgreSQL 15 table
into a local server with the module, against the same number of meetings written one
CRM.MEETING.SET each (crm-load generate, pipelined), in one run.

The table holds N meetings of installation 10 as a CRM's schema has them: integer client,
type, status, a timestamptz date, json details of ~200 bytes. Each case starts from an empty
server (Redis 8.2 from $REDIS8 unless --server):
  - import: `crm-load import meetings --postgres ... --query 'SELECT * FROM meetings'`,
    through CRM.MEETING.MSET (200 meetings a call), checked by CRM.CHECK;
  - dry run: the same with --dry-run (reading, checking, and one HGET a meeting): the
    source side alone;
  - CRM.MEETING.SET: `crm-load generate --meetings N --neighbours 0` (the same fields, one
    call a meeting, 1,000 a pipeline).
The server's own time per meeting (INFO commandstats) is shown next to the wall-clock rate.

Prints a table and writes IMPORT.md into --out (default bench/).

Usage: import.py [--meetings 1000000] [--server PATH] [--out bench]
"""
import argparse
import datetime
import os
import platform
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import LOADER, MODULE, ROOT, Postgres, RedisServer, log  # noqa: E402

TABLE = """
CREATE TABLE meetings AS
SELECT g AS id, '10'::text AS installation, (1 + (g::bigint * 7919) % {clients})::integer AS clientid,
       (ARRAY['email', 'call', 'sms', 'visit', 'video'])[1 + g % 5] AS type,
       CASE WHEN g % 10 < 3 THEN 'open' ELSE 'close' END AS status,
       to_timestamp(1640995200 + g::bigint * 150) AS date,
       json_build_object('subject', 'Meeting ' || g, 'notes', repeat('Agenda: pricing, renewal. ', 5)) AS details
FROM generate_series(1, {meetings}) AS g
"""


def server_usec(server, command):
    stats = server.client.info("commandstats").get(f"cmdstat_{command}", {})
    return stats.get("usec", 0)


def run(server, args):
    """Runs crm-load against an empty server; its summary line and the server's µs."""
    server.client.flushall()
    server.client.config_resetstat()
    done = subprocess.run([LOADER, *args, "--port", str(server.port)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"crm-load {args} failed: {done.stderr}")
    line = done.stdout.strip().splitlines()[-1]
    usec = sum(server_usec(server, name) for name in ("crm.meeting.mset", "crm.meeting.set"))
    return line, usec


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=1_000_000)
    parser.add_argument("--server", default=os.environ.get("REDIS8", "redis-server"))
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    args = parser.parse_args()
    n = args.meetings

    pg = Postgres()
    server = RedisServer("crm", args.server, [MODULE])
    try:
        log(f"== {pg.version}: {n:,} meetings in a table")
        pg.conn.execute(TABLE.format(meetings=n, clients=max(n // 10, 1)))
        pg.conn.execute("VACUUM ANALYZE meetings")
        source = ["--postgres", f"postgresql://postgres@127.0.0.1:{pg.port}/postgres", "--query", "SELECT * FROM meetings"]
        rows = []
        for name, loader_args, rate_pattern in [
            ("import (CRM.MEETING.MSET)", ["import", "meetings", *source], r"([\d.]+) rows/s"),
            ("import --dry-run (source side)", ["import", "meetings", *source, "--dry-run"], r"([\d.]+) rows/s"),
            ("generate (CRM.MEETING.SET)", ["generate", "--meetings", str(n), "--neighbours", "0", "--users", "5"],
             r"([\d.]+) meetings/s"),
        ]:
            log(f"== {server.version}: {name}")
            line, usec = run(server, loader_args)
            log(line)
            if name.startswith("import (") and server.client.execute_command("CRM.CHECK", "10")[3][0] != 0:
                sys.exit("CRM.CHECK found drift after the import")
            rate = float(re.search(rate_pattern, line).group(1))
            rows.append((name, rate, usec / n if usec else None))
    finally:
        server.stop()
        pg.stop()

    base = rows[2][1]
    table = ["| how | meetings/s | server µs a meeting | vs CRM.MEETING.SET |", "| --- | ---: | ---: | ---: |"]
    for name, rate, usec in rows:
        table.append(f"| {name} | {rate:,.0f} | {'-' if usec is None else f'{usec:.1f}'} | {rate / base:.2f}x |")
    report = "\n".join([
        "# Import rate",
        "",
        f"{n:,} meetings from a local PostgreSQL table into an empty local server, written by `make bench-import`"
        f" ({datetime.date.today()}).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores. Server: {server.version} with the module."
        f" PostgreSQL: {pg.version}. The server, PostgreSQL and crm-load share the cores.",
        "",
        *table,
        "",
        "`import` reads with `COPY (query) TO STDOUT` and writes 200 meetings a CRM.MEETING.MSET call,"
        " the next call sent before the reply to the one before is read; `--dry-run` reads, checks and"
        " asks the server who owns each meeting, writing nothing. `generate` writes the same fields with"
        " one pipelined CRM.MEETING.SET a meeting.",
        "",
    ])
    print("\n".join(table))
    with open(os.path.join(args.out, "IMPORT.md"), "w") as out:
        out.write(report)


if __name__ == "__main__":
    main()
