//! The client examples (node-redis, ioredis, redis-py) run against a live server and print
//! exactly the pages CRM.MEETINGS gives. `make examples-deps` installs their packages.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{meetings, Server};

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Runs an example against `server`; its standard output.
fn run_example(program: &str, script: &str, server: &Server) -> String {
    let dir = examples_dir();
    let installed = if program == "node" {
        dir.join("node_modules")
    } else {
        dir.join(".python")
    };
    assert!(
        installed.exists(),
        "{} is missing: run `make examples-deps`",
        installed.display()
    );
    let output = Command::new(program)
        .arg(script)
        .arg(server.port.to_string())
        .current_dir(&dir)
        .env("PYTHONPATH", dir.join(".python"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// What every example must print, read back from the server it wrote to.
fn expected_output(server: &Server) -> String {
    let mut con = server.connect();
    let mut out = String::from("loaded 25 meetings into installation demo\n");
    let mut offset = 0;
    let mut page = 1;
    loop {
        let answer = meetings(
            &mut con,
            &[
                "demo",
                "u1",
                "SORTBY",
                "date",
                "ASC",
                "LIMIT",
                &offset.to_string(),
                "10",
            ],
        );
        let lines: Vec<String> = answer
            .page
            .iter()
            .map(|(id, details)| {
                let details: serde_json::Value =
                    serde_json::from_slice(details.as_ref().unwrap()).unwrap();
                format!(
                    "{}:{}",
                    String::from_utf8_lossy(id),
                    details["subject"].as_str().unwrap()
                )
            })
            .collect();
        out.push_str(&format!("page {page}: {}\n", lines.join(", ")));
        offset += 10;
        page += 1;
        if offset >= answer.total {
            out.push_str(&format!("user u1 sees {} of 25 meetings\n", answer.total));
            return out;
        }
    }
}

#[test]
fn node_redis_example() {
    let server = Server::start();
    let output = run_example("node", "node_redis.mjs", &server);
    assert_eq!(output, expected_output(&server));
    assert!(output.contains("user u1 sees 15 of 25 meetings"));
}

#[test]
fn ioredis_example() {
    let server = Server::start();
    let output = run_example("node", "ioredis.mjs", &server);
    assert_eq!(output, expected_output(&server));
}

#[test]
fn redis_py_example() {
    let server = Server::start();
    let output = run_example("python3", "redis_py.py", &server);
    assert_eq!(output, expected_output(&server));
}

/// Keyset paging: a meeting added above the reader's position between two pages shifts
/// nothing. The pages hold every meeting the user saw at the start, newest first, six at a
/// time, each once; the newer meeting is not among them.
#[test]
fn infinite_scroll_example() {
    let server = Server::start();
    let output = run_example("node", "infinite_scroll.mjs", &server);
    // User u1 sees clients 1, 2 and 3: meetings whose id % 5 is 0, 1 or 2.
    let visible: Vec<u32> = (1..=25).rev().filter(|id| id % 5 <= 2).collect();
    let mut expected = String::new();
    for (n, chunk) in visible.chunks(6).enumerate() {
        // The first page was read before meeting 100 arrived.
        let total = if n == 0 { 15 } else { 16 };
        let ids: Vec<String> = chunk.iter().map(u32::to_string).collect();
        expected.push_str(&format!(
            "page {} (of {total} meetings): {}\n",
            n + 1,
            ids.join(" ")
        ));
    }
    expected.push_str("15 meetings shown, 0 repeated\n");
    assert_eq!(output, expected);
}
