#!/usr/bin/env python3
"""make bench, routing: what the module costs writes to keys it does not index, once it
holds many indexes (every write's keyspace notification is routed by the module).

The same server binary (Redis 8.2 from $REDIS8 unless --server) with the module, holding
--installations small indexed installations (--per meetings each, written with
CRM.MEETING.SET and queried once), and without the module, holding the same keys (DUMP and
RESTORE). `redis-benchmark -P 16 -c 20 -r 1000000 -t <test> -n --requests -q` for SET then
HSET against each, one uncounted round each first, then --rounds rounds alternating which
goes first; prints the median throughput with and without the module and the loss, and the
server's own CPU time per request (INFO cpu, which client-side noise does not reach), and
writes ROUTING.md into --out.

Usage: routing.py [--server PATH] [--installations 1000] [--rounds 5] [--requests 5000000] [--out bench]
"""
import argparse
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


def populate(server, installations, per):
    """`per` meetings in each installation (ids unique across them), one user who sees every
    client, one query per installation, then INFO until no index is building."""
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
    return len(keys)


def pin(pid, cpu):
    """On a machine of two cores or more, the server and redis-benchmark each get a core of
    their own: sharing one makes the rounds differ by more than the module costs."""
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(pid, {cpu})


def server_cpu(server):
    cpu = server.client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def run_benchmark(binary, server, requests):
    """Each test: (requests per second, the server's CPU µs per request)."""
    results = {}
    for test in TESTS:
        cpu = server_cpu(server)
        out = subprocess.run([binary, "-p", str(server.port), *BENCHMARK_ARGS, "-t", test.lower(), "-n", str(requests)],
                             capture_output=True, text=True, timeout=600, preexec_fn=lambda: pin(0, 0)).stdout
        rate = re.search(r"([0-9.]+) requests per second", out.replace("\r", "\n"))
        if rate is None:
            sys.exit(f"redis-benchmark -t {test}: {out}")
        results[test] = (float(rate.group(1)), (server_cpu(server) - cpu) * 1e6 / requests)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("REDIS8"), help="server binary (default $REDIS8)")
    parser.add_argument("--installations", type=int, default=1000)
    parser.add_argument("--per", type=int, default=5, help="meetings per installation")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5_000_000, help="requests per test and round")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    args = parser.parse_args()
    if not args.server:
        sys.exit("no server binary: set REDIS8 or pass --server (make bench sets it)")
    binary = redis_benchmark()
    with_module = RedisServer("module", args.server, [MODULE])
    without = RedisServer("plain", args.server, [])
    try:
        log(f"== routing: {args.installations:,} indexed installations of {args.per} meetings, {with_module.version}")
        before = populate(with_module, args.installations, args.per)
        keys = copy_keys(with_module, without)
        for server in (with_module, without):
            pin(server.process.pid, 1)
        log(f"  {keys:,} keys in each server; {' '.join(BENCHMARK_ARGS)} -n {args.requests}")
        rates = {"module": [], "plain": []}
        for server in (with_module, without):
            run_benchmark(binary, server, args.requests)  # uncounted: the keys exist from now on
        for n in range(args.rounds):
            order = (with_module, without) if n % 2 == 0 else (without, with_module)
            for server in order:
                rates[server.name].append(run_benchmark(binary, server, args.requests))
                log(f"  round {n + 1} {server.name:6} " + "  ".join(
                    f"{test} {rate:,.0f}/s ({cpu:.3f} µs CPU)" for test, (rate, cpu) in rates[server.name][-1].items()))
        after = crm_info(with_module.client)
        version = with_module.version
    finally:
        with_module.stop()
        without.stop()
    lines = ["# Routing: writes to other keys with the module holding many indexes", "",
             f"`bench/routing.py` ({version}, the same binary with and without the module): {args.installations:,}"
             f" installations of {args.per} meetings, each queried once, so the module holds"
             f" {int(before['index_installations']):,} indexes and watches their keys;"
             f" `redis-benchmark {' '.join(BENCHMARK_ARGS)} -n {args.requests} -t set` (then `-t hset`),"
             f" {args.rounds} alternating rounds"
             " (after one uncounted round each), the server under test on one core and redis-benchmark on"
             " the other. The loss is the median of the rounds' losses (each round runs both servers back"
             " to back, so a machine that slows down for a while slows both); the throughputs are the"
             " medians of each server's rounds. The server's CPU time per request (INFO cpu, user and"
             " system, over the test) is the cost itself, which the throughput shows through the noise of"
             " a shared machine.", "",
             "| test | with the module | without | loss (median) | loss per round | server CPU µs a request, with / without |",
             "|---|---|---|---|---|---|"]
    for test in TESTS:
        module = statistics.median(run[test][0] for run in rates["module"])
        plain = statistics.median(run[test][0] for run in rates["plain"])
        losses = [(1 - m[test][0] / p[test][0]) * 100 for m, p in zip(rates["module"], rates["plain"])]
        rounds = ", ".join(f"{loss:.1f}" for loss in losses)
        cpu_module = statistics.median(run[test][1] for run in rates["module"])
        cpu_plain = statistics.median(run[test][1] for run in rates["plain"])
        lines.append(f"| {test} | {module:,.0f}/s | {plain:,.0f}/s | {statistics.median(losses):.1f}% | {rounds}"
                     f" | {cpu_module:.3f} / {cpu_plain:.3f} (+{(cpu_module / cpu_plain - 1) * 100:.1f}%) |")
    lines += ["", f"Indexes after the rounds: {int(after['index_installations']):,} (invalidations"
              f" {int(before['index_invalidations']):,} before, {int(after['index_invalidations']):,} after).", ""]
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ROUTING.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
