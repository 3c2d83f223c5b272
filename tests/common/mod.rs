//! Shared test helpers: a real server with the module loaded on a free loopback port
//! (stopped on drop), reply decoding, and the Lua reference script.
// Each test file uses a part of the helpers.
#![allow(dead_code)]

pub mod dataset;
pub mod model;
pub mod postgres;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{Connection, Value};

/// The Lua reference implementation (the corrected seed script).
pub const REFERENCE_LUA: &str = include_str!("../lua/meetings.lua");

/// The server binary: `CRM_SERVER` (redis-server 7.0, Redis 8.2 or valkey-server 9.1).
pub fn server_binary() -> String {
    std::env::var("CRM_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

/// The built module: `CRM_MODULE`, or the release build of this crate.
pub fn module_path() -> PathBuf {
    let path = std::env::var("CRM_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/libcrm_meetings.so")
        });
    assert!(
        path.exists(),
        "{} is missing: run `make build` (or `make test`)",
        path.display()
    );
    path
}

pub struct Server {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    module_args: Vec<String>,
    extra: Vec<String>,
}

impl Server {
    /// A server with the module loaded and no persistence.
    pub fn start() -> Server {
        Server::start_with(&[], &[])
    }

    /// `module_args` go after the module path in `--loadmodule`; `extra` are more server
    /// options (`["--appendonly", "yes"]`).
    pub fn start_with(module_args: &[&str], extra: &[&str]) -> Server {
        Self::try_start(module_args, extra).expect("server did not start")
    }

    /// Starts a server; `Err` carries its log when it exits or does not answer.
    pub fn try_start(module_args: &[&str], extra: &[&str]) -> Result<Server, String> {
        let module_args: Vec<String> = module_args.iter().map(|a| a.to_string()).collect();
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!("crm-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let child = spawn(port, &dir, Some(&module_args), &extra)?;
            let mut server = Server {
                child,
                port,
                dir,
                module_args: module_args.clone(),
                extra: extra.clone(),
            };
            match server.wait_ready() {
                Ok(()) => return Ok(server),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    /// Kills the server (SIGKILL, as a crash would) and starts it again on the same port
    /// and directory, so it loads what it persisted; without the module if `with_module`
    /// is false.
    pub fn restart(&mut self, with_module: bool, extra: &[&str]) {
        self.kill();
        self.extra = extra.iter().map(|a| a.to_string()).collect();
        let module_args = with_module.then_some(&self.module_args);
        self.child = spawn(self.port, &self.dir, module_args, &self.extra).unwrap();
        self.wait_ready().unwrap();
    }

    /// SIGKILL, as a crash would; the directory stays for a later `restart`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_status)) = self.child.try_wait() {
                return Err(format!("server exited: {}", self.log()));
            }
            if let Ok(mut con) = self.try_connect() {
                // PING fails with LOADING while a persisted dataset is read.
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("server did not answer: {}", self.log()))
    }

    fn try_connect(&self) -> redis::RedisResult<Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }

    pub fn connect(&self) -> Connection {
        self.try_connect().expect("connect")
    }

    /// A connection authenticated as `user` (whose password the tests set to `pw`).
    pub fn login(&self, user: &str) -> Connection {
        let mut con = self.connect();
        redis::cmd("AUTH")
            .arg(user)
            .arg("pw")
            .query::<()>(&mut con)
            .unwrap();
        con
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Whether the process is still running (it has not crashed).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if valgrind_logs().is_some() && matches!(self.child.try_wait(), Ok(None)) {
            // A clean exit (SIGTERM: no ACL or busy script can refuse it), so that valgrind
            // writes its leak report.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(120);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(
    port: u16,
    dir: &PathBuf,
    module_args: Option<&Vec<String>>,
    extra: &[String],
) -> Result<Child, String> {
    let mut command = match valgrind_logs() {
        Some(logs) => {
            let mut valgrind = Command::new("valgrind");
            valgrind
                .args(["--leak-check=full", "--keep-debuginfo=yes"])
                .args(["--show-leak-kinds=definite", "--num-callers=40"])
                .arg(format!("--log-file={logs}/valgrind-%p.log"))
                .arg(server_binary());
            valgrind
        }
        None => Command::new(server_binary()),
    };
    command
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--logfile", "server.log", "--enable-debug-command", "local"])
        .args(["--repl-diskless-sync-delay", "0"]);
    if let Some(module_args) = module_args {
        command
            .arg("--loadmodule")
            .arg(module_path())
            .args(module_args);
    }
    command
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", server_binary()))
}

/// A number from the environment (the long forms of the reliability tests), or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `CRM_VALGRIND_LOGS`: run every server under valgrind's memcheck, logs in that folder
/// (`make valgrind`).
fn valgrind_logs() -> Option<String> {
    std::env::var("CRM_VALGRIND_LOGS").ok()
}

/// The keyspace's size and digest: equal digests mean byte-identical data.
pub fn keyspace_state(con: &mut Connection) -> (i64, String) {
    let size: i64 = redis::cmd("DBSIZE").query(con).unwrap();
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(con).unwrap();
    (size, digest)
}

/// The data generator, a binary of the workspace (`tools/crm-load`): its release build,
/// next to the module's.
pub fn loader_path() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/crm-load");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --release -p crm-load` (or `make test`)",
        path.display()
    );
    path
}

/// Runs the crm-load binary against `server`.
pub fn crm_load(server: &Server, args: &[&str]) {
    let status = Command::new(loader_path())
        .arg("--port")
        .arg(server.port.to_string())
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("run crm-load");
    assert!(status.success(), "crm-load {args:?} failed");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A decoded CRM.MEETINGS reply: total, then `(id, details)` pairs; or a CRM.FACETS reply:
/// total, then `(field, [(value, count)])`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    pub total: i64,
    pub page: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub facets: Vec<(Vec<u8>, FacetCounts)>,
}

/// One FIELD's values with their counts.
pub type FacetCounts = Vec<(Vec<u8>, i64)>;

impl Answer {
    pub fn ids(&self) -> Vec<String> {
        self.page
            .iter()
            .map(|(id, _)| String::from_utf8_lossy(id).into_owned())
            .collect()
    }
}

pub fn decode(value: Value) -> Answer {
    let Value::Array(items) = value else {
        panic!("not an array: {value:?}")
    };
    let mut items = items.into_iter();
    let Some(Value::Int(total)) = items.next() else {
        panic!("no total")
    };
    let mut answer = Answer {
        total,
        ..Answer::default()
    };
    for pair in items {
        let Value::Array(pair) = pair else {
            panic!("not a pair: {pair:?}")
        };
        let [id, details]: [Value; 2] = pair.try_into().expect("pair of two");
        let Value::BulkString(id) = id else {
            panic!("id not a bulk string: {id:?}")
        };
        let details = match details {
            Value::BulkString(details) => Some(details),
            Value::Nil => None,
            // CRM.FACETS: a field and its values with their counts.
            Value::Array(counts) => {
                let counts = counts
                    .chunks(2)
                    .map(|pair| match pair {
                        [Value::BulkString(value), Value::Int(count)] => (value.clone(), *count),
                        other => panic!("not a value and a count: {other:?}"),
                    })
                    .collect();
                answer.facets.push((id, counts));
                continue;
            }
            other => panic!("details not bulk or nil: {other:?}"),
        };
        answer.page.push((id, details));
    }
    answer
}

/// CRM.MEETINGS with the given arguments after the command name.
pub fn meetings(con: &mut Connection, args: &[&str]) -> Answer {
    decode(
        redis::cmd("CRM.MEETINGS")
            .arg(args)
            .query(con)
            .expect("CRM.MEETINGS"),
    )
}

/// The error message CRM.MEETINGS (or any command) answers with.
pub fn error_of(con: &mut Connection, command: &str, args: &[&[u8]]) -> String {
    match redis::cmd(command).arg(args).query::<Value>(con) {
        Ok(value) => panic!("{command} {args:?} answered {value:?}, expected an error"),
        Err(error) => error_text(&error),
    }
}

/// An error as the server sent it: `CODE message`.
pub fn error_text(error: &redis::RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => error.to_string(),
    }
}

/// The seed's example (crm-poc.txt) as `make run` loads it: `scripts/seed.redis`.
pub const SEED_COMMANDS: &str = include_str!("../../scripts/seed.redis");

/// Loads the seed's sets and hashes, with Unix-second dates in `meeting_date`.
pub fn load_seed(con: &mut Connection) {
    let mut pipe = redis::pipe();
    for line in SEED_COMMANDS.lines().filter(|line| !line.trim().is_empty()) {
        let words = split_command_line(line);
        pipe.cmd(&words[0]).arg(&words[1..]).ignore();
    }
    pipe.query::<()>(con).unwrap();
}

/// Splits a redis-cli line: words separated by spaces, `"..."` with `\"` escapes.
fn split_command_line(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => word.extend(chars.next()),
                    '"' => break,
                    _ => word.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    words
}

/// Key templates with the installation as a hash tag: one slot per installation.
pub const TAGGED_TEMPLATES: [&str; 12] = [
    "filter-key",
    "{<installation>}:meeting_<field>:<value>",
    "meetings-key",
    "{<installation>}:meetings",
    "clients-key",
    "{<installation>}:clients_for_user:<user>",
    "meeting-key",
    "{<installation>}:meeting:<id>",
    "sort-key",
    "{<installation>}:meeting_<field>",
    "sort-member",
    "<id>",
];

/// Makes the server behind `replica` a replica of `primary` and waits until its link is up.
pub fn replicate(replica: &mut Connection, primary: &Server) {
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port)
        .query::<()>(replica)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(replica)
            .unwrap();
        if info.contains("master_link_status:up") {
            return;
        }
        assert!(Instant::now() < deadline, "replica link not up: {info}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fields of one INFO section, by name; empty when the server cannot answer yet
/// (LOADING while a copy loads).
pub fn info(con: &mut Connection, section: &str) -> HashMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query(con)
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_string(), value.trim().to_string()))
        .collect()
}

/// CONFIG SET `name` `value`; fails the test if the server refuses it.
pub fn set_config(con: &mut Connection, name: &str, value: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query::<()>(con)
        .unwrap();
}

/// One figure of INFO's crm section (`crm_<name>`), 0 when absent.
pub fn figure(con: &mut Connection, name: &str) -> u64 {
    info(con, "crm")
        .get(&format!("crm_{name}"))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Queries the index answered so far, under any plan.
pub fn index_answers(con: &mut Connection) -> u64 {
    ["plan_filter_first", "plan_client_first", "plan_sort_walk"]
        .iter()
        .map(|name| figure(con, name))
        .sum()
}

/// Fails unless CRM.CHECK finds no drift of any kind in `installation`.
pub fn assert_check_clean(con: &mut Connection, installation: &str) {
    let reply: Value = redis::cmd("CRM.CHECK")
        .arg(installation)
        .query(con)
        .unwrap();
    let Value::Array(items) = reply else {
        panic!("{reply:?}")
    };
    for pair in items.chunks(2).skip(1).take(6) {
        let Value::Array(inner) = &pair[1] else {
            panic!("{pair:?}")
        };
        assert_eq!(inner[0], Value::Int(0), "{pair:?}");
    }
}
