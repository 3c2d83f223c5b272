//! CRM.MEETINGS answers the same inside MULTI/EXEC, from a Lua script and on a replica,
//! and writes nothing.

mod common;

use std::time::{Duration, Instant};

use common::dataset::{Dataset, Rng, DATASET_SETTINGS};
use common::{decode, load_seed, meetings, replicate, Server};
use redis::Value;

const SEED_QUERY: [&str; 8] = [
    "10", "2", "FILTER", "type", "email", "FILTER", "status", "open",
];

#[test]
fn multi_exec_and_lua_caller_answer_the_same() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    let direct = meetings(&mut con, &SEED_QUERY);
    assert_eq!(direct.ids(), ["11", "19"]);

    let (in_multi,): (Value,) = redis::pipe()
        .atomic()
        .cmd("CRM.MEETINGS")
        .arg(&SEED_QUERY)
        .query(&mut con)
        .unwrap();
    assert_eq!(decode(in_multi), direct);

    let script = "return redis.call('CRM.MEETINGS', unpack(ARGV))";
    let from_lua: Value = redis::cmd("EVAL")
        .arg(script)
        .arg(0)
        .arg(&SEED_QUERY)
        .query(&mut con)
        .unwrap();
    assert_eq!(decode(from_lua), direct);

    // A read-only script (EVAL_RO) may call it too: the command is flagged readonly.
    let from_ro: Value = redis::cmd("EVAL_RO")
        .arg(script)
        .arg(0)
        .arg(&SEED_QUERY)
        .query(&mut con)
        .unwrap();
    assert_eq!(decode(from_ro), direct);
}

#[test]
fn resp3_reply_has_the_same_shape() {
    let server = Server::start();
    let mut con = server.connect();
    load_seed(&mut con);
    redis::cmd("HDEL")
        .arg("meeting:19")
        .arg("details")
        .query::<i64>(&mut con)
        .unwrap();
    let resp2 = meetings(&mut con, &SEED_QUERY);
    assert_eq!(resp2.page[1], (b"19".to_vec(), None));
    // Read the raw RESP3 bytes: an array of an integer and two-element arrays, nil as `_`.
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = b"HELLO 3\r\n".to_vec();
    request.extend(format!("CRM.MEETINGS {}\r\n", SEED_QUERY.join(" ")).as_bytes());
    socket.write_all(&request).unwrap();
    let expected = b"*3\r\n:2\r\n*2\r\n$2\r\n11\r\n$42\r\n{\"subject\":\"Kick-off\",\"date\":\"2017-06-10\"}\r\n*2\r\n$2\r\n19\r\n_\r\n";
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !received.ends_with(expected) && Instant::now() < deadline {
        let mut buffer = [0u8; 4096];
        match socket.read(&mut buffer) {
            Ok(n) if n > 0 => received.extend_from_slice(&buffer[..n]),
            _ => break,
        }
    }
    assert!(
        received.ends_with(expected),
        "RESP3 reply: {}",
        String::from_utf8_lossy(&received)
    );
}

#[test]
fn replica_answers_as_the_primary() {
    let primary = Server::start_with(&DATASET_SETTINGS, &[]);
    let replica = Server::start_with(&DATASET_SETTINGS, &[]);
    let mut con = primary.connect();
    let mut rng = Rng::new(2024);
    let data = Dataset::generate(&mut rng);
    data.load(&mut con);
    load_seed(&mut con);
    let mut replica_con = replica.connect();
    replicate(&mut replica_con, &primary);
    let replicas: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut con)
        .unwrap();
    assert_eq!(replicas, 1, "replica did not catch up");

    let mut queries: Vec<Vec<String>> = (0..40)
        .map(|_| data.random_query(&mut rng).module_args())
        .collect();
    queries.push(SEED_QUERY.iter().map(|s| s.to_string()).collect());
    for args in &queries {
        let on_primary: Value = redis::cmd("CRM.MEETINGS")
            .arg(args)
            .query(&mut con)
            .unwrap();
        let on_replica: Value = redis::cmd("CRM.MEETINGS")
            .arg(args)
            .query(&mut replica_con)
            .unwrap();
        assert_eq!(decode(on_primary), decode(on_replica), "{args:?}");
    }
    let answer = meetings(&mut replica_con, &SEED_QUERY);
    assert_eq!(answer.ids(), ["11", "19"]);
}
