//! Keeping Redis in sync from a Node.js ORM: examples/sequelize writes meetings and grants to
//! PostgreSQL through Sequelize, and its hooks copy each committed change to the module. The
//! demo runs step by step; in between, the test reads both databases: Redis holds what
//! PostgreSQL committed, no less (creates, updates and deletes seen at once, client security
//! and filters following them) and no more (a rolled-back transaction, or one whose COMMIT
//! fails, leaves no key; an open transaction shows nothing yet).

mod common;

use std::io::{BufRead, BufReader, Lines, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::postgres::Postgres;
use common::{assert_check_clean, meetings, Server};
use redis::Connection;

const INSTALLATION: &str = "30";
const USER: &str = "ana";

/// The demo's steps and the meetings `ana` sees after each, by date.
const STEPS: [(&str, &[&str]); 11] = [
    ("created 9001", &["9001"]),
    (
        "bulk created 9002 to 9005",
        &["9001", "9002", "9004", "9005"],
    ),
    ("closed 9002", &["9001", "9002", "9004", "9005"]),
    ("moved 9005 to client 3", &["9001", "9002", "9004"]),
    ("destroyed 9004", &["9001", "9002"]),
    (
        "rolled back creating 9006 and closing 9001",
        &["9001", "9002"],
    ),
    (
        "commit failed creating 9007 and closing 9001",
        &["9001", "9002"],
    ),
    (
        "inside a transaction creating 9008 and moving 9003 to client 1",
        &["9001", "9002"],
    ),
    ("committed", &["9001", "9002", "9003", "9008"]),
    (
        "granted client 3",
        &["9001", "9002", "9003", "9005", "9008"],
    ),
    ("revoked client 1", &["9002", "9005", "9008"]),
];

#[test]
fn sequelize_hooks_keep_redis_in_sync() {
    let postgres = Postgres::start();
    let server = Server::start();
    let mut con = server.connect();
    let mut demo = Demo::start(&postgres, &server);
    for (step, expected) in STEPS {
        assert_eq!(demo.next_line(), format!("{step}: {}", expected.join(" ")));
        assert_eq!(visible(&mut con, &[]), expected, "after '{step}'");
        assert_redis_holds_committed_rows(&postgres, &mut con, step);
        match step {
            "closed 9002" => {
                assert_eq!(visible(&mut con, &["status", "close"]), ["9002", "9004"]);
                assert_eq!(visible(&mut con, &["status", "open"]), ["9001", "9005"]);
            }
            // 9005 is still an open email, of a client ana may not see.
            "moved 9005 to client 3" => {
                assert_eq!(visible(&mut con, &["type", "email"]), ["9001"]);
                assert_eq!(visible(&mut con, &["status", "open"]), ["9001"]);
            }
            // 9001 stays open: the transaction that closed it did not commit.
            "rolled back creating 9006 and closing 9001" => {
                assert_eq!(keys_holding(&mut con, "9006"), Vec::<String>::new());
                assert_eq!(visible(&mut con, &["status", "open"]), ["9001"]);
            }
            "commit failed creating 9007 and closing 9001" => {
                assert_eq!(keys_holding(&mut con, "9007"), Vec::<String>::new());
                assert_eq!(visible(&mut con, &["status", "open"]), ["9001"]);
            }
            "inside a transaction creating 9008 and moving 9003 to client 1" => {
                assert_eq!(keys_holding(&mut con, "9008"), Vec::<String>::new());
            }
            _ => {}
        }
        demo.resume();
    }
    demo.finish();
    assert_check_clean(&mut con, INSTALLATION);
}

/// The demo, run with `--step-by-step`: it prints a step, then waits for a line.
struct Demo {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Demo {
    fn start(postgres: &Postgres, server: &Server) -> Demo {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/sequelize");
        assert!(
            dir.join("node_modules").exists(),
            "{} is missing: run `make examples-deps`",
            dir.join("node_modules").display()
        );
        let mut child = Command::new("node")
            .arg("demo.mjs")
            .arg(postgres.url())
            .arg(server.port.to_string())
            .arg("--step-by-step")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node: {e}"));
        Demo {
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
        }
    }

    fn next_line(&mut self) -> String {
        match self.stdout.next() {
            Some(line) => line.unwrap(),
            None => panic!("demo.mjs stopped: {}", self.stderr()),
        }
    }

    fn resume(&mut self) {
        writeln!(self.stdin.as_mut().unwrap()).unwrap();
    }

    /// Waits for the demo's end: it has printed every step and exits cleanly.
    fn finish(mut self) {
        drop(self.stdin.take());
        if let Some(line) = self.stdout.next() {
            panic!("demo.mjs printed more: {line:?}");
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "demo.mjs failed: {}", self.stderr());
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ids `ana` sees, by date: all her meetings, or those of one FILTER.
fn visible(con: &mut Connection, filter: &[&str]) -> Vec<String> {
    let mut args = vec![INSTALLATION, USER];
    if let [field, value] = filter {
        args.extend(["FILTER", field, value]);
    }
    args.extend(["SORTBY", "date", "ASC", "LIMIT", "0", "100"]);
    meetings(con, &args).ids()
}

/// Redis holds exactly PostgreSQL's committed rows (psql sees no open transaction): the
/// installation's meetings with their fields and date scores, and ana's clients.
fn assert_redis_holds_committed_rows(postgres: &Postgres, con: &mut Connection, step: &str) {
    let rows = postgres.psql(
        "SELECT id, clientid, type, status, extract(epoch FROM date), details \
         FROM meetings ORDER BY id",
    );
    let mut committed_ids = Vec::new();
    for row in rows.lines() {
        let [id, clientid, kind, status, epoch, details] = row
            .splitn(6, '|')
            .collect::<Vec<_>>()
            .try_into()
            .unwrap_or_else(|row| panic!("not a meeting row: {row:?}"));
        let key = format!("meeting:{id}");
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(&["installation", "clientid", "type", "status", "details"])
            .query(con)
            .unwrap();
        let [installation, hash_clientid, hash_kind, hash_status, hash_details] =
            fields.try_into().unwrap();
        assert_eq!(
            (installation, hash_clientid, hash_kind, hash_status),
            (
                Some(INSTALLATION.to_string()),
                Some(clientid.to_string()),
                Some(kind.to_string()),
                Some(status.to_string())
            ),
            "meeting {id} after '{step}'"
        );
        let details: serde_json::Value = serde_json::from_str(details).unwrap();
        let hash_details: serde_json::Value =
            serde_json::from_str(&hash_details.expect("details")).unwrap();
        assert_eq!(hash_details, details, "details of {id} after '{step}'");
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg("meeting_date")
            .arg(&key)
            .query(con)
            .unwrap();
        assert_eq!(
            score,
            Some(epoch.parse().unwrap()),
            "date of {id} after '{step}'"
        );
        committed_ids.push(id.to_string());
    }
    let set_key = format!("meetings_ins_{INSTALLATION}");
    assert_eq!(
        sorted_members(con, &set_key),
        committed_ids,
        "{set_key} after '{step}'"
    );
    let granted = postgres.psql(&format!(
        "SELECT clientid FROM user_clients WHERE userid = '{USER}' ORDER BY clientid"
    ));
    let clients_key = format!("clients_for_user:{USER}");
    assert_eq!(
        sorted_members(con, &clients_key),
        granted.lines().collect::<Vec<_>>(),
        "{clients_key} after '{step}'"
    );
}

/// A set's members, numbers in numeric order.
fn sorted_members(con: &mut Connection, key: &str) -> Vec<String> {
    let mut members: Vec<String> = redis::cmd("SMEMBERS").arg(key).query(con).unwrap();
    members.sort_by_key(|member| member.parse::<u64>().unwrap());
    members
}

/// The keys that name or list meeting `id`: its hash, the sets holding it, the sort ZSETs
/// scoring it.
fn keys_holding(con: &mut Connection, id: &str) -> Vec<String> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.into_iter()
        .filter(|key| {
            let kind: String = redis::cmd("TYPE").arg(key).query(con).unwrap();
            match kind.as_str() {
                "set" => redis::cmd("SISMEMBER").arg(key).arg(id).query(con).unwrap(),
                "zset" => redis::cmd("ZSCORE")
                    .arg(key)
                    .arg(format!("meeting:{id}"))
                    .query::<Option<f64>>(con)
                    .unwrap()
                    .is_some(),
                _ => key.contains(id),
            }
        })
        .collect()
}
