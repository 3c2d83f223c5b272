//! Live fuzz: thousands of random and malformed commands against a real server with the
//! module (mutated valid calls, random arities, huge and binary arguments, derived keys of
//! every type with random contents, random configuration changes). After every batch the
//! server answers PING and no reply was an internal error; at the end, keys in the module's
//! own namespaces that no command could name are byte-identical (DUMP before and after). `CRM_LIVE_FUZZ_COMMANDS` sets the count (default 4,000;
//! `make reliability` sends 200,000), `CRM_LIVE_FUZZ_SEED` the seed.

mod common;

use common::dataset::Rng;
use common::{env_number, load_seed, Server};
use redis::{Connection, Value};

/// Keys no command may touch: their names contain a word no random argument holds.
const BYSTANDER: &str = "bystander";

/// Arguments the module gives meaning to, so random calls get past the first check often.
const WORDS: [&str; 28] = [
    "10",
    "11",
    "1",
    "2",
    "19",
    "FILTER",
    "type",
    "status",
    "email",
    "open",
    "SORTBY",
    "date",
    "DESC",
    "LIMIT",
    "0",
    "5",
    "RETURN",
    "FORMAT",
    "JSON",
    "clientid",
    "details",
    "-1",
    "",
    "18446744073709551616",
    "*",
    "?",
    "[a-z]",
    "\\",
];

/// Keys the default templates derive for installation 10 and users 1-4, which the fuzz
/// rewrites with other types and contents.
const DERIVED: [&str; 10] = [
    "meeting_type:email_ins_10",
    "meeting_status:open_ins_10",
    "meetings_ins_10",
    "clients_for_user:1",
    "clients_for_user:2",
    "meeting:11",
    "meeting:19",
    "meeting:7",
    "meeting_date",
    "meeting_type:sms_ins_11",
];

const TEMPLATES: [(&str, &[&str]); 9] = [
    (
        "crm.filter-key",
        &[
            "meeting_<field>:<value>_ins_<installation>",
            "{<installation>}:<field>:<value>",
            "no-placeholders",
            "<bogus>",
        ],
    ),
    (
        "crm.meetings-key",
        &["meetings_ins_<installation>", "<installation>", "x<id>"],
    ),
    (
        "crm.clients-key",
        &["clients_for_user:<user>", "<user>", "c:<value>"],
    ),
    ("crm.meeting-key", &["meeting:<id>", "<id>", "m:<user>", ""]),
    ("crm.sort-key", &["meeting_<field>", "<field>", "s"]),
    (
        "crm.sort-member",
        &["meeting:<id>", "<id>", "<installation>"],
    ),
    (
        "crm.filter-fields",
        &["type status", "type", "", "a b c d e f g h", "type type"],
    ),
    ("crm.sort-fields", &["date", "", "date rank", "rank"]),
    ("crm.max-page", &["1000", "1", "0", "-5", "1000001", "x"]),
];

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    // Random bytes never spell the bystanders' word, so no derived key can name one.
    while let Some(at) = bytes
        .windows(BYSTANDER.len())
        .position(|w| w == BYSTANDER.as_bytes())
    {
        bytes[at] ^= 0x20;
    }
    bytes
}

fn argument(rng: &mut Rng) -> Vec<u8> {
    match rng.below(400) {
        0 => random_bytes(rng, 1 << 20), // a 1 MB argument
        1..=80 => {
            let len = rng.below_usize(40);
            random_bytes(rng, len)
        }
        81..=100 => rng.below(100_000).to_string().into_bytes(),
        _ => rng.pick(&WORDS).as_bytes().to_vec(),
    }
}

/// A valid call on the seeded data, so that most commands get past parsing and reach keys
/// (and the keys the fuzz rewrote with other types).
fn valid_call(rng: &mut Rng) -> Vec<String> {
    let installation = rng.pick(&["10", "10", "11"]).to_string();
    let user = rng.pick(&["1", "2", "3", "4"]).to_string();
    let id = rng.pick(&["11", "19", "7", "23", "500"]).to_string();
    let mut words: Vec<String> = match rng.below(8) {
        0..=3 => {
            let mut words = vec!["CRM.MEETINGS".to_string(), installation, user];
            for clause in [
                &["FILTER", "type", "email"][..],
                &["FILTER", "status", "open"],
                &["SORTBY", "date", "DESC"],
                &["LIMIT", "1", "5"],
                &["RETURN", "2", "clientid", "details"],
                &["FORMAT", "JSON"],
            ] {
                if rng.chance(40) {
                    words.extend(clause.iter().map(|w| w.to_string()));
                }
            }
            words
        }
        4 => [
            "CRM.MEETING.SET",
            &installation,
            &id,
            "clientid",
            "7",
            "type",
            "sms",
        ]
        .iter()
        .chain(&[
            "status",
            "open",
            "date",
            "2017-06-12T10:00:00Z",
            "details",
            "{}",
        ])
        .map(|w| w.to_string())
        .collect(),
        5 if rng.chance(50) => vec!["CRM.MEETING.DEL".into(), installation, id],
        // Two meetings in one call, the second sometimes the first again.
        5 => {
            let other = rng.pick(&["12", "19", "600", id.as_str()]).to_string();
            [
                "CRM.MEETING.MSET",
                &installation,
                &id,
                "2",
                "clientid",
                "7",
                "status",
                "close",
                &other,
                "3",
                "clientid",
                "8",
                "type",
                "call",
                "date",
                "2017-06-13",
            ]
            .iter()
            .map(|w| w.to_string())
            .collect()
        }
        6 => vec!["CRM.EXPLAIN".into(), installation, user],
        _ => vec![
            rng.pick(&["CRM.CHECK", "CRM.REPAIR"]).to_string(),
            installation,
        ],
    };
    // Then up to two mutations: an argument replaced, dropped or added.
    for _ in 0..rng.below(3) {
        let at = 1 + rng.below_usize(words.len());
        match rng.below(3) {
            0 if at < words.len() => words[at] = String::from_utf8_lossy(&argument(rng)).into(),
            1 if at < words.len() => {
                words.remove(at);
            }
            _ => words.insert(at, String::from_utf8_lossy(&argument(rng)).into()),
        }
    }
    words
}

fn random_command(rng: &mut Rng) -> Vec<Vec<u8>> {
    if rng.chance(50) {
        return valid_call(rng)
            .into_iter()
            .map(String::into_bytes)
            .collect();
    }
    let name = rng.pick(&[
        "CRM.MEETINGS",
        "CRM.MEETINGS",
        "CRM.MEETINGS",
        "CRM.EXPLAIN",
        "CRM.MEETING.SET",
        "CRM.MEETING.SET",
        "CRM.MEETING.MSET",
        "CRM.MEETING.DEL",
        "CRM.CHECK",
        "CRM.REPAIR",
    ]);
    let mut command = vec![name.as_bytes().to_vec()];
    let arity = *rng.pick(&[0usize, 1, 2, 2, 3, 4, 4, 5, 6, 8, 10, 13, 20]);
    command.extend((0..arity).map(|_| argument(rng)));
    command
}

/// Rewrites a derived key with another type or random contents (a raw write, as a
/// misbehaving application could send).
fn rewrite_key(rng: &mut Rng) -> Vec<Vec<u8>> {
    let key = rng.pick(&DERIVED).as_bytes().to_vec();
    let member = argument(rng);
    let words: Vec<&[u8]> = match rng.below(8) {
        0 => vec![b"DEL"],
        1 => vec![b"SET"],
        2 => vec![b"LPUSH"],
        3 => vec![b"SADD"],
        4 => vec![b"HSET", b"clientid"],
        5 => vec![b"HSET", b"details"],
        6 => vec![b"ZADD", b"7"],
        _ => vec![b"XADD", b"*", b"f"],
    };
    let mut command: Vec<Vec<u8>> = vec![words[0].to_vec(), key];
    command.extend(words[1..].iter().map(|w| w.to_vec()));
    if words[0] != b"DEL" {
        command.push(member);
    }
    command
}

fn config_change(rng: &mut Rng) -> Vec<Vec<u8>> {
    let (name, values) = rng.pick(&TEMPLATES);
    let value = if rng.chance(80) {
        rng.pick(values).as_bytes().to_vec()
    } else {
        let len = rng.below_usize(30);
        random_bytes(rng, len)
    };
    vec![
        b"CONFIG".to_vec(),
        b"SET".to_vec(),
        name.as_bytes().to_vec(),
        value,
    ]
}

fn send(con: &mut Connection, command: &[Vec<u8>]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(std::str::from_utf8(&command[0]).unwrap());
    for arg in &command[1..] {
        cmd.arg(arg.as_slice());
    }
    cmd.query(con)
}

/// Keys of every type in the module's own namespaces (`meeting:bystander3`, ...), which
/// no command can name: no argument holds the word.
fn write_bystanders(con: &mut Connection, rng: &mut Rng) -> Vec<String> {
    let namespaces = [
        "meeting:",
        "meetings_ins_",
        "meeting_type:email_ins_",
        "clients_for_user:",
        "meeting_",
        "{10}:meeting:",
        "",
    ];
    let mut keys = Vec::new();
    for n in 0..21 {
        let key = format!("{}{BYSTANDER}{n}", namespaces[n % namespaces.len()]);
        let len = 1 + rng.below_usize(50);
        let value = random_bytes(rng, len);
        let mut cmd = match n % 6 {
            0 => redis::cmd("SET"),
            1 => redis::cmd("RPUSH"),
            2 => redis::cmd("SADD"),
            3 => {
                let mut c = redis::cmd("HSET");
                c.arg(&key).arg("clientid");
                c
            }
            4 => {
                let mut c = redis::cmd("ZADD");
                c.arg(&key).arg(n);
                c
            }
            _ => {
                let mut c = redis::cmd("XADD");
                c.arg(&key).arg("*").arg("f");
                c
            }
        };
        if n % 6 < 3 {
            cmd.arg(&key);
        }
        cmd.arg(value).query::<()>(con).unwrap();
        keys.push(key);
    }
    keys
}

fn dumps(con: &mut Connection, keys: &[String]) -> Vec<Vec<u8>> {
    keys.iter()
        .map(|key| redis::cmd("DUMP").arg(key).query(con).unwrap())
        .collect()
}

#[test]
fn random_commands_never_crash_nor_touch_other_keys() {
    let total = env_number("CRM_LIVE_FUZZ_COMMANDS", 4_000) as usize;
    let seed = env_number("CRM_LIVE_FUZZ_SEED", 7);
    let mut server = Server::start();
    let mut con = server.connect();
    let mut rng = Rng::new(seed);
    load_seed(&mut con);
    let bystanders = write_bystanders(&mut con, &mut rng);
    let before = dumps(&mut con, &bystanders);

    let (mut sent, mut errors) = (0usize, 0usize);
    while sent < total {
        for _ in 0..100 {
            let command = match rng.below(20) {
                0..=1 => rewrite_key(&mut rng),
                2 => config_change(&mut rng),
                _ => random_command(&mut rng),
            };
            match send(&mut con, &command) {
                Ok(_) => {}
                Err(error) => {
                    errors += 1;
                    let text = common::error_text(&error);
                    assert!(
                        !text.contains("internal error") && !error.is_io_error(),
                        "{:?} answered {text}",
                        command
                            .iter()
                            .map(|a| String::from_utf8_lossy(&a[..a.len().min(40)]).into_owned())
                            .collect::<Vec<_>>()
                    );
                }
            }
            sent += 1;
        }
        let pong: String = redis::cmd("PING")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("no PONG after {sent} commands: {e}\n{}", server.log()));
        assert_eq!(pong, "PONG");
        assert!(server.alive());
        // Back to the default templates from time to time, so that later commands find data.
        if rng.chance(20) {
            for (name, values) in TEMPLATES {
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg(name)
                    .arg(values[0])
                    .query::<()>(&mut con)
                    .unwrap();
            }
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
            for key in keys {
                if !key
                    .windows(BYSTANDER.len())
                    .any(|w| w == BYSTANDER.as_bytes())
                {
                    redis::cmd("DEL").arg(key).query::<()>(&mut con).unwrap();
                }
            }
            load_seed(&mut con);
        }
    }
    assert_eq!(
        dumps(&mut con, &bystanders),
        before,
        "a key no command targeted changed"
    );
    assert!(
        !server.log().contains("panicked"),
        "a handler panicked:\n{}",
        server.log()
    );
    println!("live fuzz: {sent} commands sent, {errors} error replies, seed {seed}");
    // The fuzz must reach the data, not only the parser.
    assert!(
        (sent - errors) * 10 > sent,
        "only {} of {sent} commands were answered without an error",
        sent - errors
    );
}
