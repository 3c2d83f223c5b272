//! `crm-load import` from CSV, JSON lines and PostgreSQL: the meetings and users land where
//! queries read them (every answer equals a model built from the same rows, CRM.CHECK is
//! clean), a re-run changes nothing, a meeting moved between values leaves no stale member,
//! a revoked client leaves its user's set, bad rows are reported by line, and --dry-run
//! writes nothing.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use common::dataset::{Dataset, Rng, DATASET_SETTINGS};
use common::postgres::Postgres;
use common::{assert_check_clean, decode, keyspace_state, loader_path, Server, TAGGED_TEMPLATES};
use redis::Connection;

const INSTALLATION: &str = "10";
const TYPES: [&str; 3] = ["email", "sms", "call"];
const STATUSES: [&str; 2] = ["open", "close"];
/// Dates as a CRM exports them, with their Unix seconds: every form the module takes.
const DATES: [(&str, f64); 5] = [
    ("2025-03-04", 1_741_046_400.0),
    ("2025-03-04T10:00:00+01:00", 1_741_078_800.0),
    ("2025-03-04T09:00:00Z", 1_741_078_800.0),
    ("2017-06-10T09:30:00.5-05:30", 1_497_106_800.5),
    ("2024-02-29", 1_709_164_800.0),
];
const RANKS: [&str; 4] = ["5", "-1.5", "tbd", "1e3"];

#[derive(Debug, Clone)]
struct Meeting {
    id: String,
    client: u64,
    kind: &'static str,
    status: &'static str,
    /// The date as written in the source, and its seconds.
    date: String,
    seconds: f64,
    rank: Option<&'static str>,
    details: String,
}

/// Meetings of installation 10 and the (user, client) pairs that say who sees which client.
fn generate(rng: &mut Rng, count: u64) -> (Vec<Meeting>, Vec<(String, u64)>) {
    let meetings = (1..=count)
        .map(|n| {
            let (date, seconds) = if rng.chance(70) {
                let seconds = 1_640_995_200 + rng.below(4 * 365 * 86_400);
                (seconds.to_string(), seconds as f64)
            } else {
                let (text, seconds) = *rng.pick(&DATES);
                (text.to_string(), seconds)
            };
            Meeting {
                // A few ids that are not plain numbers.
                id: if n % 50 == 0 {
                    format!("m-{n}")
                } else {
                    n.to_string()
                },
                client: 1 + rng.below(10),
                kind: TYPES[rng.below(TYPES.len() as u64) as usize],
                status: STATUSES[rng.below(STATUSES.len() as u64) as usize],
                date,
                seconds,
                rank: rng.chance(60).then(|| *rng.pick(&RANKS)),
                details: format!(
                    "{{\"n\":{},\"subject\":\"call \\\"{n}\\\", re: x\"}}",
                    rng.below(100)
                ),
            }
        })
        .collect();
    let mut grants = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        for client in 1..=10 {
            if rng.chance(50) {
                grants.push((user.to_string(), client));
            }
        }
    }
    (meetings, grants)
}

/// The same data the naive way, as the differential tests' model holds it.
fn model(meetings: &[Meeting], grants: &[(String, u64)]) -> Dataset {
    let mut data = Dataset {
        installation: INSTALLATION.into(),
        meetings: Some(meetings.iter().map(|m| m.id.clone()).collect()),
        dates: Some(
            meetings
                .iter()
                .map(|m| (format!("meeting:{}", m.id), m.seconds))
                .collect(),
        ),
        ..Dataset::default()
    };
    for m in meetings {
        for (field, value) in [("type", m.kind), ("status", m.status)] {
            data.filter_sets
                .entry((field.into(), value.into()))
                .or_default()
                .insert(m.id.clone());
        }
        let mut hash: std::collections::BTreeMap<String, String> = [
            ("clientid", m.client.to_string()),
            ("details", m.details.clone()),
            ("type", m.kind.into()),
            ("status", m.status.into()),
            ("installation", INSTALLATION.into()),
        ]
        .into_iter()
        .map(|(field, value)| (field.to_string(), value))
        .collect();
        if let Some(rank) = m.rank {
            hash.insert("rank".into(), rank.into());
        }
        data.hashes.insert(m.id.clone(), hash);
    }
    for (user, client) in grants {
        data.users
            .entry(user.clone())
            .or_default()
            .insert(client.to_string());
    }
    data
}

/// Every answer of many random queries equals the model's; CRM.CHECK is clean.
fn assert_answers(con: &mut Connection, data: &Dataset, seed: u64, context: &str) {
    let mut rng = Rng::new(seed);
    let mut with_rows = 0;
    for _ in 0..300 {
        let query = data.random_query(&mut rng);
        let answer = decode(
            redis::cmd(query.command())
                .arg(query.module_args())
                .query(con)
                .unwrap_or_else(|e| panic!("{context}: {query:?}: {e}")),
        );
        assert_eq!(answer, data.model(&query), "{context}: {query:?}");
        with_rows += usize::from(!answer.page.is_empty());
    }
    assert!(
        with_rows > 50,
        "{context}: only {with_rows} answers had rows"
    );
    assert_check_clean(con, INSTALLATION);
}

fn csv_cell(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn write_csv(dir: &Path, meetings: &[Meeting], grants: &[(String, u64)]) -> [String; 2] {
    let mut rows = String::from("id,installation,clientid,type,status,date,rank,details\n");
    for m in meetings {
        rows += &format!(
            "{},{INSTALLATION},{},{},{},{},{},{}\n",
            m.id,
            m.client,
            m.kind,
            m.status,
            m.date,
            m.rank.unwrap_or(""),
            csv_cell(&m.details)
        );
    }
    let mut users = String::from("user,client\n");
    for (user, client) in grants {
        users += &format!("{user},{client}\n");
    }
    let (meetings_file, users_file) = (dir.join("meetings.csv"), dir.join("users.csv"));
    std::fs::write(&meetings_file, rows).unwrap();
    std::fs::write(&users_file, users).unwrap();
    [meetings_file, users_file].map(|path| path.display().to_string())
}

fn write_jsonl(dir: &Path, meetings: &[Meeting], grants: &[(String, u64)]) -> [String; 2] {
    let mut rows = String::new();
    for m in meetings {
        // Numbers as JSON numbers, details as an object: both arrive as their text.
        let date = match m.date.parse::<u64>() {
            Ok(seconds) => seconds.to_string(),
            Err(_) => format!("\"{}\"", m.date),
        };
        let rank = m.rank.map_or("null".into(), |rank| format!("\"{rank}\""));
        rows += &format!(
            "{{\"id\":\"{}\",\"installation\":\"{INSTALLATION}\",\"clientid\":{},\"type\":\"{}\",\
             \"status\":\"{}\",\"date\":{date},\"rank\":{rank},\"details\":{}}}\n\n",
            m.id, m.client, m.kind, m.status, m.details
        );
    }
    let users: String = grants
        .iter()
        .map(|(user, client)| format!("{{\"user\":\"{user}\",\"client\":{client}}}\n"))
        .collect();
    let (meetings_file, users_file) = (dir.join("meetings.jsonl"), dir.join("users.jsonl"));
    std::fs::write(&meetings_file, rows).unwrap();
    std::fs::write(&users_file, users).unwrap();
    [meetings_file, users_file].map(|path| path.display().to_string())
}

/// The rows as tables of the types a CRM's schema has: integer client, timestamptz date
/// (PostgreSQL prints `+00` offsets), json details.
fn write_postgres(pg: &Postgres, meetings: &[Meeting], grants: &[(String, u64)]) {
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let mut sql = String::from(
        "DROP TABLE IF EXISTS meetings, grants;\
         CREATE TABLE meetings (id text PRIMARY KEY, installation text, clientid integer,\
         type text, status text, date timestamptz, rank text, details json);\
         CREATE TABLE grants (user_name text, client_id integer);",
    );
    for m in meetings {
        sql += &format!(
            "INSERT INTO meetings VALUES ({}, '{INSTALLATION}', {}, '{}', '{}', to_timestamp({}), {}, {});",
            quote(&m.id),
            m.client,
            m.kind,
            m.status,
            m.seconds,
            m.rank.map_or("NULL".into(), quote),
            quote(&m.details)
        );
    }
    for (user, client) in grants {
        sql += &format!("INSERT INTO grants VALUES ('{user}', {client});");
    }
    pg.psql(&sql);
}

const MEETINGS_QUERY: &str = "SELECT * FROM meetings ORDER BY id";
const USERS_QUERY: &str = "SELECT user_name AS \"user\", client_id AS client FROM grants";

fn crm_load(server: &Server, args: &[&str]) -> Output {
    Command::new(loader_path())
        .arg("import")
        .args(args)
        .arg("--port")
        .arg(server.port.to_string())
        .output()
        .expect("run crm-load")
}

/// Runs an import that must succeed; its summary line.
fn import(server: &Server, args: &[&str]) -> String {
    let output = crm_load(server, args);
    assert!(
        output.status.success(),
        "crm-load import {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Csv,
    Jsonl,
    Postgres,
}

/// Imports, checks against the model, re-runs, then moves meetings and revokes clients.
fn round_trip(source: Source) {
    let server = Server::start_with(&DATASET_SETTINGS, &[]);
    let mut con = server.connect();
    let dir = scratch_dir(&format!("{source:?}"));
    let pg = matches!(source, Source::Postgres).then(Postgres::start);
    let mut rng = Rng::new(17);
    let (mut meetings, mut grants) = generate(&mut rng, 600);
    let run = |meetings: &[Meeting], grants: &[(String, u64)]| -> [String; 2] {
        let args: [Vec<String>; 2] = match (source, &pg) {
            (Source::Csv, _) => write_csv(&dir, meetings, grants).map(|file| vec![file]),
            (Source::Jsonl, _) => write_jsonl(&dir, meetings, grants).map(|file| vec![file]),
            (Source::Postgres, Some(pg)) => {
                write_postgres(pg, meetings, grants);
                [MEETINGS_QUERY, USERS_QUERY].map(|query| {
                    vec![
                        "--postgres".into(),
                        pg.url(),
                        "--query".into(),
                        query.into(),
                    ]
                })
            }
            (Source::Postgres, None) => unreachable!(),
        };
        let [meeting_args, user_args] = args;
        let meeting_args: Vec<&str> = meeting_args.iter().map(String::as_str).collect();
        let user_args: Vec<&str> = user_args.iter().map(String::as_str).collect();
        [
            import(&server, &[&["meetings"], meeting_args.as_slice()].concat()),
            import(
                &server,
                &[&["users", "--prune"], user_args.as_slice()].concat(),
            ),
        ]
    };
    let [summary, users] = run(&meetings, &grants);
    assert!(
        summary.contains("600 rows read, 600 written, 0 skipped"),
        "{source:?}: {summary}"
    );
    assert!(summary.contains("CRM.MEETING.MSET"), "{summary}");
    assert!(
        users.contains(&format!("{} written", grants.len())),
        "{users}"
    );
    assert_answers(
        &mut con,
        &model(&meetings, &grants),
        1,
        &format!("{source:?}"),
    );

    // The same rows again: not one byte changes.
    let before = keyspace_state(&mut con);
    run(&meetings, &grants);
    assert_eq!(
        keyspace_state(&mut con),
        before,
        "{source:?}: a re-run changed data"
    );

    // Meetings move between values and clients; users lose and gain clients.
    for (n, m) in meetings.iter_mut().enumerate() {
        if n % 3 == 0 {
            m.status = if m.status == "open" { "close" } else { "open" };
        }
        if n % 5 == 0 {
            m.kind = TYPES[(n / 5) % 3];
        }
        if n % 7 == 0 {
            m.client = 1 + (m.client % 10);
        }
    }
    let revoked: BTreeSet<(String, u64)> = grants.iter().step_by(3).cloned().collect();
    grants.retain(|grant| !revoked.contains(grant));
    grants.push(("u4".into(), 11));
    run(&meetings, &grants);
    assert_answers(
        &mut con,
        &model(&meetings, &grants),
        2,
        &format!("{source:?} moved"),
    );
    for (user, client) in &revoked {
        let member: bool = redis::cmd("SISMEMBER")
            .arg(format!("clients_for_user:{user}"))
            .arg(client)
            .query(&mut con)
            .unwrap();
        assert!(
            !member,
            "{source:?}: {user} still sees revoked client {client}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A fresh directory for one test's files.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("crm-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn csv_import_equals_the_model() {
    round_trip(Source::Csv);
}

#[test]
fn jsonl_import_equals_the_model() {
    round_trip(Source::Jsonl);
}

#[test]
fn postgres_import_equals_the_model() {
    round_trip(Source::Postgres);
}

/// Hash-tagged templates (as for Redis Cluster): each installation has its own users' sets,
/// and --prune deletes only those of the installations imported (a `*` or `[` in an
/// installation's name matches itself alone).
#[test]
fn users_per_installation_and_prune() {
    let server = Server::start_with(&TAGGED_TEMPLATES, &[]);
    let mut con = server.connect();
    let dir = scratch_dir("tagged");
    let file = dir.join("users.csv");
    let run = |rows: &str, args: &[&str]| {
        std::fs::write(&file, format!("installation,user,client\n{rows}")).unwrap();
        import(
            &server,
            &[&["users", &file.display().to_string()], args].concat(),
        )
    };
    run("10,u1,1\n10,u1,2\n10,u2,3\n1*,u1,9\n20,u1,5\n", &[]);
    let clients = |con: &mut Connection, key: &str| -> BTreeSet<String> {
        redis::cmd("SMEMBERS").arg(key).query(con).unwrap()
    };
    assert_eq!(
        clients(&mut con, "{10}:clients_for_user:u1"),
        ["1", "2"].map(String::from).into()
    );
    assert_eq!(
        clients(&mut con, "{20}:clients_for_user:u1"),
        ["5"].map(String::from).into()
    );
    assert_eq!(
        clients(&mut con, "{1*}:clients_for_user:u1"),
        ["9"].map(String::from).into()
    );
    // Installation 10 again, without u2 and with u1 down to one client.
    let summary = run("10,u1,2\n", &["--installation", "10", "--prune"]);
    assert!(
        summary.contains("1 users' sets replaced, 1 without rows deleted"),
        "{summary}"
    );
    assert_eq!(
        clients(&mut con, "{10}:clients_for_user:u1"),
        ["2"].map(String::from).into()
    );
    assert!(clients(&mut con, "{10}:clients_for_user:u2").is_empty());
    assert_eq!(
        clients(&mut con, "{20}:clients_for_user:u1"),
        ["5"].map(String::from).into()
    );
    // `1*` as a pattern would match installation 10's sets too: escaped, it matches its own.
    let summary = run("1*,u3,4\n", &["--prune"]);
    assert!(summary.contains("1 without rows deleted"), "{summary}");
    assert!(clients(&mut con, "{1*}:clients_for_user:u1").is_empty());
    assert_eq!(
        clients(&mut con, "{10}:clients_for_user:u1"),
        ["2"].map(String::from).into()
    );
    // A row of another installation than --installation is skipped, not written.
    let output = crm_load(
        &server,
        &["users", &file.display().to_string(), "--installation", "10"],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("line 2: skipped (another installation)")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_rows_are_reported_by_line_and_skipped() {
    let server = Server::start();
    let mut con = server.connect();
    // Meeting 9 is installation 20's: installation 10 may not take it over.
    redis::cmd("CRM.MEETING.SET")
        .arg(&["20", "9", "clientid", "1"])
        .query::<()>(&mut con)
        .unwrap();
    let dir = scratch_dir("bad-rows");
    let file = dir.join("bad.csv");
    std::fs::write(
        &file,
        "id,installation,clientid,type,status,date,details\n\
         1,10,3,email,open,2025-03-04,\"{\"\"a\"\":1}\"\n\
         ,10,3,email,open,2025-03-04,\n\
         2,10,,email,open,2025-03-04,\n\
         3,10,3,email,open,tomorrow,\n\
         4,10,3,email,open,1718000000000,\n\
         5,10,3,email,open,2025-03-04,{oops\n\
         6,20,3,email,open,2025-03-04,\n\
         7,10,3\n\
         8,10,3,sms,close,2025-03-04T10:00:00+01:00,\n\
         9,10,3,sms,close,2025-03-04,\n\
         10,,3,sms,close,2025-03-04,\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let expected = [
        "line 3: skipped (no id)",
        "line 4: skipped (no client): meeting '2' has no clientid",
        "line 5: skipped (bad date): date must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got 'tomorrow'",
        "line 6: skipped (bad date): date 1718000000000 looks like milliseconds",
        "line 7: skipped (bad details): details of meeting '5' are not valid JSON",
        "line 8: skipped (another installation): installation '20', not the '10' imported",
        "line 9: skipped (unreadable)",
        "line 11: skipped (another installation): meeting '9' belongs to installation '20'",
    ];
    let empty = keyspace_state(&mut con);

    // --dry-run finds every bad row, the one only the server knows included, and writes nothing.
    let args = ["meetings", &file, "--installation", "10"];
    let dry = crm_load(&server, &[&args[..], &["--dry-run"]].concat());
    let stderr = String::from_utf8_lossy(&dry.stderr);
    for line in expected {
        assert!(stderr.contains(line), "dry run lacks {line:?}:\n{stderr}");
    }
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        stdout.contains("11 rows read, 3 would be written, 8 skipped")
            && stdout.contains("nothing was written"),
        "{stdout}"
    );
    assert!(!dry.status.success(), "skipped rows must fail the run");
    assert_eq!(keyspace_state(&mut con), empty, "--dry-run wrote");

    // The run writes the good rows, reports the others, and fails without --allow-skips.
    let run = crm_load(&server, &args);
    let stderr = String::from_utf8_lossy(&run.stderr);
    for line in expected {
        assert!(stderr.contains(line), "run lacks {line:?}:\n{stderr}");
    }
    assert!(stderr.contains("8 rows skipped"), "{stderr}");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains("11 rows read, 3 written, 8 skipped (1 unreadable, 1 no id, 2 another installation, 1 no client, 2 bad date, 1 bad details)"),
        "{stdout}"
    );
    assert!(!run.status.success());
    let imported: BTreeSet<String> = redis::cmd("SMEMBERS")
        .arg("meetings_ins_10")
        .query(&mut con)
        .unwrap();
    assert_eq!(imported, ["1", "10", "8"].map(String::from).into());
    let owner: String = redis::cmd("HGET")
        .arg("meeting:9")
        .arg("installation")
        .query(&mut con)
        .unwrap();
    assert_eq!(owner, "20");
    assert!(crm_load(&server, &[&args[..], &["--allow-skips"]].concat())
        .status
        .success());

    // A JSON lines file: a line that is not JSON is skipped by its number.
    let jsonl = dir.join("bad.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\":1,\"installation\":\"10\",\"clientid\":3}\n\n{\"id\":2,\n[1]\n",
    )
    .unwrap();
    let output = crm_load(&server, &["meetings", &jsonl.display().to_string()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3: skipped (unreadable)"), "{stderr}");
    assert!(stderr.contains("line 4: skipped (unreadable)"), "{stderr}");
    // Its one good row has no type, status nor date: a misnamed column is told, not hidden.
    for field in ["type", "status", "date"] {
        assert!(
            stderr.contains(&format!("warning: no row has the field '{field}'")),
            "{stderr}"
        );
    }
    assert!(!String::from_utf8_lossy(&run.stderr).contains("warning"));
}
