//! `used_memory` comes back to its baseline after many queries: the module keeps nothing
//! per call. The calls mix pages, filters, JSON, RETURN, EXPLAIN, errors and CRM.CHECK.
//! `CRM_MEMORY_QUERIES` sets the count (default 50,000; `make reliability` runs 1,000,000).

mod common;

use common::{crm_load, env_number, info, Server};
use redis::{Connection, ConnectionLike, Value};

const BATCH: usize = 1_000;

fn used_memory(con: &mut Connection) -> i64 {
    info(con, "memory")["used_memory"].parse().unwrap()
}

/// `used_memory` right after a CRM.CHECK: every sample is taken in that state.
fn checkpoint(con: &mut Connection) -> i64 {
    let _: redis::Value = redis::cmd("CRM.CHECK").arg("10").query(con).unwrap();
    used_memory(con)
}

/// One batch of calls, pipelined; each reply is checked to be an answer or the intended error.
fn batch(con: &mut Connection, round: usize) {
    let mut pipe = redis::pipe();
    for n in 0..BATCH {
        let user = ((round + n) % 50 + 1).to_string();
        let offset = ((round * 7 + n) % 40).to_string();
        let cmd = match n % 10 {
            0..=3 => redis::cmd("CRM.MEETINGS")
                .arg(&[
                    "10", &user, "FILTER", "type", "email", "LIMIT", &offset, "10",
                ])
                .clone(),
            4 => redis::cmd("CRM.MEETINGS")
                .arg(&["10", &user, "SORTBY", "date", "DESC", "FORMAT", "JSON"])
                .clone(),
            5 => redis::cmd("CRM.MEETINGS")
                .arg(&[
                    "10", &user, "FILTER", "status", "open", "RETURN", "2", "clientid", "date",
                ])
                .clone(),
            6 => redis::cmd("CRM.EXPLAIN")
                .arg(&["10", &user, "FILTER", "type", "sms"])
                .clone(),
            7 => redis::cmd("CRM.MEETINGS")
                .arg(&["10", &user, "LIMIT", "x", "1"])
                .clone(),
            8 => redis::cmd("CRM.MEETINGS").arg(&["nowhere", &user]).clone(),
            _ => redis::cmd("CRM.MEETING.DEL").arg(&["10"]).clone(),
        };
        pipe.add_command(cmd).ignore();
    }
    // Read raw, so that the error replies of the mix stay in their slots.
    let replies = con
        .req_packed_commands(&pipe.get_packed_pipeline(), 0, BATCH)
        .unwrap();
    let mut rows = 0;
    for (n, reply) in replies.iter().enumerate() {
        let expect_error = matches!(n % 10, 7 | 9);
        assert_eq!(
            matches!(reply, Value::ServerError(_)),
            expect_error,
            "call {n}: {reply:?}"
        );
        if let (0..=3, Value::Array(items)) = (n % 10, reply) {
            rows += items.len().saturating_sub(1);
        }
    }
    assert!(rows > 0, "the queries found no meeting");
}

#[test]
fn used_memory_returns_to_its_baseline() {
    let total = env_number("CRM_MEMORY_QUERIES", 50_000) as usize;
    let server = Server::start();
    crm_load(
        &server,
        &["--meetings", "2000", "--neighbours", "0", "--users", "50"],
    );
    let mut con = server.connect();
    // Warm up, then take the baseline in the state every later sample is taken in: the
    // first calls grow server buffers and the server's own per-command state (Redis 7
    // allocates a latency histogram for each command, INFO included, on its first call).
    // The index's caches (each user's visible meetings) fill during the warm-up too: it
    // lasts until two checkpoints agree.
    let mut baseline = checkpoint(&mut con);
    for round in 0..30 {
        batch(&mut con, round);
        let sample = checkpoint(&mut con);
        if round >= 5 && sample == baseline {
            break;
        }
        baseline = sample;
    }
    let rounds = total.div_ceil(BATCH);
    for round in 0..rounds {
        batch(&mut con, round);
        if (round + 1) % (rounds / 10).max(1) == 0 {
            let sample = checkpoint(&mut con);
            println!(
                "  after {:>9} calls: used_memory {sample}",
                (round + 1) * BATCH
            );
        }
    }
    let after = checkpoint(&mut con);
    let grown = after - baseline;
    let calls = rounds * BATCH;
    println!("used_memory: {baseline} bytes before, {after} after {calls} calls ({grown:+} bytes)");
    // A leak of one byte per call would show as `total` bytes; buffers move by a few bytes.
    assert!(
        grown < 16 * 1024,
        "used_memory grew by {grown} bytes over {calls} calls"
    );
}
