//! Key templates and limits as module configurations: defaults, CONFIG SET with checks,
//! `loadmodule` arguments, the configuration-file form, and `crm.index` switched off and on.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{error_of, figure, load_seed, meetings, set_config, Server};
use redis::Connection;

fn settings(con: &mut Connection) -> HashMap<String, String> {
    redis::cmd("CONFIG")
        .arg("GET")
        .arg("crm.*")
        .query(con)
        .unwrap()
}

#[test]
fn defaults_are_the_seed_schema() {
    let server = Server::start();
    let mut con = server.connect();
    let expected: HashMap<String, String> = [
        (
            "crm.filter-key",
            "meeting_<field>:<value>_ins_<installation>",
        ),
        ("crm.meetings-key", "meetings_ins_<installation>"),
        ("crm.clients-key", "clients_for_user:<user>"),
        ("crm.meeting-key", "meeting:<id>"),
        ("crm.sort-key", "meeting_<field>"),
        ("crm.sort-member", "meeting:<id>"),
        ("crm.filter-fields", "type status"),
        ("crm.sort-fields", "date"),
        ("crm.hash-sort-fields", ""),
        ("crm.max-page", "1000"),
        ("crm.index", "yes"),
        ("crm.index-plan", "auto"),
        ("crm.index-max-memory", "1073741824"),
        ("crm.index-wait-ms", "10000"),
        ("crm.index-preload", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(settings(&mut con), expected);
}

#[test]
fn config_set_checks_templates() {
    let server = Server::start();
    let mut con = server.connect();
    let before = settings(&mut con);
    for (name, value, reason) in [
        ("crm.meeting-key", "meeting:", "crm.meeting-key: template must contain <id>"),
        ("crm.filter-key", "m_<field>:<value>:<user>", "crm.filter-key: placeholder <user> is not allowed here (allowed: <installation> <field> <value>)"),
        ("crm.clients-key", "clients", "crm.clients-key: template must contain <user>"),
        ("crm.filter-fields", "type status type", "crm.filter-fields: field 'type' is listed twice"),
        ("crm.filter-fields", "type,status", "crm.filter-fields: fields are separated by spaces only, and a field name holds no ','"),
        ("crm.sort-fields", "date\trank", "crm.sort-fields: fields are separated by spaces only, and a field name holds no '\\t'"),
        (
            "crm.meeting-key",
            "{<instalation>}:meeting:<id>",
            "crm.meeting-key: unknown placeholder <instalation>",
        ),
    ] {
        let error = error_of(&mut con, "CONFIG", &[b"SET", name.as_bytes(), value.as_bytes()]);
        assert!(error.contains(reason), "{error}");
    }
    assert_eq!(
        settings(&mut con),
        before,
        "a refused CONFIG SET changed a setting"
    );
}

/// Hash-tagged names (one slot per installation), as a Redis Cluster deployment uses.
const TAGGED: [(&str, &str); 6] = [
    ("filter-key", "{<installation>}:type_<field>:<value>"),
    ("meetings-key", "{<installation>}:meetings"),
    ("clients-key", "{<installation>}:clients:<user>"),
    ("meeting-key", "{<installation>}:meeting:<id>"),
    ("sort-key", "{<installation>}:by_<field>"),
    ("sort-member", "<id>"),
];

fn load_tagged_seed(con: &mut Connection) {
    let mut pipe = redis::pipe();
    pipe.cmd("SADD")
        .arg("{10}:type_type:email")
        .arg(&[11, 12, 15, 16, 19, 20])
        .ignore();
    pipe.cmd("SADD")
        .arg("{10}:type_status:open")
        .arg(&[11, 13, 17, 19, 23])
        .ignore();
    pipe.cmd("SADD")
        .arg("{10}:clients:2")
        .arg(&[1, 2, 3, 8, 10, 11])
        .ignore();
    for (id, client, date) in [(11, 2, 30), (15, 7, 10), (19, 8, 20), (23, 12, 5)] {
        pipe.cmd("HSET")
            .arg(format!("{{10}}:meeting:{id}"))
            .arg("clientid")
            .arg(client)
            .arg("details")
            .arg(id)
            .ignore();
        pipe.cmd("ZADD")
            .arg("{10}:by_date")
            .arg(date)
            .arg(id)
            .ignore();
    }
    pipe.query::<()>(con).unwrap();
}

#[test]
fn loadmodule_arguments_set_templates() {
    let args: Vec<&str> = TAGGED
        .iter()
        .flat_map(|(name, value)| [*name, *value])
        .collect();
    let server = Server::start_with(&args, &[]);
    let mut con = server.connect();
    load_tagged_seed(&mut con);
    let query = [
        "10", "2", "FILTER", "type", "email", "FILTER", "status", "open",
    ];
    let answer = meetings(&mut con, &query);
    assert_eq!(
        (answer.total, answer.ids()),
        (2, vec!["19".to_string(), "11".to_string()])
    );
    assert_eq!(answer.page[0].1.as_deref(), Some(&b"19"[..]));
    // Back to the default names at run time: the same query reads the seed's keys.
    for (name, _) in TAGGED {
        let default = match name {
            "filter-key" => "meeting_<field>:<value>_ins_<installation>",
            "meetings-key" => "meetings_ins_<installation>",
            "clients-key" => "clients_for_user:<user>",
            "sort-key" => "meeting_<field>",
            _ => "meeting:<id>",
        };
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(format!("crm.{name}"))
            .arg(default)
            .query::<()>(&mut con)
            .unwrap();
    }
    assert_eq!(meetings(&mut con, &query).total, 0);
    load_seed(&mut con);
    assert_eq!(meetings(&mut con, &query).ids(), ["11", "19"]);
}

#[test]
fn configuration_file_form_and_bad_arguments() {
    // `--crm.max-page 5` on the command line is the same as `crm.max-page 5` in redis.conf.
    let server = Server::start_with(&[], &["--crm.max-page", "5"]);
    let mut con = server.connect();
    assert_eq!(settings(&mut con)["crm.max-page"], "5");
    drop(server);

    for bad in [
        &["meeting-key", "no-placeholder"][..],
        &["max-page", "0"],
        &["no-such-setting", "1"],
        &["max-page"],
    ] {
        let refused = Server::try_start(bad, &[]);
        let log = refused
            .err()
            .unwrap_or_else(|| panic!("module loaded with {bad:?}"));
        assert!(log.contains("crm-meetings:"), "{bad:?}: {log}");
    }
}

/// The indexes once the loading slices are done (a few milliseconds for the seed).
fn indexes_built(con: &mut Connection) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while figure(con, "index_installations") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    figure(con, "index_installations")
}

#[test]
fn index_off_drops_the_indexes_at_once() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let query = [
        "10", "2", "FILTER", "type", "email", "FILTER", "status", "open",
    ];
    let indexed = meetings(&mut con, &query);
    assert_eq!(indexes_built(&mut con), 1);

    // Off: gone with the CONFIG SET, before any query; the answers stay the same.
    set_config(&mut con, "crm.index", "no");
    assert_eq!(figure(&mut con, "index_installations"), 0);
    assert!(figure(&mut con, "index_dropped") >= 1);
    assert_eq!(meetings(&mut con, &query).ids(), indexed.ids());
    assert_eq!(figure(&mut con, "index_installations"), 0);

    // On again: the next query builds it again.
    set_config(&mut con, "crm.index", "yes");
    assert_eq!(meetings(&mut con, &query).ids(), indexed.ids());
    assert_eq!(indexes_built(&mut con), 1);

    // A preloaded installation: not built while the index is off (nothing would read it),
    // built again as soon as it is back on, with no query.
    set_config(&mut con, "crm.index", "no");
    set_config(&mut con, "crm.index-preload", "10");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(figure(&mut con, "index_installations"), 0);
    set_config(&mut con, "crm.index", "yes");
    assert_eq!(indexes_built(&mut con), 1);
    assert_eq!(meetings(&mut con, &query).ids(), indexed.ids());
}

#[test]
fn a_preload_ends_when_the_index_is_turned_off() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let query = ["10", "2", "FILTER", "status", "open"];
    let expected = meetings(&mut con, &query);
    // A preload started and the index turned off in one transaction, so that no loading
    // slice runs in between: nothing is built.
    let _: () = redis::pipe()
        .atomic()
        .cmd("CONFIG")
        .arg("SET")
        .arg("crm.index-preload")
        .arg("10")
        .ignore()
        .cmd("CONFIG")
        .arg("SET")
        .arg("crm.index")
        .arg("no")
        .ignore()
        .query(&mut con)
        .expect("MULTI/EXEC");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(figure(&mut con, "index_installations"), 0);
    assert_eq!(meetings(&mut con, &query).ids(), expected.ids());

    // Back on: the preloaded installation is built with no query.
    set_config(&mut con, "crm.index", "yes");
    assert_eq!(indexes_built(&mut con), 1);
    assert_eq!(meetings(&mut con, &query).ids(), expected.ids());
}
