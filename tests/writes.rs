//! CRM.MEETING.SET / CRM.MEETING.DEL keep the hash, the value sets, the sort index and the
//! installation's set consistent; CRM.CHECK finds drift that raw writes inject and
//! CRM.REPAIR mends it.

mod common;

use std::collections::HashMap;

use common::{crm_load, error_of, keyspace_state, meetings, Server};
use redis::{Connection, Value};

fn set(con: &mut Connection, args: &[&str]) -> i64 {
    redis::cmd("CRM.MEETING.SET").arg(args).query(con).unwrap()
}

fn members(con: &mut Connection, key: &str) -> Vec<String> {
    let mut members: Vec<String> = redis::cmd("SMEMBERS").arg(key).query(con).unwrap();
    members.sort();
    members
}

fn score(con: &mut Connection, member: &str) -> Option<f64> {
    redis::cmd("ZSCORE")
        .arg("meeting_date")
        .arg(member)
        .query(con)
        .unwrap()
}

#[test]
fn set_creates_updates_and_moves_between_values() {
    let server = Server::start();
    let mut con = server.connect();
    let created = set(
        &mut con,
        &[
            "10",
            "11",
            "clientid",
            "2",
            "type",
            "email",
            "status",
            "open",
            "date",
            "2017-06-10T00:00:00Z",
            "details",
            r#"{"subject":"Kick-off"}"#,
        ],
    );
    assert_eq!(created, 1);
    assert_eq!(members(&mut con, "meeting_type:email_ins_10"), ["11"]);
    assert_eq!(members(&mut con, "meeting_status:open_ins_10"), ["11"]);
    assert_eq!(members(&mut con, "meetings_ins_10"), ["11"]);
    assert_eq!(score(&mut con, "meeting:11"), Some(1_497_052_800.0));
    let date: String = redis::cmd("HGET")
        .arg("meeting:11")
        .arg("date")
        .query(&mut con)
        .unwrap();
    assert_eq!(date, "2017-06-10T00:00:00Z");

    // Open to close, a new date as a number: the id moves, nothing is left behind.
    assert_eq!(
        set(
            &mut con,
            &["10", "11", "status", "close", "date", "1500000000"]
        ),
        0
    );
    assert_eq!(
        members(&mut con, "meeting_status:open_ins_10"),
        Vec::<String>::new()
    );
    assert_eq!(members(&mut con, "meeting_status:close_ins_10"), ["11"]);
    assert_eq!(score(&mut con, "meeting:11"), Some(1_500_000_000.0));
    assert_eq!(set(&mut con, &["10", "11", "type", "sms"]), 0);
    assert_eq!(
        members(&mut con, "meeting_type:email_ins_10"),
        Vec::<String>::new()
    );
    assert_eq!(members(&mut con, "meeting_type:sms_ins_10"), ["11"]);

    // The query sees the moved meeting where it now is.
    redis::cmd("SADD")
        .arg("clients_for_user:1")
        .arg(2)
        .query::<()>(&mut con)
        .unwrap();
    assert_eq!(
        meetings(&mut con, &["10", "1", "FILTER", "status", "close"]).ids(),
        ["11"]
    );
    assert_eq!(
        meetings(&mut con, &["10", "1", "FILTER", "status", "open"]).total,
        0
    );
    assert_eq!(meetings(&mut con, &["10", "1"]).ids(), ["11"]);
    let keys: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(
        keys, 6,
        "hash, type set, status set, installation set, date index, clients"
    );
}

/// Writes of a few meetings, moves between values included, as (id, field/value pairs).
fn mixed_writes() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("1", vec!["status", "close", "date", "2025-03-04"]),
        (
            "2",
            vec![
                "clientid",
                "5",
                "type",
                "sms",
                "date",
                "2025-03-04T10:00:00+01:00",
            ],
        ),
        (
            "3",
            vec![
                "clientid",
                "6",
                "type",
                "email",
                "status",
                "open",
                "details",
                "{\"a\":[1]}",
            ],
        ),
        (
            "4",
            vec![
                "clientid",
                "6",
                "type",
                "call",
                "type",
                "video",
                "date",
                "1497052800",
            ],
        ),
    ]
}

#[test]
fn mset_writes_as_set_does_each() {
    let server = Server::start();
    let mut con = server.connect();
    let start = [
        "10", "1", "clientid", "1", "status", "open", "type", "email",
    ];
    // One meeting per CRM.MEETING.SET...
    set(&mut con, &start);
    let created: Vec<i64> = mixed_writes()
        .iter()
        .map(|(id, pairs)| {
            let args: Vec<&str> = ["10", id].iter().chain(pairs).copied().collect();
            set(&mut con, &args)
        })
        .collect();
    let by_set = keyspace_state(&mut con);
    // ... and all in one CRM.MEETING.MSET give the same keyspace and the same replies.
    redis::cmd("FLUSHALL").query::<()>(&mut con).unwrap();
    set(&mut con, &start);
    let mut mset = redis::cmd("CRM.MEETING.MSET");
    mset.arg("10");
    for (id, pairs) in mixed_writes() {
        mset.arg(id).arg(pairs.len() / 2).arg(pairs);
    }
    let replies: Vec<i64> = mset.query(&mut con).unwrap();
    assert_eq!(replies, created);
    assert_eq!(replies, [0, 1, 1, 1]);
    assert_eq!(keyspace_state(&mut con), by_set);
    assert_eq!(members(&mut con, "meeting_status:open_ins_10"), ["3"]);
    assert_eq!(members(&mut con, "meeting_type:video_ins_10"), ["4"]);
    assert_eq!(score(&mut con, "meeting:2"), Some(1_741_078_800.0));
    let all = meetings(&mut con, &["10", "u1", "SORTBY", "date", "ASC"]);
    assert!(all.ids().is_empty(), "no user has clients yet");
}

#[test]
fn mset_where_two_names_render_one_key_writes_as_set_does() {
    // Field `type:x` value `y` and field `type` value `x:y` both name `meeting_type:x:y_ins_10`:
    // meeting 1 leaves it by one name and joins by the other, meeting 2 the other way round.
    let server = Server::start_with(&["filter-fields", "type status type:x"], &[]);
    let mut con = server.connect();
    let start = |con: &mut Connection| {
        redis::cmd("FLUSHALL").query::<()>(con).unwrap();
        for id in ["1", "2"] {
            set(
                con,
                &["10", id, "clientid", "1", "type:x", "y", "type", "w"],
            );
        }
    };
    let writes: [(&str, [&str; 4]); 2] = [
        ("1", ["type:x", "q", "type", "x:y"]),
        ("2", ["type", "x:y", "type:x", "q"]),
    ];
    start(&mut con);
    for (id, pairs) in &writes {
        let args: Vec<&str> = ["10", id].iter().chain(pairs).copied().collect();
        set(&mut con, &args);
    }
    let by_set = keyspace_state(&mut con);
    let shared = members(&mut con, "meeting_type:x:y_ins_10");
    start(&mut con);
    let mut mset = redis::cmd("CRM.MEETING.MSET");
    mset.arg("10");
    for (id, pairs) in &writes {
        mset.arg(id).arg(2).arg(pairs);
    }
    mset.query::<Vec<i64>>(&mut con).unwrap();
    assert_eq!(members(&mut con, "meeting_type:x:y_ins_10"), shared);
    assert_eq!(keyspace_state(&mut con), by_set);
}

#[test]
fn mset_refuses_every_meeting_for_one() {
    let server = Server::start();
    let mut con = server.connect();
    set(&mut con, &["20", "7", "clientid", "1"]);
    set(&mut con, &["10", "1", "clientid", "1", "status", "open"]);
    let before = keyspace_state(&mut con);
    let mset_arity = "ERR wrong number of arguments for 'crm.meeting.mset' command";
    let cases: &[(&[&str], &str)] = &[
        (
            &["10", "2", "1", "clientid", "3", "7", "1", "status", "close"],
            "ERR meeting '7' belongs to installation '20'",
        ),
        (
            &["10", "2", "1", "clientid", "3", "8", "1", "status", "open"],
            "ERR clientid is required to create meeting '8'",
        ),
        (
            &[
                "10", "1", "1", "status", "close", "2", "2", "clientid", "3", "details", "{bad",
            ],
            "ERR details of meeting '2' must be valid JSON",
        ),
        (
            &[
                "10", "1", "1", "status", "close", "2", "2", "clientid", "3", "date", "soon",
            ],
            "ERR date must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got 'soon'",
        ),
        (
            &["10", "2", "1", "clientid", "3", "2", "1", "status", "open"],
            "ERR meeting '2' is given twice: one CRM.MEETING.MSET writes each meeting once",
        ),
        (
            &["10", "2", "two", "clientid", "3"],
            "ERR the field count of meeting '2' must be a positive integer, got 'two'",
        ),
        (&["10", "2", "2", "clientid", "3"], mset_arity),
        (&["10", "2", "1", "clientid", "3", "4"], mset_arity),
    ];
    for (args, expected) in cases {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(
            error_of(&mut con, "CRM.MEETING.MSET", &args),
            *expected,
            "{args:?}"
        );
        assert_eq!(keyspace_state(&mut con), before, "{expected}");
    }
    // A key of the wrong type that one meeting would write refuses them all.
    redis::cmd("SET")
        .arg("meeting_type:sms_ins_10")
        .arg("x")
        .query::<()>(&mut con)
        .unwrap();
    let before = keyspace_state(&mut con);
    let args: Vec<&[u8]> = [
        "10", "2", "1", "clientid", "3", "3", "2", "clientid", "3", "type", "sms",
    ]
    .iter()
    .map(|a| a.as_bytes())
    .collect();
    assert!(error_of(&mut con, "CRM.MEETING.MSET", &args).starts_with("WRONGTYPE"));
    assert_eq!(keyspace_state(&mut con), before);
}

#[test]
fn validation_errors_write_nothing() {
    let server = Server::start();
    let mut con = server.connect();
    set(
        &mut con,
        &[
            "10", "1", "clientid", "1", "status", "open", "type", "email",
        ],
    );
    let set_arity = "ERR wrong number of arguments for 'crm.meeting.set' command";
    let del_arity = "ERR wrong number of arguments for 'crm.meeting.del' command";
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "CRM.MEETING.SET",
            &["10", "12", "status", "open"],
            "ERR clientid is required to create meeting '12'",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "12", "clientid", "3", "details", "{bad"],
            "ERR details of meeting '12' must be valid JSON",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "1", "details", "not json"],
            "ERR details of meeting '1' must be valid JSON",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "12", "clientid", "3", "date", "tomorrow"],
            "ERR date must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got 'tomorrow'",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "12", "clientid", "3", "date", "2017-02-30T00:00:00Z"],
            "ERR date must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got '2017-02-30T00:00:00Z'",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "12", "clientid", "3", "date", "1718000000000"],
            "ERR date 1718000000000 looks like milliseconds: sort fields take Unix seconds \
             (divide by 1000), an RFC 3339 date-time or a YYYY-MM-DD date",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "", "clientid", "3"],
            "ERR meeting id must not be empty",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "12", "", "x"],
            "ERR field names must not be empty",
        ),
        (
            "CRM.MEETING.SET",
            &["10", "12", "clientid", ""],
            "ERR clientid must not be empty",
        ),
        ("CRM.MEETING.SET", &["10", "12", "clientid"], set_arity),
        ("CRM.MEETING.SET", &["10", "12"], set_arity),
        ("CRM.MEETING.DEL", &["10"], del_arity),
        ("CRM.MEETING.DEL", &["10", "1", "2"], del_arity),
        (
            "CRM.MEETING.DEL",
            &["10", ""],
            "ERR meeting id must not be empty",
        ),
    ];
    for (command, args, expected) in cases {
        let before = keyspace_state(&mut con);
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(
            &error_of(&mut con, command, &args),
            expected,
            "{command} {args:?}"
        );
        assert_eq!(
            keyspace_state(&mut con),
            before,
            "{command} {args:?} changed the keyspace"
        );
    }

    // A key of the wrong type anywhere the write would touch fails it before any write.
    let wrong: &[(&str, &str, &[&str], &str)] = &[
        (
            "SET",
            "meeting_status:close_ins_10",
            &["10", "1", "status", "close"],
            "'meeting_status:close_ins_10' should be a set",
        ),
        (
            "SET",
            "meeting:13",
            &["10", "13", "clientid", "1"],
            "'meeting:13' should be a hash",
        ),
        (
            "LPUSH",
            "meeting_date",
            &["10", "1", "date", "5"],
            "'meeting_date' should be a sorted set",
        ),
        (
            "SET",
            "meetings_ins_11",
            &["11", "900", "clientid", "1", "type", "sms"],
            "'meetings_ins_11' should be a set",
        ),
    ];
    for (write, key, args, expected) in wrong {
        redis::cmd(write)
            .arg(*key)
            .arg("x")
            .query::<()>(&mut con)
            .unwrap();
        let before = keyspace_state(&mut con);
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let message = error_of(&mut con, "CRM.MEETING.SET", &args);
        assert_eq!(
            message,
            format!(
                "WRONGTYPE Operation against a key holding the wrong kind of value: {expected}"
            )
        );
        assert_eq!(
            keyspace_state(&mut con),
            before,
            "{args:?} changed the keyspace"
        );
        redis::cmd("DEL").arg(*key).query::<()>(&mut con).unwrap();
    }
    assert_eq!(members(&mut con, "meeting_status:open_ins_10"), ["1"]);

    // Templates that give one key two roles (here the installation set and a meeting's
    // hash, both named `5`) fail before the first write, not half-way through it.
    for (name, value) in [
        ("crm.meetings-key", "<installation>"),
        ("crm.meeting-key", "<id>"),
    ] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query::<()>(&mut con)
            .unwrap();
    }
    let before = keyspace_state(&mut con);
    assert_eq!(
        error_of(
            &mut con,
            "CRM.MEETING.SET",
            &[b"5", b"5", b"clientid", b"1"]
        ),
        "ERR the templates crm.meeting-key and crm.meetings-key both name the key '5': \
         change one of them"
    );
    assert_eq!(keyspace_state(&mut con), before);
}

#[test]
fn a_hash_without_client_can_be_updated() {
    let server = Server::start();
    let mut con = server.connect();
    // Written before the module: no clientid.
    redis::cmd("HSET")
        .arg("meeting:50")
        .arg("details")
        .arg("{}")
        .query::<()>(&mut con)
        .unwrap();
    assert_eq!(set(&mut con, &["10", "50", "status", "open"]), 0);
    assert_eq!(members(&mut con, "meeting_status:open_ins_10"), ["50"]);
    assert_eq!(set(&mut con, &["10", "50", "clientid", "3"]), 0);
}

#[test]
fn delete_removes_every_listing() {
    let server = Server::start();
    let mut con = server.connect();
    set(
        &mut con,
        &[
            "10", "5", "clientid", "1", "type", "call", "status", "open", "date", "100",
        ],
    );
    set(
        &mut con,
        &[
            "10", "6", "clientid", "1", "type", "call", "status", "open", "date", "200",
        ],
    );
    let deleted: i64 = redis::cmd("CRM.MEETING.DEL")
        .arg("10")
        .arg("5")
        .query(&mut con)
        .unwrap();
    assert_eq!(deleted, 1);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("meeting:5")
        .query(&mut con)
        .unwrap();
    assert_eq!(exists, 0);
    for key in [
        "meeting_type:call_ins_10",
        "meeting_status:open_ins_10",
        "meetings_ins_10",
    ] {
        assert_eq!(members(&mut con, key), ["6"], "{key}");
    }
    assert_eq!(score(&mut con, "meeting:5"), None);
    assert_eq!(score(&mut con, "meeting:6"), Some(200.0));
    let again: i64 = redis::cmd("CRM.MEETING.DEL")
        .arg("10")
        .arg("5")
        .query(&mut con)
        .unwrap();
    assert_eq!(again, 0);
}

/// `kind -> (count, examples)` from a CRM.CHECK or CRM.REPAIR reply.
fn findings(reply: Value) -> HashMap<String, (i64, Vec<String>)> {
    let Value::Array(items) = reply else {
        panic!("not an array: {reply:?}")
    };
    let mut found = HashMap::new();
    for pair in items.chunks(2) {
        let name = match &pair[0] {
            Value::SimpleString(name) => name.clone(),
            Value::BulkString(name) => String::from_utf8_lossy(name).into_owned(),
            other => panic!("not a name: {other:?}"),
        };
        let entry = match &pair[1] {
            Value::Int(n) => (*n, Vec::new()),
            Value::Array(inner) => {
                let Value::Int(count) = inner[0] else {
                    panic!("no count")
                };
                let Value::Array(examples) = &inner[1] else {
                    panic!("no examples")
                };
                let examples = examples
                    .iter()
                    .map(|e| match e {
                        Value::BulkString(text) => String::from_utf8_lossy(text).into_owned(),
                        other => panic!("example {other:?}"),
                    })
                    .collect();
                (count, examples)
            }
            other => panic!("unexpected {other:?}"),
        };
        found.insert(name, entry);
    }
    found
}

fn check(con: &mut Connection, installation: &str) -> HashMap<String, (i64, Vec<String>)> {
    findings(
        redis::cmd("CRM.CHECK")
            .arg(installation)
            .arg("LIMIT")
            .arg(5)
            .query(con)
            .unwrap(),
    )
}

const KINDS: [&str; 6] = [
    "dangling_id",
    "several_values",
    "wrong_value",
    "missing_from_value_set",
    "missing_from_meetings_set",
    "sort_mismatch",
];

fn assert_clean(report: &HashMap<String, (i64, Vec<String>)>) {
    for kind in KINDS {
        assert_eq!(report[kind].0, 0, "{kind}: {:?}", report[kind].1);
    }
}

#[test]
fn check_finds_each_drift_and_repair_mends_it() {
    let server = Server::start();
    let mut con = server.connect();
    for id in 1..=20 {
        let status = if id % 2 == 0 { "open" } else { "close" };
        let date = (1000 + id).to_string();
        set(
            &mut con,
            &[
                "10",
                &id.to_string(),
                "clientid",
                "1",
                "type",
                "email",
                "status",
                status,
                "date",
                &date,
            ],
        );
    }
    let report = check(&mut con, "10");
    assert_eq!(report["meetings"].0, 20);
    assert_clean(&report);

    // One drift of each kind, written around the module.
    let raw: &[&[&str]] = &[
        &["SADD", "meeting_status:open_ins_10", "999"], // dangling id
        &["SADD", "meeting_status:close_ins_10", "2"],  // 2 is open: several values, wrong value
        &["SREM", "meeting_type:email_ins_10", "3"],    // missing from its value set
        &["HSET", "meeting:4", "status", "close"],      // listed open, hash says close
        &["SREM", "meetings_ins_10", "5"],              // missing from the installation's set
        &["ZADD", "meeting_date", "7", "meeting:6"],    // sort value disagrees
        &["ZREM", "meeting_date", "meeting:7"],         // sort value missing
    ];
    for command in raw {
        redis::cmd(command[0])
            .arg(&command[1..])
            .query::<()>(&mut con)
            .unwrap();
    }
    let report = check(&mut con, "10");
    assert_eq!(report["meetings"].0, 21);
    assert_eq!(
        report["dangling_id"],
        (1, vec!["999: listed but has no hash".to_string()])
    );
    assert_eq!(
        report["several_values"],
        (1, vec!["2: status listed as close, open".to_string()])
    );
    assert_eq!(report["wrong_value"].0, 2, "{:?}", report["wrong_value"]);
    assert!(report["wrong_value"]
        .1
        .contains(&"4: listed as status open but its hash says close".to_string()));
    assert_eq!(
        report["missing_from_value_set"].0, 2,
        "3's type and 4's status: {:?}",
        report["missing_from_value_set"]
    );
    assert_eq!(
        report["missing_from_meetings_set"],
        (1, vec!["5: not in the installation's set".to_string()])
    );
    assert_eq!(
        report["sort_mismatch"].0, 2,
        "{:?}",
        report["sort_mismatch"]
    );

    let repaired = findings(redis::cmd("CRM.REPAIR").arg("10").query(&mut con).unwrap());
    assert_eq!(repaired["dangling_id"].0, 1);
    assert!(repaired["writes"].0 >= 8, "{repaired:?}");
    assert_clean(&check(&mut con, "10"));
    assert_eq!(
        members(&mut con, "meeting_status:open_ins_10").len(),
        9,
        "2..=20 even, less 4"
    );
    assert!(!members(&mut con, "meeting_status:open_ins_10").contains(&"999".to_string()));
    assert!(members(&mut con, "meeting_type:email_ins_10").contains(&"3".to_string()));
    assert_eq!(score(&mut con, "meeting:6"), Some(1006.0));
    assert_eq!(score(&mut con, "meeting:7"), Some(1007.0));
    // A second repair finds nothing to do.
    let again = findings(redis::cmd("CRM.REPAIR").arg("10").query(&mut con).unwrap());
    assert_eq!(again["writes"].0, 0);
}

#[test]
fn check_and_repair_in_steps_and_in_multi() {
    let server = Server::start();
    let mut con = server.connect();
    crm_load(
        &server,
        &["--meetings", "20000", "--neighbours", "1", "--users", "20"],
    );
    let report = check(&mut con, "10");
    assert_eq!(report["meetings"].0, 20_000);
    assert_clean(&report);
    // The neighbour's keys are not installation 10's.
    assert_eq!(check(&mut con, "10-n1")["meetings"].0, 2_000);
    for id in (1..=20_000).step_by(200) {
        redis::cmd("SREM")
            .arg("meetings_ins_10")
            .arg(id)
            .query::<()>(&mut con)
            .unwrap();
    }
    let (size, _) = keyspace_state(&mut con);
    let report = check(&mut con, "10");
    assert_eq!(report["missing_from_meetings_set"].0, 100);
    let steps = report["steps"].0;
    let longest = report["longest_step_us"].0;
    eprintln!("CRM.CHECK of 20000 meetings: {steps} steps, longest {longest} us");
    // Inside MULTI the client cannot block: the same job runs in one go with the same result.
    let (in_multi,): (Value,) = redis::pipe()
        .atomic()
        .cmd("CRM.CHECK")
        .arg("10")
        .arg("LIMIT")
        .arg(5)
        .query(&mut con)
        .unwrap();
    let in_multi = findings(in_multi);
    // The same count; which five come first as examples depends on how the sets were
    // cut into batches, so only their form is compared.
    let (count, examples) = &in_multi["missing_from_meetings_set"];
    assert_eq!(*count, report["missing_from_meetings_set"].0);
    assert_eq!(examples.len(), 5);
    assert!(
        examples
            .iter()
            .all(|e| e.ends_with(": not in the installation's set")),
        "{examples:?}"
    );
    assert_eq!(in_multi["steps"].0, 1);

    let repaired = findings(redis::cmd("CRM.REPAIR").arg("10").query(&mut con).unwrap());
    assert_eq!(repaired["writes"].0, 100);
    eprintln!(
        "CRM.REPAIR of 20000 meetings: {} steps, longest {} us",
        repaired["steps"].0, repaired["longest_step_us"].0
    );
    assert_clean(&check(&mut con, "10"));
    assert_eq!(keyspace_state(&mut con).0, size);
}

#[test]
fn check_and_repair_arguments() {
    let server = Server::start();
    let mut con = server.connect();
    let check_arity = "ERR wrong number of arguments for 'crm.check' command";
    assert_eq!(error_of(&mut con, "CRM.CHECK", &[]), check_arity);
    assert_eq!(
        error_of(&mut con, "CRM.CHECK", &[b"10", b"LIMIT"]),
        check_arity
    );
    assert_eq!(
        error_of(&mut con, "CRM.CHECK", &[b"10", b"LIMIT", b"-1"]),
        "ERR LIMIT must be a non-negative integer, got '-1'"
    );
    assert_eq!(
        error_of(&mut con, "CRM.CHECK", &[b"10", b"TOP", b"1"]),
        "ERR unknown option 'TOP': expected LIMIT"
    );
    assert_eq!(
        error_of(&mut con, "CRM.REPAIR", &[]),
        "ERR wrong number of arguments for 'crm.repair' command"
    );
    // An unknown installation is clean and empty.
    let report = check(&mut con, "nowhere");
    assert_eq!(report["meetings"].0, 0);
    assert_clean(&report);

    // A value set of another type is named, not an internal error (found by the live fuzz).
    set(&mut con, &["10", "1", "clientid", "7", "status", "open"]);
    redis::cmd("DEL")
        .arg("meeting_status:open_ins_10")
        .query::<()>(&mut con)
        .unwrap();
    redis::cmd("SET")
        .arg("meeting_status:open_ins_10")
        .arg("x")
        .query::<()>(&mut con)
        .unwrap();
    for command in ["CRM.CHECK", "CRM.REPAIR"] {
        assert_eq!(
            error_of(&mut con, command, &[b"10"]),
            "WRONGTYPE Operation against a key holding the wrong kind of value: \
             'meeting_status:open_ins_10' should be a set"
        );
    }
}
