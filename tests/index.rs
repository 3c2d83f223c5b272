//! The in-memory index is exact under change: random interleavings (fixed seeds) of CRM
//! writes, raw writes to every kind of key the templates name (field names and values
//! holding the templates' separators, so that two parts share a key), hash-field TTLs where
//! the server has them, DEL/UNLINK/EXPIRE/RENAME, wrong types, FLUSHALL, SWAPDB, DEBUG
//! RELOAD and a replica's full resync. After every step,
//! each query answers the same under every plan (`crm.index-plan` auto, filter-first,
//! client-first, sort-walk), on the keyspace path, and from the Lua reference; INFO proves
//! the index answered. A replica, which receives every write as raw commands, is compared
//! the same way after every step; INFO proves its index answered and followed those
//! writes member by member (the command filter's notes).

mod common;

use std::time::Duration;

use common::dataset::{Dataset, Query, Rng, FIELDS};
use common::{
    decode, env_number, error_of, figure, index_answers, info, keyspace_state, replicate,
    set_config, Answer, Server, REFERENCE_LUA,
};
use redis::{Connection, ConnectionLike, Value};

const INDEX_PLANS: [&str; 4] = ["auto", "filter-first", "client-first", "sort-walk"];
const USERS: [&str; 5] = ["u1", "u2", "u3", "u4", "boss"];

/// CRM.MEETINGS under every index plan and on the keyspace path, plus the Lua reference
/// (`None` when the module answered an error: the script's message differs).
fn answers(con: &mut Connection, query: &Query, lua: bool) -> Vec<Result<Answer, String>> {
    // In one transaction: the server's clock stands still, so a TTL cannot pass between
    // two of the answers.
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI");
    for plan in INDEX_PLANS.iter().chain(&["keyspace"]) {
        pipe.cmd("CONFIG")
            .arg("SET")
            .arg("crm.index-plan")
            .arg(*plan);
        pipe.cmd(query.command()).arg(query.module_args());
    }
    pipe.cmd("CONFIG")
        .arg("SET")
        .arg("crm.index-plan")
        .arg("auto");
    if lua {
        pipe.cmd("EVAL")
            .arg(REFERENCE_LUA)
            .arg(0)
            .arg(query.lua_args());
    }
    pipe.cmd("EXEC");
    let queued = 2 * (INDEX_PLANS.len() + 1) + 1 + usize::from(lua);
    // Read raw: a reply may be an error, and it must stay in its slot.
    let mut replies = con
        .req_packed_commands(&pipe.get_packed_pipeline(), 0, queued + 2)
        .unwrap();
    let Some(Value::Array(replies)) = replies.pop() else {
        panic!("EXEC failed: {replies:?}")
    };
    replies
        .into_iter()
        .enumerate()
        .filter(|(n, _)| n % 2 == 1 || *n == queued - 1 && lua)
        .map(|(_, reply)| match reply {
            // The kind of error only: with several broken keys, which one a path meets
            // first depends on the order it reads candidates in.
            Value::ServerError(error) => Err(error.code().to_string()),
            other => Ok(decode(other)),
        })
        .collect()
}

/// Checks every query; returns how many had rows and how many answered an error.
fn assert_agree(con: &mut Connection, queries: &[Query], context: &str) -> (usize, usize) {
    let mut with_rows = 0;
    let mut errors = 0;
    for query in queries {
        let all = answers(con, query, true);
        let keyspace = &all[INDEX_PLANS.len()];
        for (plan, answer) in INDEX_PLANS.iter().zip(&all) {
            assert_eq!(
                answer, keyspace,
                "{context}: plan {plan} vs keyspace, {query:?}"
            );
        }
        match keyspace {
            Ok(keyspace) => {
                // With a key of the wrong type the script may fail where the module, which
                // stops early (a user without clients), answers: compare answers only.
                if let Ok(lua) = &all[INDEX_PLANS.len() + 1] {
                    if lua != keyspace && std::env::var_os("CRM_INDEX_TRACE").is_some() {
                        let again = answers(con, query, true);
                        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).unwrap();
                        let mut dump = Vec::new();
                        for key in keys {
                            let kind: String = redis::cmd("TYPE").arg(&key).query(con).unwrap();
                            let ttl: i64 = redis::cmd("PTTL").arg(&key).query(con).unwrap();
                            let value: Value = match kind.as_str() {
                                "set" => redis::cmd("SMEMBERS").arg(&key).query(con).unwrap(),
                                "hash" => redis::cmd("HGETALL").arg(&key).query(con).unwrap(),
                                "zset" => redis::cmd("ZRANGE")
                                    .arg(&key)
                                    .arg(0)
                                    .arg(-1)
                                    .arg("WITHSCORES")
                                    .query(con)
                                    .unwrap(),
                                _ => Value::Nil,
                            };
                            dump.push(format!("{key} {kind} ttl {ttl}: {value:?}"));
                        }
                        dump.sort();
                        eprintln!("AGAIN: {again:?}\n{}", dump.join("\n"));
                    }
                    assert_eq!(lua, keyspace, "{context}: Lua vs keyspace, {query:?}");
                }
                with_rows += usize::from(!keyspace.page.is_empty());
            }
            Err(_) => errors += 1,
        }
    }
    (with_rows, errors)
}

/// A dataset with a sort ZSET (without it every query sorts by hash field, off the index)
/// and a manager who sees every client.
fn dataset(rng: &mut Rng) -> Dataset {
    loop {
        let mut data = Dataset::generate(rng);
        if data.dates.as_ref().is_some_and(|dates| !dates.is_empty()) {
            data.users
                .insert("boss".into(), (1..=10).map(|c| c.to_string()).collect());
            return data;
        }
    }
}

fn queries(data: &Dataset, rng: &mut Rng) -> Vec<Query> {
    (0..4)
        .map(|n| {
            let mut query = data.random_query(rng);
            query.sort_field = "date".into();
            query.installation = data.installation.clone();
            if n <= 1 {
                // FILTER alone (the other two queries draw EXCLUDE, RANGE and AFTER too).
                query.excludes.clear();
                query.ranges.clear();
                query.after = None;
            }
            if n == 0 {
                // The boss sees every client: most answers have rows.
                query.user = "boss".into();
                query.excludes.clear();
                query.ranges.clear();
                query.after = None;
                query.count = query.count.max(1);
                query.offset = query.offset.min(3);
            }
            if query.count > 20 {
                query.count = 20;
            }
            // The last query is CRM.FACETS a third of the time.
            if n == 3 && rng.chance(33) {
                query.facets = true;
                query.after = None;
            }
            // Field `type:x` value `y` names the key of field `type` value `x:y`.
            if rng.chance(25) {
                query.filters.push(("type:x".into(), "y".into()));
            }
            query
        })
        .collect()
}

/// One random change; returns what it did (for failure messages).
fn random_step(
    con: &mut Connection,
    rng: &mut Rng,
    data: &mut Dataset,
    db1: &mut Dataset,
) -> String {
    let ins = data.installation.clone();
    let id = if rng.chance(85) {
        (1 + rng.below(80)).to_string()
    } else {
        rng.pick(&["0", "-3", "007", "a1", "B"]).to_string()
    };
    let (field, values) = *rng.pick(&FIELDS);
    let value = colliding_value(rng, field, values);
    let value_key = format!("meeting_{field}:{value}_ins_{ins}");
    let meeting_key = format!("meeting:{id}");
    let user = *rng.pick(&USERS);
    let clients_key = format!("clients_for_user:{user}");
    let client = (1 + rng.below(10)).to_string();
    let any_key = rng
        .pick(&[
            value_key.clone(),
            meeting_key.clone(),
            clients_key.clone(),
            "meeting_date".to_string(),
            format!("meetings_ins_{ins}"),
        ])
        .clone();
    let mut cmd = redis::cmd("PING");
    let roll = rng.below(1000);
    let step = match roll {
        0..=199 => {
            // A third of the writes are CRM.MEETING.MSET of one to four meetings.
            let ids: Vec<String> = if rng.chance(33) {
                let mut ids = vec![id.clone()];
                for _ in 0..rng.below(4) {
                    let other = (1 + rng.below(80)).to_string();
                    if !ids.contains(&other) {
                        ids.push(other);
                    }
                }
                ids
            } else {
                Vec::new()
            };
            let many = !ids.is_empty();
            cmd = redis::cmd(if many {
                "CRM.MEETING.MSET"
            } else {
                "CRM.MEETING.SET"
            });
            cmd.arg(&ins);
            for id in if many { ids } else { vec![id.clone()] } {
                let mut pairs: Vec<(String, String)> = Vec::new();
                if rng.chance(80) {
                    pairs.push(("clientid".into(), (1 + rng.below(10)).to_string()));
                }
                for (field, values) in FIELDS {
                    if rng.chance(60) {
                        pairs.push((field.into(), colliding_value(rng, field, values).into()));
                    }
                }
                if rng.chance(70) {
                    pairs.push(("date".into(), ((rng.below(8) as i64 - 2) * 100).to_string()));
                }
                pairs.push((
                    "details".into(),
                    format!("{{\"id\":\"{id}\",\"v\":{}}}", rng.below(100)),
                ));
                cmd.arg(&id);
                if many {
                    cmd.arg(pairs.len());
                }
                for (field, value) in pairs {
                    cmd.arg(field).arg(value);
                }
            }
            if many {
                "CRM.MEETING.MSET"
            } else {
                "CRM.MEETING.SET"
            }
        }
        200..=279 => {
            cmd = redis::cmd("CRM.MEETING.DEL");
            cmd.arg(&ins).arg(&id);
            "CRM.MEETING.DEL"
        }
        280..=379 => match rng.below(10) {
            0..=6 => {
                cmd = redis::cmd(if rng.chance(60) { "SADD" } else { "SREM" });
                cmd.arg(&value_key).arg(&id);
                // Sometimes several members, one perhaps named twice.
                for _ in 0..rng.below(3) {
                    cmd.arg((1 + rng.below(80)).to_string());
                }
                "SADD/SREM value set"
            }
            7 | 8 => {
                let other = colliding_value(rng, field, values);
                cmd = redis::cmd("SMOVE");
                cmd.arg(&value_key)
                    .arg(format!("meeting_{field}:{other}_ins_{ins}"))
                    .arg(&id);
                "SMOVE value sets"
            }
            _ => {
                // Noted members whose command never ran, then another write of the same
                // key in the same turn of the server's loop.
                let mut pipe = redis::pipe();
                pipe.cmd("MULTI")
                    .cmd("SADD")
                    .arg(&value_key)
                    .arg((1 + rng.below(80)).to_string())
                    .cmd("DISCARD")
                    .cmd("SADD")
                    .arg(&value_key)
                    .arg(&id);
                let _: redis::RedisResult<Value> = pipe.query(con);
                "SADD after a DISCARDed SADD"
            }
        },
        380..=479 => {
            match rng.below(3) {
                0 => cmd = redis::cmd("HDEL"),
                _ => cmd = redis::cmd("HSET"),
            }
            cmd.arg(&meeting_key).arg("clientid");
            if rng.chance(67) {
                cmd = redis::cmd("HSET");
                cmd.arg(&meeting_key).arg("clientid").arg(&client);
            }
            match rng.below(4) {
                // A query queued before the write in one transaction: the filter saw the
                // write at its EXEC, before the query read the index.
                0 => {
                    let mut pipe = redis::pipe();
                    pipe.cmd("MULTI")
                        .cmd("CRM.MEETINGS")
                        .arg(&ins)
                        .arg(user)
                        .arg("LIMIT")
                        .arg(0)
                        .arg(100)
                        .add_command(std::mem::replace(&mut cmd, redis::cmd("PING")))
                        .cmd("EXEC");
                    let _: redis::RedisResult<Value> = pipe.query(con);
                    "HSET/HDEL clientid after a query, in MULTI"
                }
                1 => {
                    cmd = redis::cmd("EVAL");
                    cmd.arg("return redis.call('HSET', KEYS[1], 'clientid', ARGV[1])")
                        .arg(1)
                        .arg(&meeting_key)
                        .arg(&client);
                    "HSET clientid in a script"
                }
                _ => "HSET/HDEL clientid",
            }
        }
        480..=559 => {
            let score = (rng.below(8) as i64 - 2) * 100;
            match rng.below(10) {
                0..=4 => {
                    // ZADD's options change which members change: the index reads back
                    // each one it names.
                    cmd = redis::cmd("ZADD");
                    cmd.arg("meeting_date");
                    for option in [["NX", "XX"], ["GT", "LT"], ["CH", "CH"]] {
                        if rng.chance(20) {
                            cmd.arg(*rng.pick(&option));
                        }
                    }
                    if rng.chance(15) {
                        cmd.arg("INCR").arg(score).arg(&meeting_key);
                    } else {
                        cmd.arg(score).arg(&meeting_key);
                        for _ in 0..rng.below(3) {
                            cmd.arg(score + 50)
                                .arg(format!("meeting:{}", 1 + rng.below(80)));
                        }
                    }
                }
                5 | 6 => {
                    cmd = redis::cmd("ZREM");
                    cmd.arg("meeting_date").arg(&meeting_key);
                }
                7 => {
                    cmd = redis::cmd("ZINCRBY");
                    cmd.arg("meeting_date").arg(score).arg(&meeting_key);
                }
                8 => {
                    // Notifies zadd too, but its members are not noted.
                    cmd = redis::cmd("GEOADD");
                    cmd.arg("meeting_date")
                        .arg("13.36")
                        .arg("38.11")
                        .arg(&meeting_key);
                }
                _ => {
                    let mut pipe = redis::pipe();
                    pipe.cmd("MULTI")
                        .cmd("ZADD")
                        .arg("meeting_date")
                        .arg(score)
                        .arg(format!("meeting:{}", 1 + rng.below(80)))
                        .cmd("DISCARD")
                        .cmd("GEOADD")
                        .arg("meeting_date")
                        .arg("13.36")
                        .arg("38.11")
                        .arg(&meeting_key);
                    let _: redis::RedisResult<Value> = pipe.query(con);
                }
            }
            "ZADD/ZREM/ZINCRBY/GEOADD"
        }
        560..=659 => {
            cmd = redis::cmd(if rng.chance(60) { "SADD" } else { "SREM" });
            cmd.arg(&clients_key).arg(&client);
            "SADD/SREM clients"
        }
        660..=699 => {
            cmd = redis::cmd("SADD");
            cmd.arg(format!("meetings_ins_{ins}")).arg(&id);
            "SADD meetings set"
        }
        700..=759 => {
            cmd = redis::cmd(if rng.chance(50) { "DEL" } else { "UNLINK" });
            cmd.arg(&any_key);
            "DEL/UNLINK"
        }
        760..=819 => {
            // Active expiry is off: a key past its TTL stays until something touches it,
            // and no TTL runs out while the queries of a step run.
            match rng.below(3) {
                0 => {
                    cmd = redis::cmd("EXPIRE");
                    cmd.arg(&any_key).arg(0);
                }
                1 => {
                    redis::cmd("PEXPIRE")
                        .arg(&any_key)
                        .arg(1)
                        .query::<i64>(con)
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => {
                    cmd = redis::cmd("EXPIRE");
                    cmd.arg(&any_key).arg(1000);
                }
            }
            "EXPIRE"
        }
        820..=869 => {
            let other_value = *rng.pick(values);
            let other_meeting = 1 + rng.below(80);
            let other_user = *rng.pick(&USERS);
            let target = rng
                .pick(&[
                    format!("meeting_{field}:{other_value}_ins_{ins}"),
                    format!("meeting:{other_meeting}"),
                    format!("clients_for_user:{other_user}"),
                ])
                .clone();
            cmd = redis::cmd("RENAME");
            cmd.arg(&any_key).arg(target);
            "RENAME"
        }
        870..=884 => {
            cmd = redis::cmd("PERSIST");
            cmd.arg(&any_key);
            "PERSIST"
        }
        885..=899 => {
            // A TTL on the client field (Redis 7.4 and later; an unknown command elsewhere):
            // past it the field reads as missing, deleted or not.
            let millis = *rng.pick(&[1, 1, 100_000]);
            cmd = redis::cmd("HPEXPIRE");
            cmd.arg(&meeting_key)
                .arg(millis)
                .arg("FIELDS")
                .arg(1)
                .arg("clientid");
            let _: redis::RedisResult<Value> = cmd.query(con);
            std::thread::sleep(Duration::from_millis(2));
            cmd = redis::cmd("PING");
            "HPEXPIRE clientid"
        }
        900..=919 => {
            // A key of the wrong type: every path must answer the same error.
            cmd = redis::cmd("SET");
            cmd.arg(rng.pick(&[
                value_key.clone(),
                clients_key.clone(),
                value_key.clone(),
                clients_key.clone(),
                meeting_key.clone(),
            ]))
            .arg("x");
            "SET (wrong type)"
        }
        920..=959 => {
            cmd = redis::cmd("HSET");
            cmd.arg(&meeting_key)
                .arg("details")
                .arg(format!("{{\"id\":\"{id}\"}}"));
            "HSET details"
        }
        960..=974 => {
            *data = dataset(rng);
            data.load(con);
            write_db1(con, db1);
            "FLUSHALL and a new dataset"
        }
        975..=989 => {
            cmd = redis::cmd("SWAPDB");
            cmd.arg(0).arg(1);
            std::mem::swap(data, db1);
            "SWAPDB"
        }
        _ => {
            cmd = redis::cmd("DEBUG");
            cmd.arg("RELOAD");
            "DEBUG RELOAD"
        }
    };
    // Errors (RENAME of a missing key, a write to a key of the wrong type) are part of it.
    let _: redis::RedisResult<Value> = cmd.query(con);
    format!("{step} ({roll})")
}

/// A value of `field`; for `type`, sometimes `x:y`, whose set is also field `type:x`'s
/// value `y` (the queries ask for it), or one holding the installation separator.
fn colliding_value(rng: &mut Rng, field: &str, values: &[&'static str]) -> &'static str {
    match (field, rng.below(10)) {
        ("type", 0) => "x:y",
        ("type", 1) => "y_ins_42",
        _ => values[rng.below_usize(values.len())],
    }
}

/// Writes `db1` into database 1 (for SWAPDB), leaving database 0 selected.
fn write_db1(con: &mut Connection, db1: &Dataset) {
    redis::cmd("SELECT").arg(1).query::<()>(con).unwrap();
    db1.write(con);
    redis::cmd("SELECT").arg(0).query::<()>(con).unwrap();
}

#[test]
fn index_answers_exactly_under_random_change() {
    let steps = env_number("CRM_INDEX_STEPS", 1500);
    let primary = Server::start();
    let replica = Server::start();
    let mut con = primary.connect();
    let mut replica_con = replica.connect();
    for server in [&mut con, &mut replica_con] {
        // The queries filter on `type:x` too (see `queries`).
        set_config(server, "crm.filter-fields", "type status type:x");
        redis::cmd("DEBUG")
            .arg("SET-ACTIVE-EXPIRE")
            .arg(0)
            .query::<()>(server)
            .unwrap();
    }
    let mut rng = Rng::new(env_number("CRM_INDEX_SEED", 2026));
    let mut data = dataset(&mut rng);
    // Database 1 holds another dataset, for SWAPDB.
    let mut db1 = dataset(&mut rng);
    data.load(&mut con);
    write_db1(&mut con, &db1);
    replicate(&mut replica_con, &primary);

    let mut queries_now = queries(&data, &mut rng);
    let mut rows = 0;
    let mut compared_on_replica = 0;
    let before = index_answers(&mut con);
    for step in 0..steps {
        let installation = data.installation.clone();
        let done = random_step(&mut con, &mut rng, &mut data, &mut db1);
        if data.installation != installation {
            queries_now = queries(&data, &mut rng);
        }
        let context = format!("step {step}: {done}");
        if std::env::var_os("CRM_INDEX_TRACE").is_some() {
            eprintln!("{context}");
        }
        let answered_before = index_answers(&mut con);
        let (with_rows, errors) = assert_agree(&mut con, &queries_now, &context);
        rows += with_rows;
        let answered = index_answers(&mut con) - answered_before;
        // A sorted set there now was there all along (a TTL may have removed it meanwhile).
        let zset: String = redis::cmd("TYPE")
            .arg("meeting_date")
            .query(&mut con)
            .unwrap();
        if zset == "zset" {
            // Every plan of every query that did not fail answered from the index.
            let expected = (queries_now.len() - errors) * INDEX_PLANS.len();
            if answered != expected as u64 {
                let why: Vec<String> = queries_now
                    .iter()
                    .map(|query| {
                        let reply: redis::RedisResult<Value> = redis::cmd("CRM.EXPLAIN")
                            .arg(query.module_args())
                            .query(&mut con);
                        format!("{query:?}: {reply:?}")
                    })
                    .collect();
                panic!("{context}: {answered} answers from the index, not {expected}: {why:?}");
            }
        }
        {
            redis::cmd("WAIT")
                .arg(1)
                .arg(5000)
                .query::<i64>(&mut con)
                .unwrap();
            assert_agree(
                &mut replica_con,
                &queries_now,
                &format!("replica, {context}"),
            );
            compared_on_replica += 1;
        }
        if step == steps / 2 {
            // A full resync: the replica leaves, its data changes, it comes back.
            redis::cmd("REPLICAOF")
                .arg("NO")
                .arg("ONE")
                .query::<()>(&mut replica_con)
                .unwrap();
            dataset(&mut rng).load(&mut replica_con);
            assert_agree(&mut replica_con, &queries_now, "replica on its own data");
            replicate(&mut replica_con, &primary);
            redis::cmd("WAIT")
                .arg(1)
                .arg(5000)
                .query::<i64>(&mut con)
                .unwrap();
            let synced = info(&mut replica_con, "replication");
            assert_eq!(
                synced.get("master_link_status").map(String::as_str),
                Some("up")
            );
            assert_agree(
                &mut replica_con,
                &queries_now,
                "replica after the full resync",
            );
        }
    }
    let from_index = index_answers(&mut con) - before;
    let replica_from_index = index_answers(&mut replica_con);
    eprintln!(
        "replica: {replica_from_index} answers from the index, {} parts followed member by \
         member, {} invalidations; primary: {} parts followed member by member",
        figure(&mut replica_con, "index_member_updates"),
        figure(&mut replica_con, "index_invalidations"),
        figure(&mut con, "index_member_updates"),
    );
    assert!(replica_from_index > 0, "the replica's index never answered");
    assert!(
        figure(&mut replica_con, "index_member_updates") > 0,
        "the replica followed no write member by member"
    );
    eprintln!(
        "{steps} steps: {from_index} answers from the index, {rows} non-empty keyspace pages, \
         {compared_on_replica} replica comparisons, {} partial rebuilds, {} invalidations, {} drops",
        figure(&mut con, "index_partial_rebuilds"),
        figure(&mut con, "index_invalidations"),
        figure(&mut con, "index_dropped"),
    );
    assert!(rows as u64 * 2 > steps, "too few answers with rows: {rows}");
}

/// A template naming `<id>` twice cannot be read backwards from a key name: the index
/// could not tell which meeting a notification is about, so the keyspace path answers.
#[test]
fn a_template_with_id_twice_takes_the_keyspace_path() {
    let server = Server::start();
    let mut con = server.connect();
    common::load_seed(&mut con);
    set_config(&mut con, "crm.meeting-key", "meeting:<id>:<id>");
    let reply: Value = redis::cmd("CRM.EXPLAIN")
        .arg(&["10", "2", "FILTER", "status", "open"])
        .query(&mut con)
        .unwrap();
    let text = format!("{reply:?}");
    assert!(
        text.contains(
            "keyspace path: crm.meeting-key or crm.sort-member holds <id> more than once"
        ),
        "{text}"
    );
}

/// Runs raw commands, each a whitespace-separated line.
fn run(con: &mut Connection, commands: &[&str]) {
    for command in commands {
        let words: Vec<&str> = command.split_whitespace().collect();
        let _: Value = redis::cmd(words[0])
            .arg(&words[1..])
            .query(con)
            .unwrap_or_else(|error| panic!("{command}: {error}"));
    }
}

/// Runs raw commands (see [`run`]), then asserts that every plan answers `query` as the
/// keyspace path does; returns the keyspace path's answer.
fn after(con: &mut Connection, commands: &[&str], query: &str) -> Result<Answer, String> {
    run(con, commands);
    let words: Vec<&str> = query.split_whitespace().collect();
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI");
    for plan in INDEX_PLANS.iter().chain(&["keyspace"]) {
        pipe.cmd("CONFIG").arg(&["SET", "crm.index-plan", plan]);
        pipe.cmd("CRM.MEETINGS").arg(&words);
    }
    pipe.cmd("CONFIG").arg(&["SET", "crm.index-plan", "auto"]);
    pipe.cmd("EXEC");
    let queued = 2 * (INDEX_PLANS.len() + 1) + 1;
    let mut replies = con
        .req_packed_commands(&pipe.get_packed_pipeline(), 0, queued + 2)
        .unwrap();
    let Some(Value::Array(replies)) = replies.pop() else {
        panic!("EXEC failed")
    };
    let all: Vec<Result<Answer, String>> = replies
        .into_iter()
        .skip(1)
        .step_by(2)
        .map(|reply| match reply {
            Value::ServerError(error) => Err(error.code().to_string()),
            other => Ok(decode(other)),
        })
        .collect();
    let keyspace = all[INDEX_PLANS.len()].clone();
    for (plan, answer) in INDEX_PLANS.iter().zip(&all) {
        assert_eq!(answer, &keyspace, "{commands:?} then {query}: plan {plan}");
    }
    keyspace
}

/// Whether the server knows `command` (HPEXPIRE since Redis 7.4, VADD since Redis 8).
fn server_has(con: &mut Connection, command: &str) -> bool {
    let info: Value = redis::cmd("COMMAND")
        .arg(&["INFO", command])
        .query(con)
        .unwrap();
    !matches!(&info, Value::Array(entries) if entries.iter().all(|e| *e == Value::Nil))
}

fn total(answer: &Result<Answer, String>) -> i64 {
    answer.as_ref().map(|answer| answer.total).unwrap()
}

/// Field `type:x` value `y` and field `type` value `x:y` name one key. A CRM write updates
/// the part it knows (`type`, `x:y`) directly; the other part of that key must be read again.
#[test]
fn a_crm_write_to_a_key_two_parts_share_reaches_both() {
    let server = Server::start();
    let mut con = server.connect();
    // `type:x` may be filtered on; the first writes name `type` only.
    set_config(&mut con, "crm.filter-fields", "type status type:x");
    let query = "10 u FILTER type:x y";
    let setup = [
        "SADD clients_for_user:u 1",
        "CRM.MEETING.SET 10 1 clientid 1 date 100",
    ];
    assert_eq!(total(&after(&mut con, &setup, query)), 0);
    let before = index_answers(&mut con);
    let written = after(
        &mut con,
        &["CRM.MEETING.SET 10 2 clientid 1 type x:y date 200"],
        query,
    );
    assert_eq!(total(&written), 1);
    assert_eq!(written.unwrap().ids(), ["2"]);
    assert_eq!(index_answers(&mut con) - before, INDEX_PLANS.len() as u64);
    // And back: the write moves it out of (type, x:y), so out of (type:x, y) too.
    let moved = after(&mut con, &["CRM.MEETING.SET 10 2 type email"], query);
    assert_eq!(total(&moved), 0);
    // One write through both parts of that key: out of (type, x:y), into (type:x, y); the
    // key ends up holding the meeting, whatever each effect alone would say.
    // (Two meetings, so that the key is never emptied and deleted in between.)
    let both = [
        "CRM.MEETING.SET 10 3 clientid 1 type x:y date 300",
        "CRM.MEETING.SET 10 4 clientid 1 type x:y date 400",
    ];
    assert_eq!(total(&after(&mut con, &both, "10 u FILTER type x:y")), 2);
    assert_eq!(total(&after(&mut con, &[], query)), 2);
    let swapped = ["CRM.MEETING.SET 10 3 type z type:x y"];
    assert_eq!(total(&after(&mut con, &swapped, "10 u FILTER type x:y")), 2);
    assert_eq!(total(&after(&mut con, &[], query)), 2);
}

/// Templates may give the installation's set and a meeting's hash one name
/// (`crm.meetings-key meeting:<installation>` and `crm.meeting-key meeting:<id>`): a change
/// to that key is followed in both roles.
#[test]
fn a_key_both_a_watched_set_and_a_meeting_hash() {
    let server = Server::start();
    let mut con = server.connect();
    set_config(&mut con, "crm.meetings-key", "meeting:<installation>");
    let setup = [
        "SADD clients_for_user:u 1",
        "HSET meeting:1 clientid 1",
        "HSET meeting:2 clientid 1",
        "SADD meeting:10 1 2",
        "SADD meeting_type:email_ins_10 1 2",
        "ZADD meeting_date 1 meeting:1 2 meeting:2",
    ];
    assert_eq!(total(&after(&mut con, &setup, "10 u")), 2);
    assert_eq!(total(&after(&mut con, &[], "10 u FILTER type email")), 2);
    // Meeting 10's hash replaces the installation's set of the same name.
    let replaced = [
        "DEL meeting:10",
        "HSET meeting:10 clientid 1",
        "SADD meeting_type:email_ins_10 10",
        "ZADD meeting_date 3 meeting:10",
    ];
    assert_eq!(
        after(&mut con, &replaced, "10 u"),
        Err("WRONGTYPE".to_string())
    );
    assert_eq!(total(&after(&mut con, &[], "10 u FILTER type email")), 3);
    // Meeting 10 (the latest) is off the first page: only the total tells.
    let moved = ["HSET meeting:10 clientid 2"];
    let first = "10 u FILTER type email LIMIT 0 1";
    assert_eq!(total(&after(&mut con, &moved, first)), 2);
}

/// Installation 10's meetings 1 and 2 (dates 100 and 200), both of client 1, whom user `u`
/// sees; returns the query of both, answered once (its index is built).
fn two_meetings_of_one_client(con: &mut Connection) -> &'static str {
    let setup = [
        "SADD clients_for_user:u 1",
        "CRM.MEETING.SET 10 1 clientid 1 type email date 100",
        "CRM.MEETING.SET 10 2 clientid 1 type email date 200",
    ];
    let query = "10 u FILTER type email";
    assert_eq!(total(&after(con, &setup, query)), 2);
    query
}

/// A raw HSET queued in MULTI after a query: the query reads the meeting as it was, the
/// next one as the transaction left it (the write's change is followed once it has run).
#[test]
fn a_raw_write_after_a_query_in_one_transaction_is_followed() {
    let server = Server::start();
    let mut con = server.connect();
    let query = two_meetings_of_one_client(&mut con);
    let before = index_answers(&mut con);
    let (inside,): (Value,) = redis::pipe()
        .atomic()
        .cmd("CRM.MEETINGS")
        .arg(query.split_whitespace().collect::<Vec<_>>())
        .cmd("HSET")
        .arg(&["meeting:2", "clientid", "9"])
        .ignore()
        .query(&mut con)
        .unwrap();
    assert_eq!(decode(inside).total, 2);
    let answered_inside = index_answers(&mut con) - before;
    let moved = after(&mut con, &[], query).unwrap();
    assert_eq!(moved.ids(), ["1"]);
    assert_eq!(
        index_answers(&mut con) - before - answered_inside,
        INDEX_PLANS.len() as u64
    );
    // RESET ends a transaction: the writes after it run at once, and are followed so.
    let reset = [
        "MULTI",
        "HSET meeting:1 clientid 9",
        "RESET",
        "HSET meeting:2 clientid 1",
    ];
    run(&mut server.connect(), &reset);
    let before = index_answers(&mut con);
    assert_eq!(after(&mut con, &[], query).unwrap().ids(), ["1", "2"]);
    assert_eq!(index_answers(&mut con) - before, INDEX_PLANS.len() as u64);
}

/// A raw HSET held by CLIENT PAUSE WRITE runs after the queries made meanwhile have read
/// the meeting: the index follows it when it runs, not when the filter saw it.
#[test]
fn a_raw_write_held_by_client_pause_is_followed_when_it_runs() {
    let server = Server::start();
    let mut con = server.connect();
    let query = two_meetings_of_one_client(&mut con);
    let before = index_answers(&mut con);
    redis::cmd("CLIENT")
        .arg(&["PAUSE", "10000", "WRITE"])
        .query::<()>(&mut con)
        .unwrap();
    let mut writer = server.connect();
    let held = std::thread::spawn(move || {
        redis::cmd("HSET")
            .arg(&["meeting:2", "clientid", "9"])
            .query::<i64>(&mut writer)
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    // Held: the meeting is read as it still is, and again (the index reads what the
    // filter announced in its loading steps, between these queries).
    for _ in 0..3 {
        let held_query: Value = redis::cmd("CRM.MEETINGS")
            .arg(query.split_whitespace().collect::<Vec<_>>())
            .query(&mut con)
            .unwrap();
        assert_eq!(decode(held_query).total, 2);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(total(&after(&mut con, &[], query)), 2);
    let mut pipe = redis::pipe();
    pipe.cmd("CLIENT").arg("UNPAUSE").ignore();
    pipe.cmd("CRM.MEETINGS")
        .arg(query.split_whitespace().collect::<Vec<_>>());
    let (right_after,): (Value,) = pipe.query(&mut con).unwrap();
    assert_eq!(held.join().unwrap(), 0);
    // The query sent with the UNPAUSE may run before or after the held write: it agrees
    // with one of them; the next one sees the write.
    assert!([1, 2].contains(&decode(right_after).total));
    assert_eq!(after(&mut con, &[], query).unwrap().ids(), ["1"]);
    assert_eq!(
        index_answers(&mut con) - before,
        4 + 2 * INDEX_PLANS.len() as u64
    );
}

/// A raw HSET the filter saw before any index had its meeting (queued in MULTI, or held by
/// CLIENT PAUSE), then run after a query built that index: the index follows it. Meeting
/// hashes named per installation, so that no other index has them meanwhile; the write
/// makes a meeting visible, so a stale index would leave it out (not just fail a check).
#[test]
fn a_raw_write_seen_before_its_index_existed_is_followed() {
    let server = Server::start();
    let mut con = server.connect();
    let mut writer = server.connect();
    set_config(&mut con, "crm.meeting-key", "{<installation>}:meeting:<id>");
    for ins in ["10", "20"] {
        for (id, client, date) in [("1", "1", "100"), ("2", "9", "200")] {
            redis::cmd("CRM.MEETING.SET")
                .arg(&[ins, id, "clientid", client, "type", "email", "date", date])
                .query::<()>(&mut con)
                .unwrap();
        }
    }
    redis::cmd("SADD")
        .arg(&["clients_for_user:u", "1"])
        .query::<()>(&mut con)
        .unwrap();
    // Queued in MULTI before any index existed, run after installation 10's was built.
    redis::cmd("MULTI").query::<()>(&mut writer).unwrap();
    redis::cmd("HSET")
        .arg(&["{10}:meeting:2", "clientid", "1"])
        .query::<()>(&mut writer)
        .unwrap();
    assert_eq!(total(&after(&mut con, &[], "10 u FILTER type email")), 1);
    redis::cmd("EXEC").query::<Value>(&mut writer).unwrap();
    let before = index_answers(&mut con);
    assert_eq!(total(&after(&mut con, &[], "10 u FILTER type email")), 2);
    assert_eq!(index_answers(&mut con) - before, INDEX_PLANS.len() as u64);
    // Held by a pause before installation 20 had an index, run after it was built.
    redis::cmd("CLIENT")
        .arg(&["PAUSE", "10000", "WRITE"])
        .query::<()>(&mut con)
        .unwrap();
    let held = std::thread::spawn(move || {
        redis::cmd("HSET")
            .arg(&["{20}:meeting:2", "clientid", "1"])
            .query::<i64>(&mut writer)
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(200));
    let query = ["20", "u", "FILTER", "type", "email"];
    for _ in 0..3 {
        let during: Value = redis::cmd("CRM.MEETINGS")
            .arg(&query)
            .query(&mut con)
            .unwrap();
        assert_eq!(decode(during).total, 1);
        std::thread::sleep(Duration::from_millis(20));
    }
    redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query::<()>(&mut con)
        .unwrap();
    assert_eq!(held.join().unwrap(), 0);
    let before = index_answers(&mut con);
    assert_eq!(total(&after(&mut con, &[], "20 u FILTER type email")), 2);
    assert_eq!(index_answers(&mut con) - before, INDEX_PLANS.len() as u64);
}

/// A TTL on a meeting's client field (HPEXPIRE, where the server has it): once it passes,
/// the meeting is no longer visible, whether or not the server has deleted the field yet.
#[test]
fn a_client_field_with_a_ttl_is_followed() {
    let server = Server::start();
    let mut con = server.connect();
    if !server_has(&mut con, "hpexpire") {
        eprintln!("no hash-field TTLs on this server: skipped");
        return;
    }
    redis::cmd("DEBUG")
        .arg(&["SET-ACTIVE-EXPIRE", "0"])
        .query::<()>(&mut con)
        .unwrap();
    // Redis tells a module about field TTLs when it reads a row, so a TTL set before the
    // index was built is followed too; Valkey does not, and announces only new ones.
    let before_index = !info(&mut con, "server").contains_key("valkey_version");
    let mut setup = vec![
        "SADD clients_for_user:u 1",
        "CRM.MEETING.SET 10 1 clientid 1 type email date 100",
        "CRM.MEETING.SET 10 2 clientid 1 type email date 200",
        "CRM.MEETING.SET 10 3 clientid 1 type email date 300",
        "CRM.MEETING.SET 10 4 clientid 1 type email date 400",
    ];
    if before_index {
        setup.push("HPEXPIRE meeting:4 300 FIELDS 1 clientid");
    }
    let query = "10 u FILTER type email";
    assert_eq!(total(&after(&mut con, &setup, query)), 4);
    let before = index_answers(&mut con);
    let expiring = ["HPEXPIRE meeting:2 100 FIELDS 1 clientid"];
    assert_eq!(total(&after(&mut con, &expiring, query)), 4);
    std::thread::sleep(Duration::from_millis(350));
    let expired = after(&mut con, &[], query).unwrap();
    let gone: &[&str] = if before_index { &["2", "4"] } else { &["2"] };
    assert_eq!(expired.total, 4 - gone.len() as i64);
    for id in gone {
        assert!(!expired.ids().contains(&id.to_string()), "{id}");
    }
    assert_eq!(
        index_answers(&mut con) - before,
        2 * INDEX_PLANS.len() as u64
    );
}

/// A key replaced without a notification (VADD, where the server has vector sets): the
/// index checks the type of the keys a query names, as the keyspace path does.
#[test]
fn a_watched_key_replaced_without_a_notification() {
    let server = Server::start();
    let mut con = server.connect();
    if !server_has(&mut con, "vadd") {
        eprintln!("no vector sets on this server: skipped");
        return;
    }
    let setup = [
        "SADD clients_for_user:u 1",
        "CRM.MEETING.SET 10 1 clientid 1 type email date 100",
    ];
    let query = "10 u FILTER type email";
    assert_eq!(total(&after(&mut con, &setup, query)), 1);
    assert_eq!(
        total(&after(&mut con, &["DEL meeting_type:email_ins_10"], query)),
        0
    );
    let replaced = ["VADD meeting_type:email_ins_10 VALUES 2 1 1 x"];
    assert_eq!(
        after(&mut con, &replaced, query),
        Err("WRONGTYPE".to_string())
    );
}

/// ACL users whose key patterns are not `~*`: (name, rules). `prefix` is proven at once
/// by its patterns; `classes` and `selector` have their meeting hashes checked one by one
/// (a pattern with a class, a selector); `partial` may not read some meeting hashes and
/// `noclients` no user's clients set: both get what the keyspace path gives (NOPERM).
const RESTRICTED: [(&str, &str); 5] = [
    ("prefix", "~meeting* ~clients_for_user:*"),
    (
        "classes",
        "%R~meeting_*_ins_* %R~meetings_ins_* %R~clients_for_user:* %R~meeting:[0-9a-zA-Z-]* %R~meeting_date",
    ),
    ("selector", "%R~clients_for_user:* (%R~meeting*)"),
    ("partial", "~meeting_* ~meetings_* ~clients_for_user:* ~meeting:1*"),
    ("noclients", "~meeting*"),
];

fn set_user(con: &mut Connection, name: &str, rules: &str) {
    let mut command = redis::cmd("ACL");
    command
        .arg("SETUSER")
        .arg(name)
        .arg("reset")
        .arg("on")
        .arg(">pw")
        .arg("+@all");
    // A selector is one argument, spaces and all.
    let (root, selector) = match rules.find('(') {
        Some(at) => (&rules[..at], Some(&rules[at..])),
        None => (rules, None),
    };
    command.arg(root.split_whitespace().collect::<Vec<_>>());
    if let Some(selector) = selector {
        command.arg(selector);
    }
    command.query::<()>(con).unwrap();
}

/// The answer of `user` (its own connection) from the index (`crm.index-plan auto`) and
/// from the keyspace path; the second tells whether the first came from the index.
fn index_and_keyspace(
    admin: &mut Connection,
    user: &mut Connection,
    query: &Query,
) -> (Result<Answer, String>, Result<Answer, String>, bool) {
    let ask = |user: &mut Connection| {
        redis::cmd(query.command())
            .arg(query.module_args())
            .query::<Value>(user)
            .map(decode)
            .map_err(|e| e.code().map_or_else(|| panic!("{e}"), str::to_string))
    };
    let before = index_answers(admin);
    let from_index = ask(user);
    let answered = index_answers(admin) > before;
    set_config(admin, "crm.index-plan", "keyspace");
    let keyspace = ask(user);
    set_config(admin, "crm.index-plan", "auto");
    (from_index, keyspace, answered)
}

#[test]
fn restricted_users_are_answered_from_the_index_exactly() {
    let acl_file = std::env::temp_dir().join(format!("crm-acl-{}.acl", std::process::id()));
    std::fs::write(&acl_file, "user default on nopass ~* &* +@all\n").unwrap();
    let server = Server::start_with(&[], &["--aclfile", acl_file.to_str().unwrap()]);
    let mut admin = server.connect();
    let mut rng = Rng::new(env_number("CRM_INDEX_SEED", 2026) + 1);
    let data = dataset(&mut rng);
    data.load(&mut admin);
    let mut users: Vec<(&str, Connection)> = RESTRICTED
        .iter()
        .map(|(name, rules)| {
            set_user(&mut admin, name, rules);
            (*name, server.login(name))
        })
        .collect();
    let mut from_index = std::collections::HashMap::new();
    let steps = env_number("CRM_INDEX_STEPS", 1500) / 10;
    let mut step_queries = Vec::new();
    for step in 0..steps {
        if step == steps / 3 {
            // ACL changes take effect on the very next query (no meeting comes in between
            // to be checked under the new rules): `classes` loses the hashes
            // of meetings 1x, `partial` gains every hash.
            set_user(&mut admin, "classes", "%R~meeting_*_ins_* %R~meetings_ins_* %R~clients_for_user:* %R~meeting:[02-9a-zA-Z-]* %R~meeting_date");
            set_user(&mut admin, "partial", "~*");
        } else if step == 2 * steps / 3 {
            // ACL LOAD: every user as the file says (`classes` whole again, `partial`
            // confined again), then ACL DELUSER of one that a new login replaces.
            let mut file = String::from("user default on nopass ~* &* +@all\n");
            for (name, rules) in RESTRICTED {
                file.push_str(&format!("user {name} on >pw +@all {rules}\n"));
            }
            std::fs::write(&acl_file, file).unwrap();
            redis::cmd("ACL")
                .arg("LOAD")
                .query::<()>(&mut admin)
                .unwrap();
            redis::cmd("ACL")
                .arg("DELUSER")
                .arg("selector")
                .query::<i64>(&mut admin)
                .unwrap();
            set_user(
                &mut admin,
                "selector",
                "%R~clients_for_user:* (%R~meeting*)",
            );
            users = RESTRICTED
                .iter()
                .map(|(name, _)| (*name, server.login(name)))
                .collect();
        } else {
            // New meetings (ids past the dataset's) too: a restricted user's permission over
            // the meeting hashes is kept current as meetings come.
            let id = (1 + rng.below(120)).to_string();
            let client = (1 + rng.below(10)).to_string();
            let (field, values) = *rng.pick(&FIELDS);
            let value = *rng.pick(values);
            let _: Value = match rng.below(4) {
                0 => redis::cmd("CRM.MEETING.DEL")
                    .arg(&data.installation)
                    .arg(&id)
                    .query(&mut admin),
                1 => redis::cmd("SADD")
                    .arg(format!("meeting_{field}_{value}_ins_{}", data.installation))
                    .arg(&id)
                    .query(&mut admin),
                _ => redis::cmd("CRM.MEETING.SET")
                    .arg(&data.installation)
                    .arg(&id)
                    .arg(&["clientid", &client, field, value, "date"])
                    .arg(rng.below(1000))
                    .query(&mut admin),
            }
            .unwrap();
        }
        // Right after an ACL change, the queries of the step before (their parts loaded,
        // no new meeting to check): a stale permission would answer them.
        if step != steps / 3 && step != 2 * steps / 3 {
            step_queries = queries(&data, &mut rng);
            // A count only (LIMIT 0 0): the index reads no hash for it, the keyspace path
            // reads every candidate's.
            let mut count_only = step_queries[0].clone();
            count_only.count = 0;
            step_queries.push(count_only);
        }
        for query in &step_queries {
            for (name, con) in users.iter_mut() {
                let (index, keyspace, answered) = index_and_keyspace(&mut admin, con, query);
                assert_eq!(index, keyspace, "step {step}, user {name}: {query:?}");
                if answered {
                    *from_index.entry(*name).or_insert(0) += 1;
                }
            }
        }
    }
    // An ACL command queued in a transaction runs at its EXEC: a check made in between
    // (under the old rules) must not outlive it.
    let mut transaction = server.connect();
    redis::cmd("MULTI").query::<()>(&mut transaction).unwrap();
    let rules = "%R~meeting_*_ins_* %R~meetings_ins_* %R~clients_for_user:* %R~meeting:[02-9a-zA-Z-]* %R~meeting_date";
    let mut queued = redis::cmd("ACL");
    queued.arg("SETUSER").arg("classes").arg("resetkeys");
    queued.arg(rules.split_whitespace().collect::<Vec<_>>());
    queued.query::<()>(&mut transaction).unwrap();
    for round in ["before EXEC", "after EXEC"] {
        if round == "after EXEC" {
            redis::cmd("EXEC").query::<Value>(&mut transaction).unwrap();
        }
        let (_, con) = users
            .iter_mut()
            .find(|(name, _)| *name == "classes")
            .unwrap();
        for query in &step_queries {
            let (index, keyspace, _) = index_and_keyspace(&mut admin, con, query);
            assert_eq!(index, keyspace, "{round}: {query:?}");
        }
    }
    eprintln!("answers from the index per restricted user: {from_index:?}");
    for name in ["prefix", "classes", "selector", "partial"] {
        assert!(
            from_index.get(name).copied().unwrap_or(0) > 0,
            "{name} was never answered from the index: {from_index:?}"
        );
    }
    assert!(
        !from_index.contains_key("noclients"),
        "NOPERM comes from the keys a query names"
    );
    let _ = std::fs::remove_file(&acl_file);
}

/// The seed's schema shares the sort ZSET (`meeting_date`) and the meeting hashes
/// (`meeting:<id>`) between installations: each index holds only its own meetings, and a
/// write of one installation refuses another's meeting, changing nothing.
#[test]
fn installations_sharing_keys_hold_and_write_only_their_own() {
    let server = Server::start();
    let mut con = server.connect();
    for (installation, ids) in [("10", 1..=50), ("20", 101..=400)] {
        for id in ids {
            redis::cmd("CRM.MEETING.SET")
                .arg(&[
                    installation,
                    &id.to_string(),
                    "clientid",
                    &(id % 7).to_string(),
                ])
                .arg(&["type", "email", "date", &(1000 - id).to_string()])
                .query::<i64>(&mut con)
                .unwrap();
        }
    }
    redis::cmd("SADD")
        .arg("clients_for_user:1")
        .arg(&["0", "1", "2", "3"])
        .query::<i64>(&mut con)
        .unwrap();
    let query = |installation: &str| Query {
        installation: installation.into(),
        user: "1".into(),
        filters: vec![("type".into(), "email".into())],
        excludes: Vec::new(),
        ranges: Vec::new(),
        after: None,
        facets: false,
        sort_field: "date".into(),
        descending: false,
        offset: 0,
        count: 5,
    };
    for (installation, own) in [("10", 50), ("20", 300)] {
        let before = figure(&mut con, "index_meetings");
        let all = answers(&mut con, &query(installation), false);
        assert!(all.iter().all(|answer| answer == &all[0]), "{all:?}");
        assert!(all[0].as_ref().is_ok_and(|answer| answer.total > 0));
        assert_eq!(
            figure(&mut con, "index_meetings") - before,
            own,
            "installation {installation}"
        );
    }
    // A neighbour's date changed raw: the other index neither grows nor changes.
    redis::cmd("ZADD")
        .arg(&["meeting_date", "1", "meeting:300"])
        .query::<i64>(&mut con)
        .unwrap();
    let all = answers(&mut con, &query("10"), false);
    assert!(all.iter().all(|answer| answer == &all[0]), "{all:?}");
    assert_eq!(figure(&mut con, "index_meetings"), 350);

    let before = keyspace_state(&mut con);
    for args in [
        &["20", "7", "details", "{\"subject\":\"20's note\"}"][..],
        &["20", "7", "clientid", "1", "installation", "20"],
    ] {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(
            error_of(&mut con, "CRM.MEETING.SET", &args),
            "ERR meeting '7' belongs to installation '10'"
        );
    }
    assert_eq!(
        error_of(&mut con, "CRM.MEETING.DEL", &[b"10", b"300"]),
        "ERR meeting '300' belongs to installation '20'"
    );
    assert_eq!(
        error_of(
            &mut con,
            "CRM.MEETING.SET",
            &[b"10", b"9", b"installation", b"20"]
        ),
        "ERR field installation of meeting '9' must be '10', the installation written, not '20'"
    );
    assert_eq!(
        keyspace_state(&mut con),
        before,
        "a refused write changed a key"
    );
    // Its own meeting, it writes.
    redis::cmd("CRM.MEETING.SET")
        .arg(&["10", "7", "details", "{}"])
        .query::<i64>(&mut con)
        .unwrap();
}

/// `crm.index-max-memory` caps what `used_memory` sees: indexes past it are dropped (their
/// queries take the keyspace path, still exact), and the bytes the indexes hold, counted
/// as the server counts them (each allocation's usable size), stay within 5% of it.
#[test]
fn the_memory_cap_holds_in_used_memory() {
    let server = Server::start();
    let mut con = server.connect();
    const CAP: u64 = 1 << 20;
    let mut pipe = redis::pipe();
    for installation in 0..40 {
        for n in 0..1000 {
            let id = format!("{installation}-{n}");
            pipe.cmd("CRM.MEETING.SET")
                .arg(&[
                    &installation.to_string(),
                    &id,
                    "clientid",
                    &(n % 9).to_string(),
                ])
                .arg(&["type", "email", "date", "5"])
                .ignore();
        }
    }
    pipe.cmd("SADD")
        .arg(&["clients_for_user:1", "4", "5", "6"])
        .ignore();
    pipe.query::<()>(&mut con).unwrap();
    set_config(&mut con, "crm.index-max-memory", &CAP.to_string());
    let used =
        |con: &mut Connection| -> u64 { info(con, "memory")["used_memory"].parse().unwrap() };
    let before = used(&mut con);
    let mut peak = 0;
    for installation in 0..40 {
        let query = Query {
            installation: installation.to_string(),
            user: "1".into(),
            filters: vec![("type".into(), "email".into())],
            excludes: Vec::new(),
            ranges: Vec::new(),
            after: None,
            facets: false,
            sort_field: "date".into(),
            descending: false,
            offset: 0,
            count: 3,
        };
        let all = answers(&mut con, &query, false);
        assert!(all.iter().all(|answer| answer == &all[0]), "{all:?}");
        assert_eq!(all[0].as_ref().map(|answer| answer.total), Ok(333));
        peak = peak.max(figure(&mut con, "index_memory_bytes"));
    }
    let grown = used(&mut con).saturating_sub(before);
    eprintln!(
        "index memory peak {peak}, used_memory grew {grown}, cap {CAP}, {} indexes",
        figure(&mut con, "index_installations")
    );
    assert!(
        peak <= CAP + CAP / 20,
        "index memory {peak} passed the cap {CAP}"
    );
    assert!(
        figure(&mut con, "index_installations") < 40,
        "40 indexes fit in {CAP} bytes"
    );
    // used_memory also holds the server's own growth meanwhile (replies, statistics):
    // bounded, not exact.
    assert!(
        grown <= CAP + CAP / 4,
        "used_memory grew {grown} with a cap of {CAP}"
    );
}
