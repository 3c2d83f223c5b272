//! Redis Cluster: 3 primaries and 3 replicas on loopback, hash-tagged templates, 20
//! installations written and queried through a cluster-aware client, reads from replicas
//! with READONLY, a primary killed and its replica promoted, and a template that would
//! leave the slot refused with CROSSSLOT. A standalone server with the same writes is
//! the oracle.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::dataset::Rng;
use common::{decode, error_text, Answer, Server, TAGGED_TEMPLATES};
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Connection, ConnectionLike, Value};

const INSTALLATIONS: u32 = 20;

fn start_cluster() -> Vec<Server> {
    let extra = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        "1000",
    ];
    let nodes: Vec<Server> = (0..6)
        .map(|_| Server::start_with(&TAGGED_TEMPLATES, &extra))
        .collect();
    let mut create = Command::new("redis-cli");
    create.arg("--cluster").arg("create");
    for node in &nodes {
        create.arg(format!("127.0.0.1:{}", node.port));
    }
    let output = create
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster create");
    assert!(
        output.status.success(),
        "cluster create: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    for node in &nodes {
        wait_until(
            || cluster_info(&mut node.connect()).contains("cluster_state:ok"),
            "cluster state ok",
        );
    }
    nodes
}

fn cluster_info(con: &mut Connection) -> String {
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query(con)
        .unwrap_or_default()
}

fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cluster_client(nodes: &[Server]) -> ClusterConnection {
    let urls: Vec<String> = nodes
        .iter()
        .map(|n| format!("redis://127.0.0.1:{}/", n.port))
        .collect();
    ClusterClient::new(urls).unwrap().get_connection().unwrap()
}

/// The same writes for every installation, applied through `run`.
fn writes() -> Vec<Vec<String>> {
    let mut rng = Rng::new(99);
    let mut commands = Vec::new();
    for installation in 1..=INSTALLATIONS {
        let ins = installation.to_string();
        for user in 1..=3 {
            let clients: Vec<String> = (1..=8)
                .filter(|_| rng.chance(50))
                .map(|c| c.to_string())
                .collect();
            if !clients.is_empty() {
                let mut sadd = vec![
                    "SADD".to_string(),
                    format!("{{{ins}}}:clients_for_user:{user}"),
                ];
                sadd.extend(clients);
                commands.push(sadd);
            }
        }
        for id in 1..=30 {
            let set = [
                "CRM.MEETING.SET",
                &ins,
                &id.to_string(),
                "clientid",
                &(1 + rng.below(8)).to_string(),
                "type",
                *rng.pick(&["email", "sms"]),
                "status",
                *rng.pick(&["open", "close"]),
                "date",
                &(1_700_000_000 + rng.below(1_000_000)).to_string(),
                "details",
                &format!("{{\"n\":{id}}}"),
            ];
            commands.push(set.iter().map(|s| s.to_string()).collect());
        }
        commands.push(vec!["CRM.MEETING.DEL".into(), ins.clone(), "7".into()]);
    }
    commands
}

fn queries() -> Vec<Vec<String>> {
    let mut queries = Vec::new();
    for installation in 1..=INSTALLATIONS {
        for user in 1..=3 {
            let base = vec![installation.to_string(), user.to_string()];
            queries.push(base.clone());
            let mut filtered = base.clone();
            filtered.extend(
                [
                    "FILTER", "type", "email", "FILTER", "status", "open", "SORTBY", "date",
                    "DESC", "LIMIT", "1", "5",
                ]
                .map(String::from),
            );
            queries.push(filtered);
        }
    }
    queries
}

fn ask(con: &mut impl ConnectionLike, args: &[String]) -> Answer {
    decode(redis::cmd("CRM.MEETINGS").arg(args).query(con).unwrap())
}

#[test]
fn cluster_routes_replicas_read_and_failover_keeps_answers() {
    let oracle = Server::start_with(&TAGGED_TEMPLATES, &[]);
    let mut oracle_con = oracle.connect();
    let mut nodes = start_cluster();
    let mut cluster = cluster_client(&nodes);
    for command in writes() {
        redis::cmd(&command[0])
            .arg(&command[1..])
            .query::<Value>(&mut oracle_con)
            .unwrap();
        redis::cmd(&command[0])
            .arg(&command[1..])
            .query::<Value>(&mut cluster)
            .unwrap();
    }
    let expected: Vec<Answer> = queries().iter().map(|q| ask(&mut oracle_con, q)).collect();
    assert!(
        expected.iter().filter(|a| a.total > 0).count() > 60,
        "the data should match many queries"
    );
    let through_cluster: Vec<Answer> = queries().iter().map(|q| ask(&mut cluster, q)).collect();
    assert_eq!(through_cluster, expected);

    // Which node serves which installation: every primary holds some of them.
    let mut served_by = vec![0usize; nodes.len()];
    for installation in 1..=INSTALLATIONS {
        let owner = owner_of(&nodes, &installation.to_string());
        served_by[owner] += 1;
    }
    assert_eq!(
        served_by.iter().filter(|count| **count > 0).count(),
        3,
        "installations on all 3 primaries"
    );

    // Reads from replicas: READONLY, then the replica answers for its primary's slots.
    for node in &nodes {
        let mut con = node.connect();
        let role: Value = redis::cmd("ROLE").query(&mut con).unwrap();
        if !format!("{role:?}").contains("slave") {
            continue;
        }
        redis::cmd("READONLY").query::<()>(&mut con).unwrap();
        let mut answered = 0;
        for (query, expected) in queries().iter().zip(&expected) {
            match redis::cmd("CRM.MEETINGS")
                .arg(query)
                .query::<Value>(&mut con)
            {
                // Replication is asynchronous: the replica answers as the primary once it
                // has caught up.
                Ok(_) => {
                    wait_until(|| ask(&mut con, query) == *expected, "replica caught up");
                    answered += 1;
                }
                Err(error) => assert_eq!(error.code(), Some("MOVED"), "{query:?}: {error:?}"),
            }
        }
        assert!(
            answered > 0,
            "a replica answered none of its primary's installations"
        );
    }

    // The ioredis cluster client example routes by installation too.
    let examples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    assert!(
        examples.join("node_modules").exists(),
        "run `make examples-deps`"
    );
    let output = Command::new("node")
        .arg("ioredis_cluster.mjs")
        .args(nodes.iter().map(|n| n.port.to_string()))
        .current_dir(&examples)
        .output()
        .expect("run node");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "user u1 sees 15 of 25 meetings; first: 1 2 5 6 7\n"
    );

    // Kill the primary that serves installation 1; its replica takes over.
    let victim = owner_of(&nodes, "1");
    let killed_port = nodes[victim].port;
    drop(nodes.remove(victim));
    for node in &nodes {
        wait_until(
            || {
                let mut con = node.connect();
                cluster_info(&mut con).contains("cluster_state:ok")
                    && slot_owner_port(&mut con, "1") != Some(killed_port)
            },
            "failover",
        );
    }
    let mut cluster = cluster_client(&nodes);
    let after_failover: Vec<Answer> = queries().iter().map(|q| ask(&mut cluster, q)).collect();
    assert_eq!(after_failover, expected);

    // A template without the hash tag would read keys of other slots: refused, named.
    for node in &nodes {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("crm.clients-key")
            .arg("clients_for_user:<user>")
            .query::<()>(&mut node.connect())
            .unwrap();
    }
    let error = redis::cmd("CRM.MEETINGS")
        .arg(&["3", "1"])
        .query::<Value>(&mut cluster)
        .unwrap_err();
    let text = error_text(&error);
    assert!(
        text.starts_with("CROSSSLOT key 'clients_for_user:1' from crm.clients-key"),
        "{text}"
    );
}

/// The index in `nodes` of the primary serving `installation`'s slot.
fn owner_of(nodes: &[Server], installation: &str) -> usize {
    let mut con = nodes[0].connect();
    let port = slot_owner_port(&mut con, installation).expect("slot has an owner");
    nodes
        .iter()
        .position(|n| n.port == port)
        .expect("owner among the nodes")
}

/// The port of the primary serving `key`'s slot, from CLUSTER SLOTS.
fn slot_owner_port(con: &mut Connection, key: &str) -> Option<u16> {
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(con)
        .ok()?;
    let Value::Array(ranges) = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query::<Value>(con)
        .ok()?
    else {
        return None;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Value::Int(start), Value::Int(end)) = (&fields[0], &fields[1]) else {
            continue;
        };
        if (*start..=*end).contains(&slot) {
            let Value::Array(primary) = &fields[2] else {
                return None;
            };
            let Value::Int(port) = primary[1] else {
                return None;
            };
            return u16::try_from(port).ok();
        }
    }
    None
}
