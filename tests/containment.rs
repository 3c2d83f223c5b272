//! A panic inside a command (a bug) is caught: the caller gets an error, the panic is
//! logged with its location, and the server goes on. Uses the debug build of the module,
//! the only one with CRM.DEBUG.PANIC (`make test` builds it).

mod common;

use std::path::PathBuf;

use common::{error_text, load_seed, meetings, Server};

#[test]
fn a_panicking_command_answers_an_error_and_the_server_goes_on() {
    let debug_build =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/libcrm_meetings.so");
    assert!(
        debug_build.exists(),
        "{} is missing: run `cargo build --lib` (make test does)",
        debug_build.display()
    );
    std::env::set_var("CRM_MODULE", &debug_build);
    let mut server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    for _ in 0..3 {
        let error = redis::cmd("CRM.DEBUG.PANIC")
            .query::<redis::Value>(&mut con)
            .unwrap_err();
        assert_eq!(
            error_text(&error),
            "ERR internal error: the command failed; see the server log"
        );
    }
    assert!(server.alive(), "the server died");
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(
        meetings(&mut con, &["10", "2", "FILTER", "type", "email"]).ids(),
        ["11", "19"]
    );
    let log = server.log();
    assert!(log.contains("crm-meetings: panic at src/lib.rs"), "{log}");
    assert!(log.contains("CRM.DEBUG.PANIC was called"), "{log}");
}
