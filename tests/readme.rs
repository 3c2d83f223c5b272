//! README's quickstart shows exactly what `make run` prints after the build
//! (scripts/demo.sh against a server with the module).

mod common;

use std::process::Command;

use common::Server;

const README: &str = include_str!("../README.md");
const MARKER: &str =
    "<!-- demo: the output of scripts/demo.sh, checked by tests/readme.rs -->\n```\n";

#[test]
fn quickstart_matches_the_demo() {
    let start = README.find(MARKER).expect("README has the demo block") + MARKER.len();
    let block = &README[start..];
    let shown = &block[..block.find("```").expect("the block ends")];
    let server = Server::start();
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(format!("{root}/scripts/demo.sh"))
        .arg(server.port.to_string())
        .output()
        .expect("run scripts/demo.sh");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        printed.trim_end(),
        shown.trim_end(),
        "README's quickstart differs from the demo"
    );
}
