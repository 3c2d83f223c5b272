#!/usr/bin/env python3
"""make bench, routing: what the module costs writes to keys it does not index, once it
holds many indexes (every write's keyspace notification is routed by the module).

The same server binary (Redis 8.2 from $REDIS8 unless --server) three times: with the module
holding --installations small indexed installations (--per meetings each, written with
CRM.MEETING.SET and queried once), with the module holding no index (the same writes), and
without the module (the same keys, by DUMP and RESTORE). --rounds rounds, each on fresh
processes: `redis-benchmark -P 16 -c 20 -r 1000000 -q -t <test>` for SET then HSET, one
uncounted run each, then --requests per test and server cut into --segments runs
interleaved across the servers; prints each server's median throughput, the median of the
rounds' losses against the server without the module, and the server's own CPU time per
request (INFO cpu, which client-side noise does not reach), and writes ROUTING.md into
--out.

Usage: routing.py [--server PATH] [--installations 1000] [--rounds 5] [--requests 6000000] [--segments 6] [--out bench]
"""
import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import redis

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing bench.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import MODULE, ROOT, RedisServer, crm_info, log  # noqa: E402

USER = "u1"
BENCHMARK_ARGS = ["-P", "16", "-c", "20", "-r", "1000000", "-q"]
TESTS = ["SET", "HSET"]


def redis_benchmark():
    """Debian's redis-tools (a dependency of redis-server), or $REDIS_BENCHMARK."""
    found = os.environ.get("REDIS_BENCHMARK") or shutil.which("redis-benchmark")
    if not found:
        sys.exit("no redis-benchmark: apt-get install redis-tools (make deps installs it), or set REDIS_BENCHMARK")
    return found


def populate(server, installations, per, query=True):
    """`per` meetings in each installation (ids unique across them), one user who sees every
    client; with `query`, one query per installation, then INFO until no index is building."""
    client = server.client
    client.sadd(f"clients_for_user:{USER}", *[f"c{k}" for k in range(per)])
    pipe = client.pipeline(transaction=False)
    for i in range(installations):
        installation = str(1000 + i)
        for k in range(per):
            pipe.execute_command("CRM.MEETING.SET", installation, str(i * per + k + 1), "clientid", f"c{k}",
                                 "type", ("email", "call")[k % 2], "status", ("open", "close")[k % 2],
                                 "date", str(1_650_000_000 + i * 3600 + k), "details", '{"subject":"routing"}')
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    if not query:
        return crm_info(client)
    for i in range(installations):
        pipe.execute_command("CRM.MEETINGS", str(1000 + i), USER, "FILTER", "status", "open")
    pipe.execute()
    deadline = time.time() + 120
    while time.time() < deadline:
        figures = crm_info(client)
        if int(figures["index_installations"]) >= installations and int(figures["index_building"]) == 0:
            return figures
        time.sleep(0.1)
    sys.exit(f"the {installations} indexes were not built in 120 s: {crm_info(client)}")


def copy_keys(source, target):
    """Every key of source into target (DUMP/RESTORE): the same data without the module."""
    raw_source = redis.Redis(port=source.port, socket_timeout=600)
    raw_target = redis.Redis(port=target.port, socket_timeout=600)
    keys = list(raw_source.scan_iter(count=1000))
    for start in range(0, len(keys), 1000):
        batch = keys[start:start + 1000]
        dumps = raw_source.pipeline(transaction=False)
        for key in batch:
            dumps.dump(key)
        pipe = raw_target.pipeline(transaction=False)
        for key, value in zip(batch, dumps.execute()):
            pipe.restore(key, 0, value, replace=True)
        pipe.execute()


def pin(pid, cpu):
    """On a machine of two cores or more, the server and redis-benchmark each get a core of
    their own: sharing one makes the rounds differ by more than the module costs."""
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(pid, {cpu})


def server_cpu(server):
    cpu = server.client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def run_test(binary, server, test, requests):
    """One redis-benchmark run of `test`: (seconds, the server's CPU seconds)."""
    cpu = server_cpu(server)
    out = subprocess.run([binary, "-p", str(server.port), *BENCHMARK_ARGS, "-t", test.lower(), "-n", str(requests)],
                         capture_output=True, text=True, timeout=600, preexec_fn=lambda: pin(0, 0)).stdout
    rate = re.search(r"([0-9.]+) requests per second", out.replace("\r", "\n"))
    if rate is None:
        sys.exit(f"redis-benchmark -t {test}: {out}")
    return requests / float(rate.group(1)), server_cpu(server) - cpu


def run_round(binary, servers, requests, segments, first):
    """One round: each server's `requests` per test, run in `segments` runs interleaved
    across the servers, each run in another of the servers' orders (ABC ACB BAC BCA CAB CBA,
    from order `first`): every server takes every place, and follows every other server,
    equally often, so neither a machine that drifts during the round nor what the server
    before left in the caches weighs on one server more. Per server and test: (requests per
    second, the server's CPU µs per request)."""
    orders = list(itertools.permutations(servers))
    per_run = requests // segments
    totals = {(server.name, test): [0.0, 0.0] for server in servers for test in TESTS}
    for segment in range(segments):
        for server in orders[(first + segment) % len(orders)]:
            for test in TESTS:
                seconds, cpu = run_test(binary, server, test, per_run)
                totals[(server.name, test)][0] += seconds
                totals[(server.name, test)][1] += cpu
    done = per_run * segments
    return {server.name: {test: (done / totals[(server.name, test)][0], totals[(server.name, test)][1] * 1e6 / done)
                          for test in TESTS} for server in servers}


def start_servers(args):
    """A round's servers, fresh: what a process draws at its start (where its memory lies,
    its hash seed) moves its throughput by a few percent for its whole life, so each round
    gets new processes and the median of the rounds does not carry one draw. The module
    holding --installations indexes, the module holding none (the same writes, never
    queried), and no module (the same keys by DUMP and RESTORE), each pinned to core 1."""
    indexed = RedisServer("indexed", args.server, [MODULE])
    plain = RedisServer("plain", args.server, [])
    idle = RedisServer("idle", args.server, [MODULE])
    servers = [indexed, plain, idle]
    try:
        check = {"before": populate(indexed, args.installations, args.per)}
        check["idle"] = populate(idle, args.installations, args.per, query=False)
        copy_keys(indexed, plain)
    except BaseException:
        for server in servers:
            server.stop()
        raise
    for server in servers:
        pin(server.process.pid, 1)
    return servers, check


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("REDIS8"), help="server binary (default $REDIS8)")
    parser.add_argument("--installations", type=int, default=1000)
    parser.add_argument("--per", type=int, default=5, help="meetings per installation")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=6_000_000, help="requests per test, server and round")
    parser.add_argument("--segments", type=int, default=6,
                        help="interleaved runs a round is cut into (a multiple of 6 uses every order equally)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    args = parser.parse_args()
    if not args.server:
        sys.exit("no server binary: set REDIS8 or pass --server (make bench sets it)")
    binary = redis_benchmark()
    log(f"== routing: {args.installations:,} indexed installations of {args.per} meetings;"
        f" {' '.join(BENCHMARK_ARGS)} -n {args.requests} a round in {args.segments} interleaved runs")
    rounds, checks = [], []
    for n in range(args.rounds):
        servers, check = start_servers(args)
        try:
            for server in servers:
                for test in TESTS:
                    run_test(binary, server, test, 3_000_000)  # uncounted: most keys exist from now on
            rounds.append(run_round(binary, servers, args.requests, args.segments, first=n))
            check["after"] = crm_info(servers[0].client)
            checks.append(check)
            version = servers[0].version
        finally:
            for server in servers:
                server.stop()
        for name, figures in rounds[-1].items():
            log(f"  round {n + 1} {name:7} " + "  ".join(
                f"{test} {rate:,.0f}/s ({cpu:.3f} µs CPU)" for test, (rate, cpu) in figures.items()))
    indexes = min(int(check["after"]["index_installations"]) for check in checks)
    idle_indexes = max(int(check["idle"]["index_installations"]) for check in checks)
    invalidations = sum(int(check["after"]["index_invalidations"]) - int(check["before"]["index_invalidations"])
                        for check in checks)
    lines = ["# Routing: writes to other keys with the module holding many indexes", "",
             f"`bench/routing.py` ({version}, the same binary three times): with the module holding"
             f" {args.installations:,} indexes ({args.installations:,} installations of {args.per} meetings written"
             f" with CRM.MEETING.SET, each queried once, their keys watched), with the module holding"
             f" {idle_indexes} (the same writes, never queried), and without the module (the same keys, by DUMP and"
             f" RESTORE). {args.rounds} rounds, each on three fresh processes (a process's memory placement and"
             " hash seed, drawn at its start, move its throughput by a few percent for its whole life):"
             f" `redis-benchmark {' '.join(BENCHMARK_ARGS)} -t set` (then `-t hset`), one uncounted run of"
             f" 3,000,000 against each, then {args.requests:,} requests per test and server cut into"
             f" {args.segments} runs interleaved across the servers, each run in another of their six orders"
             " (every server in every place, and after every other server, equally often), the servers on one"
             " core and redis-benchmark on the other. A round's throughput is its requests over its runs' time; the loss is the median of the"
             " rounds' losses against the server without the module. The server's CPU time per request (INFO"
             " cpu, user and system) is the cost itself, which client-side noise does not reach.", "",
             "| test | server | throughput (median) | loss (median) | loss per round | server CPU µs a request (median) |",
             "|---|---|---|---|---|---|"]
    labels = {"indexed": f"module, {args.installations:,} indexes", "idle": f"module, {idle_indexes} indexes",
              "plain": "without the module"}
    for test in TESTS:
        plain_cpu = statistics.median(run["plain"][test][1] for run in rounds)
        for name in ("indexed", "idle", "plain"):
            rate = statistics.median(run[name][test][0] for run in rounds)
            cpu = statistics.median(run[name][test][1] for run in rounds)
            if name == "plain":
                lines.append(f"| {test} | {labels[name]} | {rate:,.0f}/s | | | {cpu:.3f} |")
                continue
            losses = [(1 - run[name][test][0] / run["plain"][test][0]) * 100 for run in rounds]
            lines.append(f"| {test} | {labels[name]} | {rate:,.0f}/s | {statistics.median(losses):.1f}% |"
                         f" {', '.join(f'{loss:.1f}' for loss in losses)} | {cpu:.3f} ({(cpu / plain_cpu - 1) * 100:+.1f}%) |")
    lines += ["", f"Indexes after each round's writes: at least {indexes:,}; invalidations during them: {invalidations}.", ""]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ROUTING.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
