//! Every key the module derives is checked against the caller's ACL key permissions:
//! a user confined to one installation cannot read or write another through the module,
//! a read-only user cannot write, in MULTI and in scripts too.

mod common;

use common::{error_text, keyspace_state, Server, TAGGED_TEMPLATES};
use redis::{Connection, Value};

fn server_with_two_installations() -> Server {
    let server = Server::start_with(&TAGGED_TEMPLATES, &[]);
    let mut con = server.connect();
    for installation in ["10", "11"] {
        for id in 1..=3 {
            let args = [
                installation,
                &id.to_string(),
                "clientid",
                "7",
                "type",
                "email",
                "status",
                "open",
                "date",
                &(100 * id).to_string(),
            ];
            redis::cmd("CRM.MEETING.SET")
                .arg(&args)
                .query::<i64>(&mut con)
                .unwrap();
        }
        redis::cmd("SADD")
            .arg(format!("{{{installation}}}:clients_for_user:1"))
            .arg(7)
            .query::<()>(&mut con)
            .unwrap();
    }
    let users = [
        ("alice", "~{10}:* +@all"),
        ("reader", "%R~{10}:* +@all"),
        ("nocommand", "~* +@all -crm.meetings"),
        (
            "nostatus",
            "%R~{10}:clients_for_user:* %R~{10}:meeting_type:* %R~{10}:meeting_date \
             %R~{10}:meeting:* %R~{10}:meetings +@all",
        ),
        (
            "setwriter",
            "%RW~{10}:meetings %RW~{10}:meeting_date %R~{10}:* +@all",
        ),
    ];
    for (name, rules) in users {
        let mut command = redis::cmd("ACL");
        command.arg("SETUSER").arg(name).arg("on").arg(">pw");
        for rule in rules.split(' ') {
            command.arg(rule);
        }
        command.query::<()>(&mut con).unwrap();
    }
    server
}

fn call(con: &mut Connection, args: &[&str]) -> Result<Value, String> {
    redis::cmd(args[0])
        .arg(&args[1..])
        .query::<Value>(con)
        .map_err(|e| error_text(&e))
}

fn total(value: Value) -> i64 {
    common::decode(value).total
}

#[test]
fn confined_user_reaches_only_its_installation() {
    let server = server_with_two_installations();
    let mut admin = server.connect();
    let mut alice = server.login("alice");
    assert_eq!(
        total(call(&mut alice, &["CRM.MEETINGS", "10", "1"]).unwrap()),
        3
    );
    assert_eq!(
        call(&mut alice, &["CRM.MEETING.SET", "10", "9", "clientid", "7"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(call(&mut alice, &["CRM.CHECK", "10"]).map(|_| ()), Ok(()));

    let before = keyspace_state(&mut admin);
    let denied = [
        (&["CRM.MEETINGS", "11", "1"][..], "{11}:clients_for_user:1"),
        (
            &["CRM.MEETINGS", "11", "1", "FILTER", "type", "email"],
            "{11}:clients_for_user:1",
        ),
        (
            &["CRM.MEETING.SET", "11", "9", "clientid", "7"],
            "{11}:meeting:9",
        ),
        (
            &["CRM.MEETING.SET", "11", "1", "status", "close"],
            "{11}:meeting:1",
        ),
        (&["CRM.MEETING.DEL", "11", "1"], "{11}:meeting:1"),
        (&["CRM.CHECK", "11"], "{11}:meetings"),
        (&["CRM.REPAIR", "11"], "{11}:meetings"),
    ];
    for (args, key) in denied {
        let error = call(&mut alice, args).unwrap_err();
        assert_eq!(
            error,
            format!("NOPERM this user has no permissions to access the '{key}' key"),
            "{args:?}"
        );
    }
    assert_eq!(
        keyspace_state(&mut admin),
        before,
        "a denied call changed the keyspace"
    );
}

#[test]
fn an_excluded_set_is_checked_like_a_filtered_one() {
    let server = server_with_two_installations();
    let mut user = server.login("nostatus");
    let allowed = ["CRM.MEETINGS", "10", "1", "FILTER", "type", "email"];
    let excluding = [&allowed[..], &["EXCLUDE", "status", "close"]].concat();
    // Several times: the first calls may take the keyspace path, later ones the index.
    for _ in 0..5 {
        assert_eq!(total(call(&mut user, &allowed).unwrap()), 3);
        assert_eq!(
            call(&mut user, &excluding).unwrap_err(),
            "NOPERM this user has no permissions to access the '{10}:meeting_status:close' key"
        );
        // CRM.FACETS reads each FIELD value's set: checked the same way.
        let counting = ["CRM.FACETS", "10", "1", "FIELD", "type", "1", "email"];
        assert_eq!(total(call(&mut user, &counting).unwrap()), 3);
        let counting = ["CRM.FACETS", "10", "1", "FIELD", "status", "1", "open"];
        assert_eq!(
            call(&mut user, &counting).unwrap_err(),
            "NOPERM this user has no permissions to access the '{10}:meeting_status:open' key"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn read_only_user_cannot_write() {
    let server = server_with_two_installations();
    let mut admin = server.connect();
    let mut reader = server.login("reader");
    assert_eq!(
        total(call(&mut reader, &["CRM.MEETINGS", "10", "1"]).unwrap()),
        3
    );
    assert!(call(&mut reader, &["CRM.CHECK", "10"]).is_ok());
    let before = keyspace_state(&mut admin);
    for args in [
        &["CRM.MEETING.SET", "10", "9", "clientid", "7"][..],
        &["CRM.MEETING.SET", "10", "1", "status", "close"],
        &["CRM.MEETING.DEL", "10", "1"],
        &["CRM.MEETING.DEL", "10", "404"],
        &["CRM.REPAIR", "10"],
    ] {
        let error = call(&mut reader, args).unwrap_err();
        assert!(
            error.starts_with("NOPERM this user has no permissions to access the '{10}:"),
            "{args:?}: {error}"
        );
    }
    assert_eq!(keyspace_state(&mut admin), before);
}

#[test]
fn user_without_the_command_is_refused() {
    let server = server_with_two_installations();
    let mut user = server.login("nocommand");
    let error = call(&mut user, &["CRM.MEETINGS", "10", "1"]).unwrap_err();
    assert!(error.starts_with("NOPERM"), "{error}");
    assert!(call(&mut user, &["CRM.CHECK", "10"]).is_ok());
}

#[test]
fn multi_and_scripts_check_the_same() {
    let server = server_with_two_installations();
    let mut alice = server.login("alice");
    let allowed: (Value,) = redis::pipe()
        .atomic()
        .cmd("CRM.MEETINGS")
        .arg("10")
        .arg("1")
        .query(&mut alice)
        .unwrap();
    assert_eq!(total(allowed.0), 3);
    let denied = redis::pipe()
        .atomic()
        .cmd("CRM.MEETINGS")
        .arg("11")
        .arg("1")
        .query::<(Value,)>(&mut alice)
        .unwrap_err();
    assert!(error_text(&denied).contains("NOPERM"), "{denied:?}");

    let script = "return redis.call('CRM.MEETINGS', ARGV[1], '1')";
    let allowed: Value = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .arg("10")
        .query(&mut alice)
        .unwrap();
    assert_eq!(total(allowed), 3);
    let denied = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .arg("11")
        .query::<Value>(&mut alice)
        .unwrap_err();
    assert!(
        error_text(&denied).contains(
            "NOPERM this user has no permissions to access the '{11}:clients_for_user:1' key"
        ),
        "{denied:?}"
    );
    let write = "return redis.call('CRM.MEETING.SET', '11', '9', 'clientid', '7')";
    let denied = redis::cmd("EVAL")
        .arg(write)
        .arg(0)
        .query::<Value>(&mut alice)
        .unwrap_err();
    assert!(error_text(&denied).contains("NOPERM"), "{denied:?}");
}

#[test]
fn command_info_declares_routing_and_categories() {
    let server = Server::start();
    let mut con = server.connect();
    let categories: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut con).unwrap();
    let has_crm_category = categories.iter().any(|c| c == "crm");
    // Per-command ACL categories exist from Redis 7.2 (Valkey reports 7.2.4 here).
    let server_info: String = redis::cmd("INFO").arg("server").query(&mut con).unwrap();
    let version = server_info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("0")
        .trim();
    let numbers: Vec<u32> = version
        .split('.')
        .filter_map(|part| part.parse().ok())
        .collect();
    let has_categories = numbers.as_slice() >= [7, 2].as_slice();
    for (name, arity, flag, category, key_flag) in [
        ("crm.meetings", -3, "readonly", "@read", "RO"),
        ("crm.explain", -3, "readonly", "@read", "RO"),
        ("crm.facets", -3, "readonly", "@read", "RO"),
        ("crm.meeting.set", -5, "write", "@write", "RW"),
        ("crm.meeting.mset", -5, "write", "@write", "RW"),
        ("crm.meeting.del", 3, "write", "@write", "RW"),
        ("crm.check", -2, "readonly", "@read", "RO"),
        ("crm.repair", 2, "write", "@write", "RW"),
    ] {
        let info: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(name)
            .query(&mut con)
            .unwrap();
        let text = format!("{info:?}");
        let Value::Array(outer) = info else {
            panic!("{text}")
        };
        let Value::Array(fields) = &outer[0] else {
            panic!("{text}")
        };
        assert_eq!(fields[1], Value::Int(arity), "{name}: {text}");
        for needle in [flag, key_flag, "not_key", "begin_search", "index"] {
            assert!(text.contains(needle), "{name} lacks {needle}: {text}");
        }
        if has_categories {
            assert!(text.contains(category), "{name} lacks {category}: {text}");
        }
        if has_crm_category {
            assert!(text.contains("@crm"), "{name}: {text}");
        }
        let docs: Value = redis::cmd("COMMAND")
            .arg("DOCS")
            .arg(name)
            .query(&mut con)
            .unwrap();
        let docs = format!("{docs:?}");
        for needle in ["summary", "complexity", "since", "installation"] {
            assert!(docs.contains(needle), "{name} docs lack {needle}: {docs}");
        }
    }
    if has_crm_category {
        let mut commands: Vec<String> = redis::cmd("ACL")
            .arg("CAT")
            .arg("crm")
            .query(&mut con)
            .unwrap();
        commands.sort();
        assert_eq!(
            commands,
            [
                "crm.check",
                "crm.explain",
                "crm.facets",
                "crm.meeting.del",
                "crm.meeting.mset",
                "crm.meeting.set",
                "crm.meetings",
                "crm.repair"
            ]
        );
    }
}

#[test]
fn repair_refused_before_its_first_write() {
    // May write the installation's set and date index, but only read its value sets.
    let server = server_with_two_installations();
    let mut admin = server.connect();
    redis::cmd("SREM")
        .arg("{10}:meetings")
        .arg(1)
        .query::<()>(&mut admin)
        .unwrap();
    redis::cmd("SREM")
        .arg("{10}:meeting_type:email")
        .arg(2)
        .query::<()>(&mut admin)
        .unwrap();
    let before = keyspace_state(&mut admin);
    let mut user = server.login("setwriter");
    let error = call(&mut user, &["CRM.REPAIR", "10"]).unwrap_err();
    assert!(
        error.starts_with("NOPERM this user has no permissions to access the '{10}:meeting_"),
        "{error}"
    );
    assert_eq!(
        keyspace_state(&mut admin),
        before,
        "the refused repair wrote something"
    );
}
