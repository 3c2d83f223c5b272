//! The write commands propagate their effects: a replica and a restart from the AOF or the
//! RDB hold exactly the primary's keys and answer every query the same; CRM.CHECK is clean.

mod common;

use common::dataset::Rng;
use common::{assert_check_clean, crm_load, decode, keyspace_state, replicate, Server};
use redis::{Connection, Value};

/// A mix of creates, updates (moves between values, new dates), deletes, raw drift and a
/// repair, on top of a small generated installation.
fn mixed_writes(server: &Server, con: &mut Connection, seed: u64) {
    crm_load(
        server,
        &[
            "--meetings",
            "3000",
            "--neighbours",
            "1",
            "--users",
            "30",
            "--seed",
            &seed.to_string(),
        ],
    );
    let mut rng = Rng::new(seed);
    let mut pipe = redis::pipe();
    for _ in 0..600 {
        // Installation 10 holds ids 1 to 3000, its neighbour 3001 to 3300 (refused to
        // installation 10's writes): new ids come from 3301 on.
        let n = 1 + rng.below(3500);
        let id = if n > 3000 { n + 300 } else { n }.to_string();
        match rng.below(10) {
            0..=5 => {
                let status = *rng.pick(&["open", "close"]);
                let kind = *rng.pick(&["email", "sms", "call"]);
                let date = (1_600_000_000 + rng.below(100_000_000)).to_string();
                let client = (1 + rng.below(300)).to_string();
                pipe.cmd("CRM.MEETING.SET")
                    .arg(&[
                        "10", &id, "clientid", &client, "status", status, "type", kind, "date",
                        &date,
                    ])
                    .ignore();
            }
            6..=7 => {
                pipe.cmd("CRM.MEETING.DEL").arg("10").arg(&id).ignore();
            }
            _ => {
                pipe.cmd("SREM").arg("meetings_ins_10").arg(&id).ignore();
            }
        }
    }
    pipe.query::<()>(con).unwrap();
    let _: Value = redis::cmd("CRM.REPAIR").arg("10").query(con).unwrap();
}

fn queries() -> Vec<Vec<String>> {
    let mut rng = Rng::new(7);
    (0..60)
        .map(|_| {
            let user = (1 + rng.below(30)).to_string();
            let mut args = vec!["10".to_string(), user];
            for (field, value) in [("status", "open"), ("type", "email"), ("type", "sms")] {
                if rng.chance(40) {
                    args.extend(["FILTER".to_string(), field.to_string(), value.to_string()]);
                }
            }
            let direction = if rng.chance(50) { "ASC" } else { "DESC" };
            args.extend(["SORTBY", "date", direction, "LIMIT"].map(String::from));
            args.push(rng.pick(&["0", "5", "40"]).to_string());
            args.push("10".to_string());
            args
        })
        .collect()
}

fn answers(con: &mut Connection) -> Vec<common::Answer> {
    queries()
        .iter()
        .map(|args| decode(redis::cmd("CRM.MEETINGS").arg(args).query(con).unwrap()))
        .collect()
}

#[test]
fn replica_holds_the_primarys_keys() {
    let primary = Server::start();
    let replica = Server::start();
    let mut con = primary.connect();
    let mut replica_con = replica.connect();
    replicate(&mut replica_con, &primary);
    mixed_writes(&primary, &mut con, 3);
    let acknowledged: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(20_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(acknowledged, 1);
    assert_eq!(keyspace_state(&mut replica_con), keyspace_state(&mut con));
    let on_primary = answers(&mut con);
    assert!(
        on_primary.iter().filter(|a| !a.page.is_empty()).count() > 20,
        "queries should find meetings"
    );
    assert_eq!(answers(&mut replica_con), on_primary);
    assert_check_clean(&mut con, "10");
    assert_check_clean(&mut replica_con, "10");
    // A replica refuses the write commands.
    let error = redis::cmd("CRM.MEETING.SET")
        .arg(&["10", "1", "status", "open"])
        .query::<Value>(&mut replica_con)
        .unwrap_err();
    assert_eq!(error.code(), Some("READONLY"));
}

#[test]
fn restart_from_aof_and_from_rdb() {
    let aof = ["--appendonly", "yes", "--appendfsync", "always"];
    let mut server = Server::start_with(&[], &aof);
    let mut con = server.connect();
    mixed_writes(&server, &mut con, 5);
    let state = keyspace_state(&mut con);
    let before = answers(&mut con);

    // kill -9, then the AOF is all there is.
    server.restart(true, &aof);
    let mut con = server.connect();
    assert_eq!(keyspace_state(&mut con), state);
    assert_eq!(answers(&mut con), before);
    assert_check_clean(&mut con, "10");

    // The AOF holds plain commands: a server without the module loads the same keys.
    server.restart(false, &aof);
    let mut con = server.connect();
    assert_eq!(keyspace_state(&mut con), state);

    // An RDB snapshot, loaded by a server with the module.
    server.restart(true, &aof);
    let mut con = server.connect();
    redis::cmd("SAVE").query::<()>(&mut con).unwrap();
    server.restart(true, &["--appendonly", "no"]);
    let mut con = server.connect();
    assert_eq!(keyspace_state(&mut con), state);
    assert_eq!(answers(&mut con), before);
    assert_check_clean(&mut con, "10");
}
