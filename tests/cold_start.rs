//! The index after a load (a restart, a full sync, DEBUG RELOAD): queries whose index is
//! loading wait for it, their clients blocked, instead of scanning the keyspace; the server
//! answers everyone else meanwhile; past `crm.index-wait-ms`, inside MULTI/EXEC or a
//! script the answer is `LOADING ...`, to retry; `crm.index-preload` builds indexes after
//! a load without a query. Every answer equals the Lua reference.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::dataset::Query;
use common::{crm_load, decode, error_text, figure, index_answers, Answer, Server, REFERENCE_LUA};
use redis::{Connection, ConnectionLike, ErrorKind, Value};

/// Enough meetings that building their index takes many loading slices.
const MEETINGS: &str = "60000";

fn query(installation: &str, user: &str, filters: &[(&str, &str)]) -> Query {
    Query {
        installation: installation.to_string(),
        user: user.to_string(),
        filters: filters
            .iter()
            .map(|(field, value)| (field.to_string(), value.to_string()))
            .collect(),
        excludes: Vec::new(),
        ranges: Vec::new(),
        after: None,
        facets: false,
        sort_field: "date".to_string(),
        descending: false,
        offset: 3,
        count: 10,
    }
}

/// Queries each reading thousands of meetings (too many to answer from the keyspace
/// while the index loads): a manager, users with and without filters.
fn big_queries() -> Vec<Query> {
    vec![
        query("10", "1", &[("status", "open")]),
        query("10", "7", &[("type", "email")]),
        query("10", "12", &[]),
        query("10", "3", &[("type", "email"), ("status", "open")]),
    ]
}

fn reference(con: &mut Connection, query: &Query) -> Answer {
    decode(
        redis::cmd("EVAL")
            .arg(REFERENCE_LUA)
            .arg(0)
            .arg(query.lua_args())
            .query(con)
            .unwrap(),
    )
}

fn loaded_server(neighbours: &[&str]) -> Server {
    let server = Server::start();
    crm_load(
        &server,
        &["--meetings", MEETINGS, "--neighbours", "0", "--users", "20"],
    );
    for installation in neighbours {
        crm_load(
            &server,
            &[
                "--meetings",
                "100",
                "--installation",
                installation,
                "--neighbours",
                "0",
                "--users",
                "20",
            ],
        );
    }
    server
}

fn reload(con: &mut Connection) {
    redis::cmd("DEBUG").arg("RELOAD").query::<()>(con).unwrap();
}

#[test]
fn queries_wait_for_the_loading_index_while_the_server_answers_others() {
    let server = loaded_server(&[]);
    let mut con = server.connect();
    let queries = big_queries();
    let expected: Vec<Answer> = queries.iter().map(|q| reference(&mut con, q)).collect();
    reload(&mut con);
    let keyspace_before = figure(&mut con, "plan_keyspace");
    let waits_before = figure(&mut con, "index_waits");

    let done = AtomicBool::new(false);
    let pongs_while_building = AtomicU64::new(0);
    std::thread::scope(|scope| {
        // PING (and INFO) answered while the index loads: the server is not held.
        let pinger = scope.spawn(|| {
            let mut con = server.connect();
            while !done.load(Ordering::Relaxed) {
                let pong: String = redis::cmd("PING").query(&mut con).unwrap();
                assert_eq!(pong, "PONG");
                if figure(&mut con, "index_building") > 0 {
                    pongs_while_building.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let clients: Vec<_> = queries
            .iter()
            .zip(&expected)
            .map(|(query, expected)| {
                let server = &server;
                scope.spawn(move || {
                    let mut con = server.connect();
                    for _ in 0..3 {
                        let answer = decode(
                            redis::cmd("CRM.MEETINGS")
                                .arg(query.module_args())
                                .query(&mut con)
                                .unwrap(),
                        );
                        assert_eq!(&answer, expected, "{query:?}");
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        pinger.join().unwrap();
    });
    assert_eq!(
        figure(&mut con, "plan_keyspace"),
        keyspace_before,
        "a query too big for the keyspace path took it while its index loaded"
    );
    assert!(figure(&mut con, "index_waits") > waits_before);
    assert!(
        pongs_while_building.load(Ordering::Relaxed) > 0,
        "no PING was answered while the index was loading"
    );
}

#[test]
fn a_query_that_cannot_wait_is_answered_loading_and_a_small_one_from_the_keyspace() {
    let server = loaded_server(&["20"]);
    let mut con = server.connect();
    let big = query("10", "1", &[("status", "open")]);
    let small = query("20", "1", &[]);
    let (big_expected, small_expected) = (reference(&mut con, &big), reference(&mut con, &small));

    // MULTI/EXEC cannot block: the big query is answered LOADING, the small one.
    reload(&mut con);
    let mut pipe = redis::pipe();
    pipe.cmd("MULTI");
    pipe.cmd("CRM.MEETINGS").arg(big.module_args());
    pipe.cmd("CRM.MEETINGS").arg(small.module_args());
    pipe.cmd("EXEC");
    // Read raw: one reply of the transaction is an error.
    let mut replies = con
        .req_packed_commands(&pipe.get_packed_pipeline(), 0, 4)
        .unwrap();
    let Some(Value::Array(replies)) = replies.pop() else {
        panic!("EXEC failed: {replies:?}")
    };
    let [loading, answered]: [Value; 2] = replies.try_into().unwrap();
    match loading {
        Value::ServerError(error) => {
            assert_eq!(error.code(), "LOADING", "{error:?}");
            assert!(
                error.details().unwrap_or("").contains("installation '10'"),
                "{error:?}"
            );
        }
        other => panic!("not LOADING: {other:?}"),
    }
    assert_eq!(decode(answered), small_expected);

    // A script cannot block either.
    let script = "return redis.call('CRM.MEETINGS', '10', '1', 'FILTER', 'status', 'open')";
    reload(&mut con);
    let error = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .query::<Value>(&mut con)
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BusyLoadingError, "{error:?}");

    // Past crm.index-wait-ms a waiting client is told to retry; retrying gets the answer.
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("crm.index-wait-ms")
        .arg(1)
        .query::<()>(&mut con)
        .unwrap();
    reload(&mut con);
    let timeouts_before = figure(&mut con, "index_wait_timeouts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        match redis::cmd("CRM.MEETINGS")
            .arg(big.module_args())
            .query::<Value>(&mut con)
        {
            Ok(value) => break decode(value),
            Err(error) => {
                assert_eq!(error.kind(), ErrorKind::BusyLoadingError, "{error:?}");
                assert!(error_text(&error).contains("meetings read"), "{error:?}");
            }
        }
        assert!(Instant::now() < deadline, "the index never loaded");
    };
    assert_eq!(answer, big_expected);
    assert!(figure(&mut con, "index_wait_timeouts") > timeouts_before);
}

#[test]
fn preloaded_indexes_are_built_after_a_load_without_a_query() {
    let server = loaded_server(&["20"]);
    let mut con = server.connect();
    // The preloaded sort (so every row), then a value set and a user's clients.
    let big = query("10", "7", &[("type", "video")]);
    let expected = reference(&mut con, &big);
    let wait_built = |con: &mut Connection, installations: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while figure(con, "index_installations") < installations
            || figure(con, "index_building") > 0
        {
            assert!(Instant::now() < deadline, "preloading never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for (preload, installations, own) in [("10", 1, 60_000), ("all", 2, 60_100)] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("crm.index-preload")
            .arg(preload)
            .query::<()>(&mut con)
            .unwrap();
        reload(&mut con);
        wait_built(&mut con, installations);
        assert_eq!(figure(&mut con, "index_installations"), installations);
        // Installation 10's rows are in before any query: its set names all 60,000.
        // Each index holds its own meetings only (the sorted set is shared).
        assert_eq!(figure(&mut con, "index_meetings"), own, "preload {preload}");
        let answer = decode(
            redis::cmd("CRM.MEETINGS")
                .arg(big.module_args())
                .query(&mut con)
                .unwrap(),
        );
        assert_eq!(answer, expected);
    }
    let error = redis::cmd("CONFIG")
        .arg("SET")
        .arg("crm.index-preload")
        .arg("all 10")
        .query::<()>(&mut con)
        .unwrap_err();
    assert!(
        error_text(&error).contains("'all' stands alone"),
        "{error:?}"
    );
}

/// A restricted user whose patterns do not prove the meeting hashes readable (a character
/// class) has each of the 60,000 hashes checked: its first query waits for that check as
/// for a load (the server answering others), then is answered from the index, as the
/// keyspace path answers it; a user denied some hashes gets the keyspace path's NOPERM.
#[test]
fn a_restricted_user_waits_for_its_check_then_reads_the_index() {
    let server = loaded_server(&[]);
    let mut admin = server.connect();
    // No filter: every one of the 60,000 meetings is a candidate, and its hash checked.
    let big = query("10", "7", &[]);
    let expected = reference(&mut admin, &big);
    for (user, pattern) in [
        ("checked", "%R~meeting:[0-9]*"),
        ("denied", "%R~meeting:[0-8]*"),
    ] {
        redis::cmd("ACL")
            .arg(&[
                "SETUSER",
                user,
                "on",
                ">pw",
                "+@all",
                "%R~meeting_*",
                "%R~meetings_*",
            ])
            .arg(&["%R~clients_for_user:*", pattern])
            .query::<()>(&mut admin)
            .unwrap();
    }
    // The index's parts first, for a `~*` user.
    assert_eq!(
        decode(
            redis::cmd("CRM.MEETINGS")
                .arg(big.module_args())
                .query(&mut admin)
                .unwrap()
        ),
        expected
    );
    let waits = figure(&mut admin, "index_waits");
    let before = index_answers(&mut admin);
    let mut checked = server.login("checked");
    let started = Instant::now();
    let answer: Value = redis::cmd("CRM.MEETINGS")
        .arg(big.module_args())
        .query(&mut checked)
        .unwrap();
    assert_eq!(decode(answer), expected);
    assert!(
        figure(&mut admin, "index_waits") > waits,
        "the check took under 2 ms: {:?}",
        started.elapsed()
    );
    assert_eq!(
        index_answers(&mut admin),
        before + 1,
        "not answered from the index"
    );
    // Checked once: the next query reads the index at once.
    let answer: Value = redis::cmd("CRM.MEETINGS")
        .arg(big.module_args())
        .query(&mut checked)
        .unwrap();
    assert_eq!(decode(answer), expected);
    assert_eq!(index_answers(&mut admin), before + 2);
    let error = redis::cmd("CRM.MEETINGS")
        .arg(big.module_args())
        .query::<Value>(&mut server.login("denied"))
        .unwrap_err();
    assert!(error_text(&error).starts_with("NOPERM"), "{error:?}");
}
