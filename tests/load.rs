//! Load with an invariant: concurrent clients mix CRM.MEETING.SET/DEL, raw writes to the
//! value sets, hashes and date ZSET, SADD/SREM on `clients_for_user:*`, and queries. Every
//! query is checked online, in the same atomic step as its reply (Redis runs one command at
//! a time): a script runs CRM.MEETINGS and checks each returned meeting's client against the
//! user's set at that moment, so no meeting may ever come back whose client the user cannot
//! see. A quarter of the queries also run the Lua reference in the same MULTI, from the same
//! state, and their answer (total and page) must equal it; the reference reads every
//! candidate, so running it for all queries would saturate the server with the checker.
//!
//! `CRM_LOAD_CLIENTS` (default 50) and `CRM_LOAD_SECONDS` (default 5; `make reliability`
//! runs 60) size the run; it prints throughput and p50/p99/p999 latencies.

mod common;

use std::time::{Duration, Instant};

use common::dataset::Rng;
use common::{env_number, Server, REFERENCE_LUA};
use redis::{Connection, Value};

const INSTALLATION: &str = "10";
const MEETINGS: usize = 3_000;
const CLIENTS: usize = 100;
const USERS: usize = 20;
const TYPES: [&str; 3] = ["email", "sms", "call"];
const STATUSES: [&str; 2] = ["open", "close"];

/// Runs CRM.MEETINGS (ARGV) and, in the same script, counts the returned meetings whose
/// client the user may not see at this moment.
const CHECKED_QUERY: &str = r"
local reply = redis.call('CRM.MEETINGS', unpack(ARGV))
local violations = 0
for i = 2, #reply do
  local client = redis.call('HGET', 'meeting:' .. reply[i][1], 'clientid')
  if not client or redis.call('SISMEMBER', 'clients_for_user:' .. ARGV[2], client) == 0 then
    violations = violations + 1
  end
end
return {violations, reply}
";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    /// CRM.MEETINGS inside the checker script: every returned meeting's client checked.
    Query,
    /// The same, and the Lua reference's answer in the same MULTI, which must be equal.
    ModelQuery,
    Set,
    Delete,
    RawWrite,
    ClientsChange,
}

const OPS: [Op; 6] = [
    Op::Query,
    Op::ModelQuery,
    Op::Set,
    Op::Delete,
    Op::RawWrite,
    Op::ClientsChange,
];

fn meeting_set(rng: &mut Rng) -> redis::Cmd {
    let id = 1 + rng.below_usize(MEETINGS);
    let mut cmd = redis::cmd("CRM.MEETING.SET");
    cmd.arg(INSTALLATION)
        .arg(id)
        .arg("clientid")
        .arg(1 + rng.below_usize(CLIENTS))
        .arg("type")
        .arg(*rng.pick(&TYPES))
        .arg("status")
        .arg(*rng.pick(&STATUSES))
        .arg("date")
        .arg(1_500_000_000 + rng.below(10_000_000))
        .arg("details")
        .arg(format!("{{\"id\":{id}}}"));
    cmd
}

/// A write that bypasses the module, as an application's own code may send.
fn raw_write(rng: &mut Rng) -> redis::Cmd {
    let id = 1 + rng.below_usize(MEETINGS);
    match rng.below(5) {
        0 => {
            let mut cmd = redis::cmd(if rng.chance(50) { "SADD" } else { "SREM" });
            cmd.arg(format!("meeting_type:{}_ins_10", rng.pick(&TYPES)))
                .arg(id);
            cmd
        }
        1 => {
            let mut cmd = redis::cmd(if rng.chance(50) { "SADD" } else { "SREM" });
            cmd.arg("meetings_ins_10").arg(id);
            cmd
        }
        2 => {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(format!("meeting:{id}"))
                .arg("clientid")
                .arg(1 + rng.below_usize(CLIENTS));
            cmd
        }
        3 => {
            let mut cmd = redis::cmd("ZADD");
            cmd.arg("meeting_date")
                .arg(rng.below(1_000_000))
                .arg(format!("meeting:{id}"));
            cmd
        }
        _ => {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(format!("meeting:{id}")).arg("clientid");
            cmd
        }
    }
}

fn clients_change(rng: &mut Rng) -> redis::Cmd {
    let mut cmd = redis::cmd(if rng.chance(50) { "SADD" } else { "SREM" });
    cmd.arg(format!("clients_for_user:{}", 1 + rng.below_usize(USERS)))
        .arg(1 + rng.below_usize(CLIENTS));
    cmd
}

/// CRM.MEETINGS arguments and the reference script's arguments for one random query.
fn random_query(rng: &mut Rng) -> (Vec<String>, Vec<String>) {
    let user = (1 + rng.below_usize(USERS)).to_string();
    let mut filters = Vec::new();
    if rng.chance(70) {
        filters.push(("type".to_string(), rng.pick(&TYPES).to_string()));
    }
    if rng.chance(50) {
        filters.push(("status".to_string(), rng.pick(&STATUSES).to_string()));
    }
    let direction = if rng.chance(50) { "ASC" } else { "DESC" };
    let offset = rng.pick(&[0, 0, 0, 10, 100]).to_string();
    let count = rng.pick(&[10, 10, 50]).to_string();
    let mut module = vec![INSTALLATION.to_string(), user.clone()];
    for (field, value) in &filters {
        module.extend(["FILTER".into(), field.clone(), value.clone()]);
    }
    module.extend(["SORTBY".into(), "date".into(), direction.into()]);
    module.extend(["LIMIT".into(), offset.clone(), count.clone()]);
    let mut lua = vec![
        INSTALLATION.to_string(),
        user,
        "date".into(),
        direction.into(),
        offset,
        count,
    ];
    for (field, value) in filters {
        lua.extend([field, value]);
    }
    (module, lua)
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Vec<u32>>,
    queries: u64,
    /// Queries answered LOADING (inside a script, while the index loaded).
    loading: u64,
    rows: u64,
    model_checked: u64,
}

/// One client's loop; returns its latencies per op (microseconds) and what it checked.
fn client(port: u16, seed: u64, until: Instant, checked: &str, reference: &str) -> Tally {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut rng = Rng::new(seed);
    let mut tally = Tally {
        latencies: vec![Vec::new(); OPS.len()],
        ..Tally::default()
    };
    while Instant::now() < until {
        let op = match rng.below(100) {
            0..=29 => Op::Query,
            30..=39 => Op::ModelQuery,
            40..=64 => Op::Set,
            65..=74 => Op::Delete,
            75..=89 => Op::RawWrite,
            _ => Op::ClientsChange,
        };
        let started = Instant::now();
        match op {
            Op::Query | Op::ModelQuery => {
                let (module, lua) = random_query(&mut rng);
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .cmd("EVALSHA")
                    .arg(checked)
                    .arg(0)
                    .arg(&module);
                if op == Op::ModelQuery {
                    pipe.cmd("EVALSHA").arg(reference).arg(0).arg(&lua);
                }
                // Inside a script the query cannot wait for a loading index: a big one is
                // answered LOADING (documented as retryable), which shows nothing.
                let mut replies: Vec<Value> = match pipe.query(&mut con) {
                    Err(error) if error.kind() == redis::ErrorKind::BusyLoadingError => {
                        tally.loading += 1;
                        continue;
                    }
                    replies => replies.unwrap(),
                };
                let expected = (replies.len() == 2).then(|| replies.remove(1));
                let (violations, reply): (i64, Value) =
                    redis::from_owned_redis_value(replies.remove(0)).unwrap();
                assert_eq!(
                    violations, 0,
                    "a meeting of a hidden client: {module:?} {reply:?}"
                );
                if let Some(expected) = expected {
                    assert_eq!(
                        reply, expected,
                        "CRM.MEETINGS {module:?} differs from the reference"
                    );
                    tally.model_checked += 1;
                }
                tally.queries += 1;
                if let Value::Array(items) = &reply {
                    tally.rows += (items.len() as u64).saturating_sub(1);
                }
            }
            Op::Set => meeting_set(&mut rng)
                .query::<i64>(&mut con)
                .map(drop)
                .unwrap(),
            Op::Delete => redis::cmd("CRM.MEETING.DEL")
                .arg(INSTALLATION)
                .arg(1 + rng.below_usize(MEETINGS))
                .query::<i64>(&mut con)
                .map(drop)
                .unwrap(),
            Op::RawWrite => raw_write(&mut rng).query::<()>(&mut con).unwrap(),
            Op::ClientsChange => clients_change(&mut rng).query::<()>(&mut con).unwrap(),
        }
        let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        tally.latencies[op as usize].push(micros);
    }
    tally
}

fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[at - 1]
}

fn seed_installation(con: &mut Connection) {
    let mut rng = Rng::new(99);
    let mut pipe = redis::pipe();
    for user in 1..=USERS {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(format!("clients_for_user:{user}"));
        for client in 1..=CLIENTS {
            if rng.chance(30) {
                cmd.arg(client);
            }
        }
        cmd.arg(1 + rng.below_usize(CLIENTS));
        pipe.add_command(cmd).ignore();
    }
    for _ in 0..MEETINGS {
        pipe.add_command(meeting_set(&mut rng)).ignore();
    }
    pipe.query::<()>(con).unwrap();
}

#[test]
fn concurrent_writes_never_show_a_hidden_meeting() {
    let clients = env_number("CRM_LOAD_CLIENTS", 50);
    let seconds = env_number("CRM_LOAD_SECONDS", 5);
    let mut server = Server::start();
    let mut con = server.connect();
    seed_installation(&mut con);
    let load = |script: &str| -> String {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(script)
            .query(&mut server.connect())
            .unwrap()
    };
    let (checked, reference) = (load(CHECKED_QUERY), load(REFERENCE_LUA));
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut con)
        .unwrap();

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let port = server.port;
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|n| {
                let (checked, reference) = (&checked, &reference);
                scope.spawn(move || client(port, 1000 + n, until, checked, reference))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    assert!(server.alive());

    let queries: u64 = tallies.iter().map(|t| t.queries).sum();
    let loading: u64 = tallies.iter().map(|t| t.loading).sum();
    let rows: u64 = tallies.iter().map(|t| t.rows).sum();
    let model_checked: u64 = tallies.iter().map(|t| t.model_checked).sum();
    let mut all = 0usize;
    println!("load: {clients} clients for {elapsed:.1} s; latency seen by the client (µs):");
    for (index, op) in OPS.iter().enumerate() {
        let mut latencies: Vec<u32> = tallies
            .iter()
            .flat_map(|t| t.latencies[index].iter().copied())
            .collect();
        latencies.sort_unstable();
        all += latencies.len();
        println!(
            "  {:<14} {:>8} ops  p50 {:>6}  p99 {:>6}  p999 {:>6}",
            format!("{op:?}"),
            latencies.len(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 0.999)
        );
    }
    println!(
        "  throughput {:.0} ops/s; {queries} queries returned {rows} meetings, each checked \
         against the user's clients: none hidden; {model_checked} answers equal to the reference; \
         {loading} answered LOADING (a script cannot wait for its index)",
        all as f64 / elapsed
    );
    let info: String = redis::cmd("INFO").arg("crm").query(&mut con).unwrap();
    for line in info.lines().filter(|l| l.starts_with("crm_meeting")) {
        println!("  server side: {line}");
    }
    assert!(
        model_checked > 0 && rows > 0,
        "the load checked no non-empty answer"
    );
    assert!(
        loading <= queries,
        "most queries answered LOADING: {loading} against {queries} answers"
    );
}
