//! Faults during a write load: the server killed with SIGKILL under `appendfsync always`,
//! and a primary killed under a replica that is then promoted. Afterwards every acknowledged
//! write is there, CRM.CHECK finds no drift, and queries equal the Lua reference.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::dataset::Rng;
use common::{assert_check_clean, decode, info, keyspace_state, replicate, Server, REFERENCE_LUA};
use redis::Connection;

const WRITERS: u64 = 4;
const IDS_PER_WRITER: u64 = 500;

/// What one writer knows when the server dies: for each id it wrote, the sequence number of
/// its last acknowledged write, and the one write that was in flight (sent, not answered).
#[derive(Default)]
struct Acknowledged {
    last: HashMap<u64, u64>,
    in_flight: Option<(u64, u64)>,
}

/// Writes meetings `writer + WRITERS * k` until the server stops answering. Each write
/// names its sequence number in `details` and moves the meeting between values and dates.
/// With `replicas`, a write counts as acknowledged only once WAIT says a replica has it.
fn write_until_failure(port: u16, writer: u64, replicas: bool) -> Acknowledged {
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let mut rng = Rng::new(writer);
    let mut acknowledged = Acknowledged::default();
    for sequence in 1.. {
        let id = writer + WRITERS * (rng.next() % IDS_PER_WRITER);
        acknowledged.in_flight = Some((id, sequence));
        let written = redis::cmd("CRM.MEETING.SET")
            .arg("10")
            .arg(id)
            .arg("clientid")
            .arg(1 + rng.below(20))
            .arg("type")
            .arg(*rng.pick(&["email", "sms", "call"]))
            .arg("status")
            .arg(*rng.pick(&["open", "close"]))
            .arg("date")
            .arg(1_600_000_000 + rng.below(1_000_000))
            .arg("details")
            .arg(sequence)
            .query::<i64>(&mut con);
        // Only the fault may stop a writer: any other error is a failure of the test.
        match written {
            Err(error) if is_fault(&error) => break,
            Err(error) => panic!("CRM.MEETING.SET failed: {error}"),
            Ok(_) => {}
        }
        if replicas {
            match redis::cmd("WAIT").arg(1).arg(1000).query::<i64>(&mut con) {
                Ok(1) => {}
                Err(error) if is_fault(&error) => break,
                other => panic!("WAIT answered {other:?}"),
            }
        }
        acknowledged.last.insert(id, sequence);
        acknowledged.in_flight = None;
    }
    acknowledged
}

/// The server went away (the fault injected), as opposed to an error reply.
fn is_fault(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
}

/// Runs the writers against `port`, calls `fault` while they write, and returns what they
/// saw acknowledged.
fn load_with_fault(port: u16, replicas: bool, fault: impl FnOnce()) -> Vec<Acknowledged> {
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| scope.spawn(move || write_until_failure(port, writer, replicas)))
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        fault();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// Every acknowledged write is present: each id holds its last acknowledged sequence
/// number, or the later one that was in flight when the server died.
fn assert_acknowledged_present(con: &mut Connection, writers: &[Acknowledged]) -> usize {
    let mut checked = 0;
    for writer in writers {
        for (&id, &sequence) in &writer.last {
            let stored: Option<u64> = redis::cmd("HGET")
                .arg(format!("meeting:{id}"))
                .arg("details")
                .query(con)
                .unwrap();
            let in_flight = writer.in_flight.filter(|(at, _)| *at == id).map(|(_, s)| s);
            assert!(
                stored == Some(sequence) || (stored.is_some() && stored == in_flight),
                "meeting {id}: acknowledged write {sequence} lost (stored {stored:?})"
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} writes were acknowledged");
    checked
}

/// Queries answer as the Lua reference does on the same data.
fn assert_queries_match_reference(con: &mut Connection) {
    let script = redis::Script::new(REFERENCE_LUA);
    for user in 1..=5 {
        let user = user.to_string();
        for (filters, lua_filters) in [
            (vec![], vec![]),
            (
                vec!["FILTER", "type", "email", "FILTER", "status", "open"],
                vec!["type", "email", "status", "open"],
            ),
        ] {
            let mut args = vec!["10", user.as_str()];
            args.extend(&filters);
            args.extend(["SORTBY", "date", "DESC", "LIMIT", "0", "20"]);
            let module = decode(redis::cmd("CRM.MEETINGS").arg(&args).query(con).unwrap());
            let mut lua_args = vec!["10", user.as_str(), "date", "DESC", "0", "20"];
            lua_args.extend(&lua_filters);
            let lua = decode(script.arg(&lua_args).invoke(con).unwrap());
            assert_eq!(module, lua, "{args:?}");
        }
    }
}

fn seed_users(con: &mut Connection) {
    for user in 1..=5 {
        let clients: Vec<u64> = (1..=20).filter(|c| c % (user + 1) != 0).collect();
        redis::cmd("SADD")
            .arg(format!("clients_for_user:{user}"))
            .arg(clients)
            .query::<()>(con)
            .unwrap();
    }
}

#[test]
fn kill_during_writes_loses_no_acknowledged_write() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = Server::start_with(&[], &aof);
    seed_users(&mut server.connect());
    let port = server.port;
    let writers = load_with_fault(port, false, || server.kill());
    server.restart(true, &aof);
    let mut con = server.connect();
    let checked = assert_acknowledged_present(&mut con, &writers);
    assert_check_clean(&mut con, "10");
    assert_queries_match_reference(&mut con);
    println!("kill -9 under appendfsync always: {checked} meetings, each with its last acknowledged write");
}

#[test]
fn replica_promoted_after_its_primary_dies_holds_every_replicated_write() {
    let mut primary = Server::start();
    let replica = Server::start();
    let mut replica_con = replica.connect();
    replicate(&mut replica_con, &primary);
    seed_users(&mut primary.connect());
    let port = primary.port;
    let writers = load_with_fault(port, true, || primary.kill());
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query::<()>(&mut replica_con)
        .unwrap();
    let checked = assert_acknowledged_present(&mut replica_con, &writers);
    assert_check_clean(&mut replica_con, "10");
    assert_queries_match_reference(&mut replica_con);
    // The promoted replica takes the module's writes.
    let created: i64 = redis::cmd("CRM.MEETING.SET")
        .arg(&["10", "999999", "clientid", "1"])
        .query(&mut replica_con)
        .unwrap();
    assert_eq!(created, 1);
    println!("primary killed mid-stream: {checked} meetings on the promoted replica, each with its last replicated write");
}

/// Waits until the replica follows the restarted primary's history (the replication id the
/// primary made when the replica attached) up to its offset, with no sync in progress.
/// WAIT alone is not enough: the replica may acknowledge its old offset before the new
/// full copy has loaded.
fn wait_for_resync(replica: &mut Connection, primary: &mut Connection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (on_replica, on_primary) = (info(replica, "replication"), info(primary, "replication"));
        let same = |name: &str| {
            on_replica.contains_key(name) && on_replica.get(name) == on_primary.get(name)
        };
        if on_replica.get("master_link_status").map(String::as_str) == Some("up")
            && on_replica
                .get("master_sync_in_progress")
                .map(String::as_str)
                == Some("0")
            && same("master_replid")
            && same("master_repl_offset")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not resync: {on_replica:?} {on_primary:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replica_resyncs_with_its_primary_after_the_primary_restarts() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut primary = Server::start_with(&[], &aof);
    let replica = Server::start();
    let mut replica_con = replica.connect();
    replicate(&mut replica_con, &primary);
    seed_users(&mut primary.connect());
    let port = primary.port;
    let writers = load_with_fault(port, false, || primary.kill());
    // The primary comes back from its AOF on the same port; the replica reconnects and
    // takes a full copy, whatever it had received before the link broke.
    primary.restart(true, &aof);
    let mut con = primary.connect();
    wait_for_resync(&mut replica_con, &mut con);
    let checked = assert_acknowledged_present(&mut replica_con, &writers);
    assert_eq!(keyspace_state(&mut replica_con), keyspace_state(&mut con));
    assert_check_clean(&mut replica_con, "10");
    assert_queries_match_reference(&mut replica_con);
    println!("primary restarted from its AOF: the replica resynced, {checked} meetings checked");
}
