//! FORMAT JSON and RETURN, CRM.EXPLAIN, and the INFO `crm` section with CONFIG RESETSTAT.

mod common;

use common::{decode, error_of, load_seed, meetings, Server};
use redis::{Connection, Value};

const SEED_QUERY: [&str; 8] = [
    "10", "2", "FILTER", "type", "email", "FILTER", "status", "open",
];

fn json(con: &mut Connection, args: &[&str]) -> String {
    redis::cmd("CRM.MEETINGS")
        .arg(args)
        .arg("FORMAT")
        .arg("JSON")
        .query(con)
        .unwrap()
}

#[test]
fn json_format_embeds_details() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    assert_eq!(
        json(&mut con, &SEED_QUERY),
        r#"{"total":2,"meetings":[{"id":"11","details":{"subject":"Kick-off","date":"2017-06-10"}},{"id":"19","details":{"subject":"Demo","date":"2017-06-15"}}]}"#
    );
    // Details that are not JSON, or missing, never break the document.
    redis::cmd("HSET")
        .arg("meeting:11")
        .arg("details")
        .arg("half {\"open")
        .query::<()>(&mut con)
        .unwrap();
    redis::cmd("HDEL")
        .arg("meeting:19")
        .arg("details")
        .query::<()>(&mut con)
        .unwrap();
    let document = json(&mut con, &SEED_QUERY);
    assert_eq!(
        document,
        r#"{"total":2,"meetings":[{"id":"11","details":"half {\"open"},{"id":"19","details":null}]}"#
    );
    redis::cmd("HSET")
        .arg("meeting:11")
        .arg("details")
        .arg(&b"\xff\xfe\"\n"[..])
        .query::<()>(&mut con)
        .unwrap();
    let document = json(&mut con, &SEED_QUERY);
    let parsed: serde_json::Value = serde_json::from_str(&document).expect("valid JSON");
    assert_eq!(parsed["meetings"][0]["details"], "\u{fffd}\u{fffd}\"\n");
    assert_eq!(
        json(&mut con, &["10", "nobody"]),
        r#"{"total":0,"meetings":[]}"#
    );
}

#[test]
fn return_names_other_fields() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let args = [&SEED_QUERY[..], &["RETURN", "2", "clientid", "missing"]].concat();
    let reply: Value = redis::cmd("CRM.MEETINGS")
        .arg(&args)
        .query(&mut con)
        .unwrap();
    let Value::Array(items) = reply else { panic!() };
    assert_eq!(items[0], Value::Int(2));
    assert_eq!(
        items[1],
        Value::Array(vec![
            Value::BulkString(b"11".to_vec()),
            Value::Array(vec![
                Value::BulkString(b"clientid".to_vec()),
                Value::BulkString(b"2".to_vec()),
                Value::BulkString(b"missing".to_vec()),
                Value::Nil
            ]),
        ])
    );
    assert_eq!(
        json(&mut con, &args),
        r#"{"total":2,"meetings":[{"id":"11","clientid":"2","missing":null},{"id":"19","clientid":"8","missing":null}]}"#
    );
    // A returned field named `id` does not repeat the key: `id` is the meeting's id.
    let args = [&SEED_QUERY[..], &["RETURN", "2", "id", "details"]].concat();
    assert_eq!(
        json(&mut con, &args),
        r#"{"total":2,"meetings":[{"id":"11","details":{"subject":"Kick-off","date":"2017-06-10"}},{"id":"19","details":{"subject":"Demo","date":"2017-06-15"}}]}"#
    );
    let args = [&SEED_QUERY[..], &["RETURN", "1", "id"]].concat();
    assert_eq!(
        json(&mut con, &args),
        r#"{"total":2,"meetings":[{"id":"11"},{"id":"19"}]}"#
    );
    for (extra, expected) in [
        (&["RETURN", "2", "a"][..], "ERR RETURN needs 2 field names"),
        (
            &["RETURN", "0"],
            "ERR RETURN count must be from 1 to 64, got 0",
        ),
        (
            &["FORMAT", "XML"],
            "ERR FORMAT must be JSON or RESP, got 'XML'",
        ),
        (
            &["FORMAT", "JSON", "FORMAT", "RESP"],
            "ERR FORMAT given more than once",
        ),
    ] {
        let args: Vec<&[u8]> = SEED_QUERY
            .iter()
            .chain(extra)
            .map(|a| a.as_bytes())
            .collect();
        assert_eq!(error_of(&mut con, "CRM.MEETINGS", &args), expected);
    }
}

/// CRM.EXPLAIN of the seed query: the total, and each step's name and fields.
fn explain_steps(con: &mut Connection) -> (i64, Vec<(String, Vec<Value>)>) {
    let plan: Value = redis::cmd("CRM.EXPLAIN")
        .arg(&SEED_QUERY)
        .query(con)
        .unwrap();
    let Value::Array(items) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(items[0], Value::SimpleString("total".into()));
    let Value::Int(total) = items[1] else {
        panic!("{items:?}")
    };
    let Value::Array(steps) = &items[3] else {
        panic!()
    };
    let mut named = Vec::new();
    for step in steps {
        let Value::Array(fields) = step else { panic!() };
        let Value::SimpleString(name) = &fields[1] else {
            panic!("{fields:?}")
        };
        for (index, label) in [
            (2, "detail"),
            (4, "estimated"),
            (6, "actual"),
            (8, "time_us"),
        ] {
            assert_eq!(fields[index], Value::SimpleString(label.into()));
        }
        assert!(matches!(fields[5], Value::Int(_)) && matches!(fields[7], Value::Int(_)));
        named.push((name.clone(), fields.clone()));
    }
    (total, named)
}

#[test]
fn explain_traces_the_plan_without_changing_the_answer() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let before = meetings(&mut con, &SEED_QUERY);
    // From the index (the default).
    let (total, steps) = explain_steps(&mut con);
    assert_eq!(total, before.total);
    let names: Vec<&str> = steps.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["plan", "client security", "page", "fields"]);
    // Client security kept 2 meetings for user 2.
    assert_eq!(steps[1].1[7], Value::Int(2));
    // On the keyspace path: the step that says why, then the keyspace plan.
    redis::cmd("CONFIG")
        .arg(&["SET", "crm.index-plan", "keyspace"])
        .query::<()>(&mut con)
        .unwrap();
    let (total, steps) = explain_steps(&mut con);
    assert_eq!(total, before.total);
    let names: Vec<&str> = steps.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "index",
            "plan",
            "candidates",
            "filter",
            "client security",
            "sort values",
            "page",
            "fields"
        ]
    );
    assert_eq!(steps[4].1[7], Value::Int(2));
    assert_eq!(meetings(&mut con, &SEED_QUERY), before);
}

fn crm_info(con: &mut Connection) -> String {
    redis::cmd("INFO").arg("crm").query(con).unwrap()
}

#[test]
fn info_counts_calls_errors_rows_and_resets() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    for _ in 0..3 {
        meetings(&mut con, &SEED_QUERY);
    }
    error_of(
        &mut con,
        "CRM.MEETINGS",
        &[b"10", b"2", b"LIMIT", b"x", b"1"],
    );
    let _: Value = redis::cmd("CRM.MEETING.SET")
        .arg(&["10", "40", "clientid", "2"])
        .query(&mut con)
        .unwrap();
    let info = crm_info(&mut con);
    assert!(info.contains("# crm"), "{info}");
    let line = info
        .lines()
        .find(|l| l.starts_with("crm_meetings:"))
        .expect("meetings line");
    assert!(
        line.starts_with("crm_meetings:calls=4,errors=1,p50_us="),
        "{line}"
    );
    assert!(
        line.contains(",p99_us=") && line.contains(",max_us="),
        "{line}"
    );
    assert!(info.contains("crm_meeting_set:calls=1,errors=0"), "{info}");
    assert!(info.contains("crm_rows_returned:6"), "{info}");
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query::<()>(&mut con)
        .unwrap();
    let info = crm_info(&mut con);
    assert!(
        info.contains("crm_meetings:calls=0,errors=0,p50_us=0,p99_us=0,max_us=0"),
        "{info}"
    );
    assert!(info.contains("crm_rows_returned:0"), "{info}");
    let _ = decode(
        redis::cmd("CRM.MEETINGS")
            .arg(&SEED_QUERY)
            .query(&mut con)
            .unwrap(),
    );
    assert!(crm_info(&mut con).contains("crm_meetings:calls=1,"));
}
