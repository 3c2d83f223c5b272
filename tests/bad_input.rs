//! Every malformed call gets its precise error; after each the server answers PING and no
//! key changed (DBSIZE and DEBUG DIGEST as before).

mod common;

use common::{error_of, keyspace_state, load_seed, meetings, Server};
use redis::Connection;

/// The errors of a sort field and a filter field no setting names.
const UNKNOWN_RANK: &str = "ERR unknown sort field 'rank': sort fields are date (crm.sort-fields, \
     by a sorted set) and none (crm.hash-sort-fields, by the meeting hash's field); add the \
     field to one of them to sort on it";
const UNKNOWN_TPYE: &str = "ERR unknown field 'tpye': filter fields are type, status \
     (crm.filter-fields; add a field there to filter on it)";

fn assert_error(con: &mut Connection, args: &[&[u8]], expected: &str) {
    assert_command_error(con, "CRM.MEETINGS", args, expected);
}

fn assert_command_error(con: &mut Connection, command: &str, args: &[&[u8]], expected: &str) {
    let before = keyspace_state(con);
    let message = error_of(con, command, args);
    assert_eq!(
        message,
        expected,
        "args {:?}",
        args.iter()
            .map(|a| String::from_utf8_lossy(&a[..a.len().min(40)]).into_owned())
            .collect::<Vec<_>>()
    );
    let pong: String = redis::cmd("PING").query(con).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(
        keyspace_state(con),
        before,
        "a failed call changed the keyspace"
    );
}

fn words(text: &str) -> Vec<&[u8]> {
    text.split(' ')
        .filter(|w| !w.is_empty())
        .map(str::as_bytes)
        .collect()
}

#[test]
fn malformed_arguments() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let arity = "ERR wrong number of arguments for 'crm.meetings' command";
    let cases: &[(&str, &str)] = &[
        ("", arity),
        ("10", arity),
        (
            "10 1 BOGUS",
            "ERR unknown option 'BOGUS': expected FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, RETURN or FORMAT",
        ),
        (
            "10 1 LIMIT 0 10 extra",
            "ERR unknown option 'extra': expected FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, RETURN or FORMAT",
        ),
        ("10 1 FILTER", "ERR FILTER needs a field and a value"),
        ("10 1 FILTER type", "ERR FILTER needs a field and a value"),
        ("10 1 EXCLUDE", "ERR EXCLUDE needs a field and a value"),
        (
            "10 1 FILTER type email EXCLUDE status",
            "ERR EXCLUDE needs a field and a value",
        ),
        ("10 1 RANGE date 1", "ERR RANGE needs a field, a min and a max"),
        (
            "10 1 RANGE date 2017-13-01 +inf",
            "ERR RANGE min must be a number, -inf, +inf, an RFC 3339 date-time or a YYYY-MM-DD \
             date (a leading '(' excludes it), got '2017-13-01'",
        ),
        (
            "10 1 RANGE date 0 ((5",
            "ERR RANGE max must be a number, -inf, +inf, an RFC 3339 date-time or a YYYY-MM-DD \
             date (a leading '(' excludes it), got '((5'",
        ),
        ("10 1 RANGE rank 0 5", UNKNOWN_RANK),
        ("10 1 SORTBY rank", UNKNOWN_RANK),
        ("10 1 FILTER tpye email", UNKNOWN_TPYE),
        ("10 1 EXCLUDE tpye email", UNKNOWN_TPYE),
        ("10 1 AFTER 11", "ERR AFTER needs a meeting id and a count"),
        (
            "10 1 LIMIT 0 1 AFTER 11 1",
            "ERR LIMIT and AFTER cannot be combined: AFTER <id> <count> pages from a meeting, \
             LIMIT by offset",
        ),
        ("10 1 AFTER 99 1", "ERR AFTER: meeting '99' does not exist"),
        ("10 1 SORTBY", "ERR SORTBY needs a field"),
        (
            "10 1 SORTBY date SORTBY date",
            "ERR SORTBY given more than once",
        ),
        ("10 1 LIMIT", "ERR LIMIT needs an offset and a count"),
        ("10 1 LIMIT 0", "ERR LIMIT needs an offset and a count"),
        (
            "10 1 LIMIT x 10",
            "ERR LIMIT offset must be a non-negative integer, got 'x'",
        ),
        (
            "10 1 LIMIT -1 10",
            "ERR LIMIT offset must be a non-negative integer, got '-1'",
        ),
        (
            "10 1 LIMIT 0 -5",
            "ERR LIMIT count must be a non-negative integer, got '-5'",
        ),
        (
            "10 1 LIMIT 0 1.5",
            "ERR LIMIT count must be a non-negative integer, got '1.5'",
        ),
        (
            "10 1 LIMIT 0 1001",
            "ERR LIMIT count 1001 is above the maximum page size 1000 (crm.max-page)",
        ),
        ("10 1 LIMIT 0 5 LIMIT 0 5", "ERR LIMIT given more than once"),
    ];
    for (args, expected) in cases {
        assert_error(&mut con, &words(args), expected);
    }
    let facets: &[(&str, &str)] = &[
        (
            "10",
            "ERR wrong number of arguments for 'crm.facets' command",
        ),
        (
            "10 1 FILTER type email",
            "ERR CRM.FACETS needs at least one FIELD <field> <n> <value>...",
        ),
        (
            "10 1 FIELD status",
            "ERR FIELD needs a field, a count and values",
        ),
        (
            "10 1 FIELD status 2 open",
            "ERR FIELD status needs 2 values",
        ),
        (
            "10 1 FIELD status 300 open",
            "ERR FIELD count must be from 1 to 256, got 300",
        ),
        (
            "10 1 FIELD status 2 open open",
            "ERR FIELD status: value 'open' given twice",
        ),
        (
            "10 1 FIELD status 1 open SORTBY date",
            "ERR unknown option 'SORTBY': expected FILTER, EXCLUDE, RANGE, FIELD or FORMAT",
        ),
        ("10 1 RANGE rank 0 1 FIELD status 1 open", UNKNOWN_RANK),
        ("10 1 FIELD tpye 1 email", UNKNOWN_TPYE),
    ];
    for (args, expected) in facets {
        assert_command_error(&mut con, "CRM.FACETS", &words(args), expected);
    }
    // An empty FILTER field, and binary garbage as an option, echoed escaped and cut.
    assert_error(
        &mut con,
        &[b"10", b"1", b"FILTER", b"", b"x"],
        "ERR FILTER field must not be empty",
    );
    assert_error(
        &mut con,
        &[b"10", b"1", b"\x00\xff\r\n"],
        "ERR unknown option '\\x00\\xff\\x0d\\x0a': expected FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, RETURN or FORMAT",
    );
    let huge = vec![b'A'; 1 << 20];
    let expected = format!(
        "ERR unknown option '{}...(1048576 bytes)': expected FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, RETURN or FORMAT",
        "A".repeat(64)
    );
    assert_error(&mut con, &[b"10", b"1", &huge], &expected);
    assert_error(
        &mut con,
        &[b"10", b"1", b"LIMIT", &huge, b"1"],
        &format!(
            "ERR LIMIT offset must be a non-negative integer, got '{}...(1048576 bytes)'",
            "A".repeat(64)
        ),
    );
}

#[test]
fn binary_and_huge_ids_are_just_unknown() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let before = keyspace_state(&mut con);
    let huge = vec![b'9'; 1 << 20];
    for args in [
        vec![&b"\x00\xff\r\n"[..], b"2"],
        vec![b"10", &huge[..]],
        vec![&huge[..], b"2", b"FILTER", b"type", b"email"],
        vec![b"10", b"2", b"FILTER", b"type", &huge[..]],
    ] {
        let answer = common::decode(
            redis::cmd("CRM.MEETINGS")
                .arg(&args)
                .query(&mut con)
                .unwrap(),
        );
        assert_eq!((answer.total, answer.page.len()), (0, 0));
    }
    // A 1 MB field is no field the settings name: refused, its name cut in the error.
    let cut = format!("'{}...(1048576 bytes)'", "9".repeat(64));
    for (args, message) in [
        (
            vec![&b"10"[..], b"2", b"FILTER", &huge[..], b"email"],
            format!("ERR unknown field {cut}: filter fields are type, status"),
        ),
        (
            vec![&b"10"[..], b"2", b"SORTBY", &huge[..]],
            format!("ERR unknown sort field {cut}: sort fields are date"),
        ),
    ] {
        let error = common::error_of(&mut con, "CRM.MEETINGS", &args);
        assert!(error.starts_with(&message) && error.len() < 400, "{error}");
    }
    assert_eq!(keyspace_state(&mut con), before);
}

#[test]
fn keys_of_the_wrong_type() {
    let server = Server::start();
    let mut con = server.connect();
    let query = "10 2 FILTER type email FILTER status open";
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "SET",
            "meeting_type:email_ins_10",
            query,
            "'meeting_type:email_ins_10' should be a set",
        ),
        (
            "SET",
            "clients_for_user:2",
            query,
            "'clients_for_user:2' should be a set",
        ),
        (
            "LPUSH",
            "meetings_ins_10",
            "10 2",
            "'meetings_ins_10' should be a set",
        ),
        (
            "SET",
            "meeting_date",
            query,
            "'meeting_date' should be a sorted set",
        ),
        ("SET", "meeting:19", query, "'meeting:19' should be a hash"),
    ];
    for (write, key, args, expected) in cases {
        redis::cmd("FLUSHALL").query::<()>(&mut con).unwrap();
        load_seed(&mut con);
        redis::cmd("DEL").arg(*key).query::<()>(&mut con).unwrap();
        redis::cmd(write)
            .arg(*key)
            .arg("x")
            .query::<()>(&mut con)
            .unwrap();
        let expected = format!(
            "WRONGTYPE Operation against a key holding the wrong kind of value: {expected}"
        );
        assert_error(&mut con, &words(args), &expected);
    }
    // The check does not depend on the data: a wrong-typed filter set is reported even for
    // a user who sees nothing.
    redis::cmd("FLUSHALL").query::<()>(&mut con).unwrap();
    redis::cmd("SET")
        .arg("meeting_status:open_ins_10")
        .arg("x")
        .query::<()>(&mut con)
        .unwrap();
    assert_error(&mut con, &words("10 nobody FILTER status open"), "WRONGTYPE Operation against a key holding the wrong kind of value: 'meeting_status:open_ins_10' should be a set");
}

#[test]
fn max_page_is_configurable() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("crm.max-page")
        .arg(1)
        .query::<()>(&mut con)
        .unwrap();
    assert_error(
        &mut con,
        &words("10 2 LIMIT 0 2"),
        "ERR LIMIT count 2 is above the maximum page size 1 (crm.max-page)",
    );
    assert_eq!(
        meetings(
            &mut con,
            &["10", "2", "FILTER", "type", "email", "LIMIT", "1", "1"]
        )
        .ids(),
        ["19"]
    );
    let error = error_of(&mut con, "CONFIG", &[b"SET", b"crm.max-page", b"0"]);
    assert!(error.starts_with("ERR"), "{error}");
}
