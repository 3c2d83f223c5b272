#!/usr/bin/env python3
"""make bench-replica: a read replica's index under write load, in one run.

A primary and its replica (the same binary, both with the module), N meetings written by
`crm-load --unix-dates` on the primary. Queries (`CRM.MEETINGS 10 <user> FILTER ...
LIMIT 0 10`, a small user and a manager) run back to back on the replica for --seconds:
first quiet, then while the primary takes --rate CRM.MEETING.SET per second and the same
rate of raw SADD/SREM/ZADD/HSET on the keys the replica's index reads. For each phase:
queries, the share answered from the index (INFO crm plans), the server time per query
(INFO commandstats), and the loaded/quiet ratio.

Usage: replica.py [--meetings 100000] [--server PATH] [--seconds 20] [--rate 1000] [--out bench]
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import INSTALLATION, LOADER, MANAGER, MODULE, ROOT, SMALL_USER, crm_info, log  # noqa: E402
from cold import Server  # noqa: E402

QUERIES = [
    [SMALL_USER, "FILTER", "status", "open"],
    [SMALL_USER, "FILTER", "type", "email", "FILTER", "status", "open"],
    [MANAGER, "FILTER", "status", "open"],
    [MANAGER, "FILTER", "type", "call"],
]
PLANS = ("plan_filter_first", "plan_client_first", "plan_sort_walk")


def phase(replica, seconds):
    """Queries back to back on the replica; returns (queries, share from the index, µs per
    query on the server)."""
    client = replica.connect()
    client.config_resetstat()
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        client.execute_command("CRM.MEETINGS", INSTALLATION, *QUERIES[n % len(QUERIES)], "LIMIT", "0", "10")
        n += 1
    info = crm_info(client)
    from_index = sum(int(info.get(plan, 0)) for plan in PLANS)
    keyspace = int(info.get("plan_keyspace", 0))
    stats = client.info("commandstats").get("cmdstat_crm.meetings", {})
    return n, from_index / max(1, from_index + keyspace), float(stats.get("usec_per_call", 0.0))


class Writer(threading.Thread):
    """--rate CRM writes and --rate raw writes per second on the primary, in 10 ms batches."""

    def __init__(self, primary, meetings, rate):
        super().__init__(daemon=True)
        self.client, self.meetings, self.rate = primary.connect(), meetings, rate
        self.stop = threading.Event()
        self.written = 0

    def run(self):
        rng = random.Random(7)
        per_batch = max(1, self.rate // 100)
        next_at = time.perf_counter()
        while not self.stop.is_set():
            pipe = self.client.pipeline(transaction=False)
            for _ in range(per_batch):
                meeting = str(1 + rng.randrange(self.meetings))
                status = rng.choice(["open", "close"])
                pipe.execute_command(
                    "CRM.MEETING.SET", INSTALLATION, meeting, "clientid", str(1 + rng.randrange(self.meetings // 10)),
                    "type", rng.choice(["email", "call", "visit", "sms", "lunch"]), "status", status,
                    "date", str(1_700_000_000 + rng.randrange(10_000_000)), "details", '{"note":"edited"}')
                raw = str(1 + rng.randrange(self.meetings))
                pipe.sadd(f"meeting_status:{status}_ins_{INSTALLATION}", raw)
                pipe.srem(f"meeting_status:{'close' if status == 'open' else 'open'}_ins_{INSTALLATION}", raw)
                pipe.zadd("meeting_date", {f"meeting:{raw}": 1_700_000_000 + rng.randrange(10_000_000)})
                pipe.hset(f"meeting:{raw}", "details", '{"note":"raw"}')
            pipe.execute()
            self.written += per_batch
            next_at += 0.01
            time.sleep(max(0.0, next_at - time.perf_counter()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("REDIS8"), help="server binary (default $REDIS8)")
    parser.add_argument("--meetings", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=int, default=1000, help="CRM writes per second (and as many raw writes)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    args = parser.parse_args()
    if not args.server:
        sys.exit("--server or $REDIS8 is needed")
    dirs = [tempfile.mkdtemp(prefix="crm-replica-") for _ in range(2)]
    primary = replica = None
    try:
        primary = Server(args.server, [MODULE], dirs[0])
        replica = Server(args.server, [MODULE], dirs[1])
        log(f"loading {args.meetings:,} meetings into the primary")
        os.system(f"{LOADER} --port {primary.port} --meetings {args.meetings} --unix-dates > /dev/null")
        replica.client.replicaof("127.0.0.1", primary.port)
        while replica.client.info("replication").get("master_link_status") != "up" or \
                replica.client.info("persistence").get("loading"):
            time.sleep(0.1)
        # The replica's index is built by its first queries.
        for query in QUERIES:
            replica.client.execute_command("CRM.MEETINGS", INSTALLATION, *query, "LIMIT", "0", "10")
        while int(crm_info(replica.client).get("index_building", 0)):
            time.sleep(0.1)
        quiet = phase(replica, args.seconds)
        writer = Writer(primary, args.meetings, args.rate)
        writer.start()
        started = time.perf_counter()
        loaded = phase(replica, args.seconds)
        writer.stop.set()
        writer.join()
        rate = writer.written / (time.perf_counter() - started)
        info = crm_info(replica.client)
        lines = [
            f"# Replica under write load ({replica.version()}, {args.meetings:,} meetings)",
            "",
            f"Generated by `make bench-replica` on {time.strftime('%Y-%m-%d')}: queries back to back on the replica for "
            f"{args.seconds:g} s, quiet, then while the primary takes {rate:,.0f} CRM.MEETING.SET per second and as many "
            "raw SADD+SREM+ZADD+HSET groups on the keys the replica's index reads.",
            "",
            "| phase | queries | from the index | server µs per query |",
            "|---|---|---|---|",
            f"| quiet | {quiet[0]:,} | {100 * quiet[1]:.1f}% | {quiet[2]:.1f} |",
            f"| under writes | {loaded[0]:,} | {100 * loaded[1]:.1f}% | {loaded[2]:.1f} |",
            "",
            f"Loaded/quiet server time: {loaded[2] / max(quiet[2], 0.001):.2f}x. Replica index figures at the end: "
            f"{info.get('index_member_updates', 0)} parts followed member by member, "
            f"{info.get('index_invalidations', 0)} invalidations, {info.get('index_partial_rebuilds', 0)} partial rebuilds, "
            f"{info.get('index_waits', 0)} waits.",
        ]
        text = "\n".join(lines) + "\n"
        print(text)
        with open(os.path.join(args.out, "REPLICA.md"), "w") as out:
            out.write(text)
    finally:
        for server in (replica, primary):
            if server:
                server.stop()
        for directory in dirs:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
