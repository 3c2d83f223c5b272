#!/usr/bin/env python3
"""make bench-cold: what clients see right after the data comes back from an RDB, for
CRM.MEETINGS and for RediSearch on the same data, in one run.

One server binary (Redis 8.2 from $REDIS8 unless --server), N meetings written by
`crm-load --unix-dates` and saved to an RDB. For the module:
  - no traffic: a fresh process on the RDB, one query, INFO polled until the index is built;
  - DEBUG RELOAD and a real restart (SHUTDOWN, then the same binary on the same dir) of
    a warm server, each followed at once by --clients threads querying back to back
    (`CRM.MEETINGS 10 <user> FILTER status open LIMIT 0 10`, users 7 and 1 as in bench.py)
    for --window seconds, a thread sending PING every 10 ms and one polling INFO crm;
  - the same two with `crm.index-preload all`, when the module has that setting.
An error starting with LOADING is counted by kind (the server's "loading the dataset", or
the module's "index still loading") and retried after --retry-delay.
For RediSearch ($REDISEARCH_SO, loaded alone into the same binary, started from the same
RDB): FT.CREATE on the existing data, then DEBUG RELOAD and a restart, each until FT.INFO
says indexing is done, with the equivalent FT.SEARCH (user 7) run meanwhile (10 ms apart)
and its total compared with the final one.

Prints a table and writes COLD.md into --out (default bench/).

Usage: cold.py [--meetings 1000000] [--server PATH] [--window 15] [--clients 10] [--out bench]
"""
import argparse
import collections
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import redis

sys.dont_write_bytecode = True  # no bench/__pycache__ from importing bench.py
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import INSTALLATION, LOADER, MANAGER, MODULE, ROOT, SMALL_USER, Query, crm_info, free_port, ft_info, log, search_args  # noqa: E402

USERS = [SMALL_USER, MANAGER]
PRELOAD = ("crm.index-preload", "all")
# Between two FT.SEARCH during indexing: back to back, they starve RediSearch's background
# indexing (at 1,000,000 meetings it was not done after 10 minutes).
SEARCH_PAUSE = 0.01


def query(user):
    return ["CRM.MEETINGS", INSTALLATION, user, "FILTER", "status", "open", "LIMIT", "0", "10"]


def search_query(client):
    """The FT.SEARCH equivalent of query(SMALL_USER): the user's clients as a TAG list."""
    clients = client.smembers(f"clients_for_user:{SMALL_USER}")
    return search_args(Query("cold", SMALL_USER, (("status", "open"),)), clients)


class Server:
    """A server on a free loopback port whose dir (and RDB) outlives a restart."""

    def __init__(self, binary, modules, directory):
        self.binary, self.modules, self.dir = binary, modules, directory
        self.port = free_port()
        self.process = None
        self.start()

    def start(self, extra=()):
        """Starts the process and waits until the RDB is loaded; returns the seconds taken."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--logfile", "server.log",
                "--enable-debug-command", "local"]
        for module in self.modules:
            args += ["--loadmodule", module]
        started = time.perf_counter()
        self.process = subprocess.Popen(args + list(extra), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        self.client = self.connect()
        while True:
            if self.process.poll() is not None:
                sys.exit(f"{self.binary} exited (log: {self.dir}/server.log):\n" + self.log_tail())
            try:
                if self.client.info("persistence").get("loading") == 0:
                    break
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                pass
            time.sleep(0.01)
        return time.perf_counter() - started

    def connect(self, timeout=600):
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=timeout)

    def version(self):
        info = self.client.info("server")
        return f"{'Valkey' if 'valkey_version' in info else 'Redis'} {info.get('valkey_version', info['redis_version'])}"

    def log_tail(self):
        try:
            return "".join(open(os.path.join(self.dir, "server.log")).readlines()[-15:])
        except OSError:
            return ""

    def restart(self, extra=()):
        """SHUTDOWN NOSAVE (the RDB in the dir is the data) and the same binary on the same dir."""
        self.shutdown()
        return self.start(extra)

    def shutdown(self):
        try:
            self.client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def error_kind(error):
    """redis-py strips the error code of the errors it knows (LOADING, ERR...)."""
    message = str(error)
    if isinstance(error, redis.exceptions.BusyLoadingError):
        return "LOADING (server, dataset)" if "loading the dataset" in message else "LOADING (module, index)"
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return type(error).__name__
    return message[:60]


def percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


class Pinger(threading.Thread):
    """PING every 10 ms on its own connection, across reloads and restarts (a LOADING reply
    counts as an answer; while the port is closed nothing is counted): the longest time the
    server kept a client waiting, by when each PING was sent."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.client = redis.Redis(port=port, socket_timeout=600, socket_connect_timeout=1)
        self.stop, self.samples = threading.Event(), []
        self.start()

    def run(self):
        while not self.stop.is_set():
            sent = time.perf_counter()
            try:
                self.client.ping()
            except redis.exceptions.BusyLoadingError:
                pass
            except (redis.ConnectionError, redis.TimeoutError):
                self.stop.wait(0.005)
                continue
            self.samples.append((sent, (time.perf_counter() - sent) * 1e3))
            self.stop.wait(0.01)

    def finish(self):
        self.stop.set()
        self.join()

    def max_ms(self, since=0.0, until=float("inf")):
        return max((ms for sent, ms in self.samples if since <= sent < until), default=None)


def keyspace_answers(figures):
    """Answers from the keyspace path: crm_index_keyspace_answers where the module has it."""
    return int(figures.get("index_keyspace_answers", figures.get("plan_keyspace", 0)))


# Counters of queries that waited for a loading index, and of the LOADING errors, where the
# module has them.
WAIT_COUNTERS = ("index_waits", "index_wait_timeouts", "index_loading_errors")


def wait_built(client, base_builds, started, timeout, poll=0.05):
    """Polls INFO crm until no index is building and a build completed since base_builds;
    returns the seconds from started, or None at the timeout, and the last figures."""
    deadline = time.perf_counter() + timeout
    while True:
        figures = crm_info(client)
        if int(figures.get("index_building", 0)) == 0 and int(figures.get("index_builds", 0)) > base_builds:
            return time.perf_counter() - started, figures
        if time.perf_counter() > deadline:
            return None, figures
        time.sleep(poll)


def no_traffic_build(server, timeout):
    """One query on a process just restarted from the RDB, then INFO until the index is built."""
    pinger = Pinger(server.port)
    started = time.perf_counter()
    server.client.execute_command(*query(SMALL_USER))
    first = time.perf_counter() - started
    built, figures = wait_built(server.client, 0, started, timeout)
    pinger.finish()
    return {"case": "no traffic, one query", "first_answer_s": first, "built_s": built,
            "last_build_ms": int(figures.get("index_last_build_ms", 0)),
            "longest_hold_us": int(figures.get("index_longest_hold_us", 0)), "ping_max_ms": pinger.max_ms(),
            "keyspace_answers": keyspace_answers(figures),
            "waits": {name: int(figures[name]) for name in WAIT_COUNTERS if name in figures}}


def module_case(server, case, reload, restart, args):
    """`reload` (DEBUG RELOAD or a restart), then at once --clients threads querying back to
    back for --window seconds, a pinger throughout, and INFO crm polled until the index is
    built (past the window if need be, without clients)."""
    # Nothing is sent between the reload and the clients' first queries (a build the reload
    # starts may hold the server): the counters are read before it (a new process has none).
    before = {} if restart else crm_info(server.client)
    base_builds = int(before.get("index_builds", 0))
    pinger = Pinger(server.port)
    connections = [server.connect() for _ in range(args.clients)]
    if not restart:
        for connection in connections:
            connection.ping()  # connected before the clock starts
    reload_s = reload()
    barrier = threading.Barrier(args.clients + 1)
    stop = threading.Event()
    per_client = [{"latencies": [], "errors": collections.Counter(), "first": None, "totals": set()}
                  for _ in range(args.clients)]

    def work(i):
        user = USERS[i % len(USERS)]
        mine = per_client[i]
        barrier.wait()
        while not stop.is_set():
            sent = time.perf_counter()
            try:
                reply = connections[i].execute_command(*query(user))
            except redis.RedisError as error:
                mine["errors"][error_kind(error)] += 1
                stop.wait(args.retry_delay)
                continue
            now = time.perf_counter()
            mine["latencies"].append((now - sent) * 1e3)
            mine["totals"].add((user, reply[0]))
            if mine["first"] is None:
                mine["first"] = now - started

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    monitor = server.connect()
    barrier.wait()
    started = time.perf_counter()
    built, figures = wait_built(monitor, base_builds, started, args.window)
    remaining = args.window - (time.perf_counter() - started)
    if remaining > 0:
        time.sleep(remaining)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    after = crm_info(monitor)
    if built is None:
        built, figures = wait_built(monitor, base_builds, started, args.build_timeout)
    pinger.finish()
    latencies = [ms for c in per_client for ms in c["latencies"]]
    firsts = [c["first"] for c in per_client]
    totals = collections.defaultdict(set)
    for c in per_client:
        for user, total in c["totals"]:
            totals[user].add(total)
    return {"case": case, "reload_s": reload_s, "ping_max_reload_ms": pinger.max_ms(until=started),
            "window_s": elapsed, "all_answered_s": None if None in firsts else max(firsts),
            "answers": len(latencies), "errors": dict(sum((c["errors"] for c in per_client), collections.Counter())),
            "p50_ms": percentile(latencies, 0.5), "p99_ms": percentile(latencies, 0.99),
            "max_ms": max(latencies, default=None),
            "built_s": built, "built_in_window": built is not None and built <= elapsed,
            "last_build_ms": int(figures.get("index_last_build_ms", 0)),
            "longest_hold_us": int(figures.get("index_longest_hold_us", 0)),
            "ping_max_ms": pinger.max_ms(since=started),
            "keyspace_answers": keyspace_answers(after) - keyspace_answers(before),
            "waits": {name: int(after[name]) - int(before.get(name, 0)) for name in WAIT_COUNTERS if name in after},
            "totals": {user: sorted(values) for user, values in totals.items()}}


def warm(server, timeout):
    """Both users' queries until the index is built: the server in service before a reload."""
    deadline = time.perf_counter() + timeout
    for user in USERS:
        server.client.execute_command(*query(user))
    while time.perf_counter() < deadline:
        figures = crm_info(server.client)
        if int(figures.get("index_installations", 0)) > 0 and int(figures.get("index_building", 0)) == 0:
            break
        time.sleep(0.05)
    for user in USERS:
        server.client.execute_command(*query(user))


def preload_supported(server):
    try:
        server.client.config_set(*PRELOAD)
        return True
    except redis.ResponseError as error:
        log(f"  CONFIG SET {' '.join(PRELOAD)} failed ({error}): the setting is missing, its cases are skipped")
        return False


def timed(action):
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_module(args, seed_rdb, module):
    results = []
    directory = tempfile.mkdtemp(prefix="crm-cold-")
    shutil.copy(seed_rdb, os.path.join(directory, "dump.rdb"))
    server = Server(args.server, [module], directory)
    try:
        log("  module: a fresh process on the RDB, one query, no traffic")
        results.append(no_traffic_build(server, args.build_timeout))
        crm_total = server.client.execute_command(*query(SMALL_USER))[0]

        def case(name, reload, restart):
            warm(server, args.build_timeout)
            log(f"  module: {name}, {args.clients} clients for {args.window:g} s")
            results.append(module_case(server, name, reload, restart, args))

        case("DEBUG RELOAD", lambda: timed(lambda: server.client.execute_command("DEBUG", "RELOAD")), False)
        case("restart", server.restart, True)
        if preload_supported(server):
            case("DEBUG RELOAD, preload all",
                 lambda: timed(lambda: server.client.execute_command("DEBUG", "RELOAD")), False)
            case("restart, preload all", lambda: server.restart(["--" + PRELOAD[0], PRELOAD[1]]), True)
        else:
            results.append({"case": "preload all", "skipped": f"CONFIG SET {' '.join(PRELOAD)} failed"})
        return results, crm_total
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def search_phase(server, case, ft, reload, timeout):
    """`reload` (FT.CREATE, DEBUG RELOAD or a restart), then the equivalent FT.SEARCH every
    SEARCH_PAUSE and FT.INFO polled until indexing is done; then how many answers meanwhile
    had a total other than the final one."""
    pinger = Pinger(server.port)
    reload_s = reload()
    stop = threading.Event()
    answers, errors = [], collections.Counter()
    client = server.connect()  # connects with its first query

    def work():
        while not stop.is_set():
            sent = time.perf_counter()
            try:
                total = client.execute_command(*ft)[0]
            except redis.RedisError as error:
                errors[error_kind(error)] += 1
                stop.wait(0.01)
                continue
            answers.append((total, (time.perf_counter() - sent) * 1e3))
            stop.wait(SEARCH_PAUSE)

    thread = threading.Thread(target=work, daemon=True)
    started = time.perf_counter()
    thread.start()
    indexed, polls = None, 0
    while time.perf_counter() - started < timeout:
        info = ft_info(server.client)
        polls += 1
        if str(info.get("indexing")) == "0" and float(info.get("percent_indexed", 0)) >= 1:
            indexed = time.perf_counter() - started
            break
        time.sleep(0.05)
    stop.set()
    thread.join()
    pinger.finish()
    final = server.client.execute_command(*ft)[0]
    latencies = [ms for _, ms in answers]
    return {"case": case, "reload_s": reload_s, "ping_max_reload_ms": pinger.max_ms(until=started),
            "indexed_s": indexed, "already_indexed": polls == 1 and indexed is not None,
            "answers": len(answers), "incomplete": sum(total != final for total, _ in answers),
            "min_total": min((total for total, _ in answers), default=None), "final_total": final,
            "errors": dict(errors), "p50_ms": percentile(latencies, 0.5), "max_ms": max(latencies, default=None),
            "ping_max_ms": pinger.max_ms(since=started)}


def run_search(args, seed_rdb):
    """RediSearch alone in the same binary, started from the same RDB."""
    directory = tempfile.mkdtemp(prefix="crm-cold-search-")
    shutil.copy(seed_rdb, os.path.join(directory, "dump.rdb"))
    server = Server(args.server, [args.search_so], directory)
    results = []
    try:
        client = server.client
        version = next((f"RediSearch {m['ver'] // 10000}.{m['ver'] // 100 % 100}.{m['ver'] % 100}"
                        for m in client.module_list() if m["name"] == "search"), "RediSearch")
        # Complete results, as in bench.py: no timeout (it would return a silently partial total).
        client.execute_command("FT.CONFIG", "SET", "TIMEOUT", "0")
        client.execute_command("FT.CONFIG", "SET", "ON_TIMEOUT", "FAIL")
        ft = search_query(client)
        create = ["FT.CREATE", "idx", "ON", "HASH", "PREFIX", 1, "meeting:", "SCHEMA", "installation", "TAG",
                  "type", "TAG", "status", "TAG", "clientid", "TAG", "date", "NUMERIC", "SORTABLE"]
        for name, reload in [("FT.CREATE on existing data", lambda: timed(lambda: server.client.execute_command(*create))),
                             ("DEBUG RELOAD", lambda: timed(lambda: server.client.execute_command("DEBUG", "RELOAD"))),
                             # DEBUG RELOAD left the RDB, with the index's definition, in the dir.
                             ("restart", server.restart)]:
            log(f"  RediSearch: {name}")
            results.append(search_phase(server, name, ft, reload, args.build_timeout))
        return results, version
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def generate(args, work, module):
    """crm-load into a fresh server, SAVE, and the RDB kept aside as the seed of every case."""
    directory = os.path.join(work, "gen")
    os.mkdir(directory)
    server = Server(args.server, [module], directory)
    try:
        version = server.version()
        log(f"== {version}: crm-load --meetings {args.meetings:,} --neighbours {args.neighbours} --unix-dates")
        started = time.perf_counter()
        subprocess.run([LOADER, "--port", str(server.port), "--meetings", str(args.meetings), "--neighbours",
                        str(args.neighbours), "--unix-dates"], check=True, stdout=subprocess.DEVNULL)
        load_s = time.perf_counter() - started
        keys = server.client.dbsize()
        server.client.save()
        seed = os.path.join(work, "seed.rdb")
        shutil.copy(os.path.join(directory, "dump.rdb"), seed)
        return seed, version, keys, load_s
    finally:
        server.shutdown()
        shutil.rmtree(directory, ignore_errors=True)


def fmt(value, unit="", digits=2):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{unit}"
    return f"{value:,}{unit}"


def errors_cell(errors):
    return ", ".join(f"{kind}: {count:,}" for kind, count in sorted(errors.items())) or "none"


def waits_cell(waits):
    if not waits:
        return "—"
    return " / ".join(f"{waits.get(name, 0):,}" for name in WAIT_COUNTERS)


def render(r):
    lines = ["# Cold start: CRM.MEETINGS and RediSearch after the data comes back", "",
             f"Run on {r['date']} with `{r['command']}` (`make bench-cold`).", "",
             f"Machine: {r['machine']}. Server: {r['server']}. Data: `crm-load --meetings {r['meetings']:,}"
             f" --neighbours {r['neighbours']} --unix-dates` ({r['keys']:,} keys, written in {r['load_s']:.1f} s),"
             " saved to an RDB that every case starts from.", "",
             f"Query: `{' '.join(query('<user>'))}`, {r['clients']} clients back to back for {r['window']:g} s"
             f" (users {' and '.join(USERS)} alternately; a LOADING error is counted and retried after"
             f" {r['retry_delay'] * 1e3:g} ms), a PING every 10 ms throughout, INFO crm polled every 50 ms. The"
             " server was warm (index built) before each DEBUG RELOAD or restart; the clients start as soon as"
             " DEBUG RELOAD returns or the restarted server has loaded the RDB (INFO `loading:0`), and times"
             " are from then.", "",
             "## CRM.MEETINGS", "",
             "| case | reload / RDB load | PING max in it | all clients answered | index built | answers | errors"
             " | p50 / p99 / max | longest hold | PING max after | keyspace answers | waits / timeouts / LOADING |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for c in r["module"]:
        if "skipped" in c:
            lines.append(f"| {c['case']} | skipped: {c['skipped']}, the setting is missing |" + " |" * 10)
            continue
        if "window_s" not in c:
            lines.append(f"| {c['case']} | — | — | {fmt(c['first_answer_s'], ' s', 3)} | {fmt(c['built_s'], ' s')}"
                         f" ({c['last_build_ms']:,} ms build) | 1 | none | — | {c['longest_hold_us']:,} µs |"
                         f" {fmt(c['ping_max_ms'], ' ms', 1)} | {c['keyspace_answers']:,} | {waits_cell(c['waits'])} |")
            continue
        built = fmt(c["built_s"], " s") if c["built_s"] is not None else f"not in {r['build_timeout']:g} s"
        if c["built_s"] is not None and not c["built_in_window"]:
            built += " (after the window)"
        answered = fmt(c["all_answered_s"], " s", 3) if c["all_answered_s"] is not None else "not all"
        lines.append(f"| {c['case']} | {fmt(c['reload_s'], ' s')} | {fmt(c['ping_max_reload_ms'], ' ms', 0)} |"
                     f" {answered} | {built} | {c['answers']:,} | {errors_cell(c['errors'])} |"
                     f" {fmt(c['p50_ms'], '', 1)} / {fmt(c['p99_ms'], '', 1)} / {fmt(c['max_ms'], ' ms', 1)} |"
                     f" {c['longest_hold_us']:,} µs | {fmt(c['ping_max_ms'], ' ms', 1)} | {c['keyspace_answers']:,} |"
                     f" {waits_cell(c['waits'])} |")
        for user, values in c["totals"].items():
            if len(values) > 1:
                notes.append(f"{c['case']}: user {user}'s totals differed between answers: {values}")
    lines += [""] + [f"- {note}" for note in notes] + ([""] if notes else [])
    lines += ["*PING max in it*: the longest PING sent during the reload or restart (a LOADING reply counts"
              " as an answer). *index built*: INFO crm shows `crm_index_building:0` and `crm_index_builds` past"
              " its value before the reload. *longest hold*: `crm_index_longest_hold_us`, the module's own"
              " maximum since the process started (after DEBUG RELOAD it includes the earlier builds')."
              " *PING max after*: from the first query until the index was built and the window over."
              " *keyspace answers*: queries of the window answered from the keyspace path; *waits / timeouts /"
              " LOADING*: queries that waited for the index, waited past `crm.index-wait-ms`, were answered"
              " LOADING (INFO crm, where the module has them). Latencies are client-side, of answers only.", ""]
    if r.get("search"):
        lines += ["## RediSearch on the same data", "",
                  f"{r['search_version']} alone in the same binary, started from the same RDB; `FT.CREATE idx ON HASH"
                  " PREFIX 1 meeting:` as in bench.py; the equivalent FT.SEARCH (user 7's clients as a TAG list,"
                  " `@status:{open}`, `LIMIT 0 10`) every 10 ms (back to back, they starve the background"
                  " indexing) from when the command returns or the restarted server has loaded the RDB, until"
                  " FT.INFO shows `indexing 0` and `percent_indexed 1`. An answer is incomplete when its total"
                  f" differs from the final one ({r['search'][0]['final_total']:,}; CRM.MEETINGS: {r['crm_total']:,}).",
                  "",
                  "| case | command / RDB load | PING max in it | indexed after | answers meanwhile | incomplete"
                  " | lowest total | errors | p50 / max | PING max after |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in r["search"]:
            indexed = ("at once" if c["already_indexed"] else fmt(c["indexed_s"], " s") if c["indexed_s"] is not None
                       else f"not in {r['build_timeout']:g} s")
            lines.append(f"| {c['case']} | {fmt(c['reload_s'], ' s')} | {fmt(c['ping_max_reload_ms'], ' ms', 0)} |"
                         f" {indexed} | {c['answers']:,} | {c['incomplete']:,} | {fmt(c['min_total'])} |"
                         f" {errors_cell(c['errors'])} | {fmt(c['p50_ms'], '', 1)} / {fmt(c['max_ms'], ' ms', 1)} |"
                         f" {fmt(c['ping_max_ms'], ' ms', 1)} |")
        lines.append("")
    return "\n".join(lines)


def table(results):
    """The compact summary printed at the end."""
    rows = [("case", "ready after", "PING in it", "all answered", "built", "answers", "errors", "p99/max ms",
             "hold µs", "PING after", "keyspace")]
    for c in results["module"]:
        if "skipped" in c:
            rows.append((c["case"], "skipped: the setting is missing") + ("",) * 9)
        elif "window_s" not in c:
            rows.append((c["case"], "—", "—", fmt(c["first_answer_s"], "s", 3), fmt(c["built_s"], "s"), "1", "0", "—",
                         f"{c['longest_hold_us']:,}", fmt(c["ping_max_ms"], "ms", 1), str(c["keyspace_answers"])))
        else:
            rows.append((c["case"], fmt(c["reload_s"], "s"), fmt(c["ping_max_reload_ms"], "ms", 0),
                         fmt(c["all_answered_s"], "s", 3) if c["all_answered_s"] is not None else "not all",
                         fmt(c["built_s"], "s") if c["built_s"] is not None else "no",
                         f"{c['answers']:,}", f"{sum(c['errors'].values()):,}",
                         f"{fmt(c['p99_ms'], '', 1)}/{fmt(c['max_ms'], '', 1)}", f"{c['longest_hold_us']:,}",
                         fmt(c["ping_max_ms"], "ms", 1), f"{c['keyspace_answers']:,}"))
    rows.append(("RediSearch", "", "", "", "indexed", "answers", "errors", "p50/max ms", "", "PING after", "incomplete"))
    for c in results.get("search") or []:
        rows.append((c["case"], fmt(c["reload_s"], "s"), fmt(c["ping_max_reload_ms"], "ms", 0), "—",
                     "at once" if c["already_indexed"] else fmt(c["indexed_s"], "s") if c["indexed_s"] is not None
                     else "no", f"{c['answers']:,}",
                     f"{sum(c['errors'].values()):,}", f"{fmt(c['p50_ms'], '', 1)}/{fmt(c['max_ms'], '', 1)}",
                     "", fmt(c["ping_max_ms"], "ms", 1), f"{c['incomplete']:,}"))
    if not results.get("search"):
        rows.pop()
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=1_000_000)
    parser.add_argument("--neighbours", type=int, default=3, help="crm-load's neighbour installations (bench.py: 3)")
    parser.add_argument("--server", default=os.environ.get("REDIS8"), help="server binary (default $REDIS8)")
    parser.add_argument("--search-so", default=os.environ.get("REDISEARCH_SO"), help="default $REDISEARCH_SO")
    parser.add_argument("--no-search", action="store_true", help="skip RediSearch")
    parser.add_argument("--window", type=float, default=15.0, help="seconds of client traffic per case")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--retry-delay", type=float, default=0.01, help="seconds before retrying a LOADING error")
    parser.add_argument("--build-timeout", type=float, default=600.0, help="seconds to wait for a build or indexing")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench"))
    args = parser.parse_args()
    # Killed, it still stops its servers and removes its temp dirs (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.server:
        sys.exit("no server binary: set REDIS8 or pass --server (make bench-cold sets it)")
    search = not args.no_search and bool(args.search_so)
    if not args.no_search and not search:
        log("REDISEARCH_SO is not set: RediSearch is skipped")
    work = tempfile.mkdtemp(prefix="crm-cold-")
    try:
        # A copy: a rebuild of the module during the run must not change what a restart loads.
        module = shutil.copy(MODULE, os.path.join(work, "libcrm_meetings.so"))
        seed, version, keys, load_s = generate(args, work, module)
        results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                   "command": "bench/cold.py " + " ".join(sys.argv[1:]),
                   "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}",
                   "server": f"{version} (`{os.path.relpath(os.path.abspath(args.server), ROOT)}`)", "meetings": args.meetings, "neighbours": args.neighbours,
                   "keys": keys, "load_s": load_s, "clients": args.clients, "window": args.window,
                   "retry_delay": args.retry_delay, "build_timeout": args.build_timeout}
        results["module"], results["crm_total"] = run_module(args, seed, module)
        if search:
            results["search"], results["search_version"] = run_search(args, seed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    markdown = render(results)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "COLD.md"), "w") as f:
        f.write(markdown)
    print(table(results))
    print(f"\n(written to {os.path.join(args.out, 'COLD.md')})")


if __name__ == "__main__":
    main()
