//! The three descriptions of the commands agree: what the server reports (COMMAND DOCS and
//! COMMAND INFO, from the code), `commands.json`, and `docs/commands.md`.

mod common;

use common::Server;
use redis::Value;
use serde_json::{json, Map, Value as Json};

const COMMANDS_JSON: &str = include_str!("../commands.json");
const COMMANDS_MD: &str = include_str!("../docs/commands.md");

/// A RESP3 reply as JSON: maps to objects, arrays and sets to lists.
fn to_json(value: &Value) -> Json {
    match value {
        Value::Nil => Json::Null,
        Value::Int(n) => json!(n),
        Value::BulkString(bytes) => Json::String(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => {
            Json::String(text.clone())
        }
        Value::Okay => Json::String("OK".into()),
        Value::Array(items) | Value::Set(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(pairs) => {
            let mut object = Map::new();
            for (key, value) in pairs {
                let Json::String(key) = to_json(key) else {
                    panic!("map key {key:?}")
                };
                object.insert(key, to_json(value));
            }
            Json::Object(object)
        }
        Value::Boolean(b) => json!(b),
        Value::Double(d) => json!(d),
        other => panic!("unexpected reply {other:?}"),
    }
}

/// COMMAND DOCS arguments (`flags: [optional, multiple]`) in commands.json form.
fn normalize_args(args: &Json) -> Json {
    Json::Array(
        args.as_array()
            .unwrap()
            .iter()
            .map(|arg| {
                let mut out = Map::new();
                for key in ["name", "type", "key_spec_index", "token"] {
                    if let Some(value) = arg.get(key) {
                        out.insert(key.into(), value.clone());
                    }
                }
                for flag in arg
                    .get("flags")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    out.insert(flag.as_str().unwrap().into(), json!(true));
                }
                if let Some(nested) = arg.get("arguments") {
                    out.insert("arguments".into(), normalize_args(nested));
                }
                Json::Object(out)
            })
            .collect(),
    )
}

/// The syntax line of a command, as docs/commands.md writes it.
fn syntax(name: &str, args: &Json) -> String {
    fn render(arg: &Json) -> String {
        let kind = arg["type"].as_str().unwrap();
        let token = arg.get("token").and_then(Json::as_str);
        let nested = || {
            arg["arguments"]
                .as_array()
                .unwrap()
                .iter()
                .map(render)
                .collect::<Vec<_>>()
        };
        let mut text = match kind {
            "pure-token" => token.unwrap().to_string(),
            "block" => nested().join(" "),
            "oneof" => {
                let inner = nested().join(" | ");
                if token.is_some() || arg.get("optional").is_none() {
                    format!("<{inner}>")
                } else {
                    inner
                }
            }
            _ => arg["name"].as_str().unwrap().to_string(),
        };
        let repeated = arg.get("multiple").is_some();
        let repeated_with_token = arg.get("multiple_token").is_some();
        if let (Some(token), false) = (token, kind == "pure-token") {
            text = match (repeated, repeated_with_token) {
                (true, true) => format!("{token} {text} [{token} {text} ...]"),
                (true, false) => format!("{token} {text} [{text} ...]"),
                _ => format!("{token} {text}"),
            };
        } else if repeated {
            text = format!("{text} [{text} ...]");
        }
        if arg.get("optional").is_some() {
            text = format!("[{text}]");
        }
        text
    }
    let parts: Vec<String> = args.as_array().unwrap().iter().map(render).collect();
    format!("{name} {}", parts.join(" "))
}

#[test]
fn server_json_and_markdown_agree() {
    let server = Server::start();
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", server.port)).unwrap();
    let mut con = client.get_connection().unwrap();
    let documented: Json = serde_json::from_str(COMMANDS_JSON).expect("commands.json parses");
    let documented = documented.as_object().unwrap();

    let listed: Value = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("crm")
        .query(&mut con)
        .unwrap();
    let mut listed: Vec<String> = to_json(&listed)
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_uppercase())
        .collect();
    listed.sort();
    let mut names: Vec<String> = documented.keys().cloned().collect();
    names.sort();
    assert_eq!(
        listed, names,
        "commands.json must describe exactly the module's commands"
    );

    for (name, doc) in documented {
        let lower = name.to_lowercase();
        let docs: Value = redis::cmd("COMMAND")
            .arg("DOCS")
            .arg(&lower)
            .query(&mut con)
            .unwrap();
        let docs = to_json(&docs)[&lower].clone();
        for field in ["summary", "complexity", "since", "group", "module"] {
            assert_eq!(docs[field], doc[field], "{name} {field}");
        }
        assert_eq!(
            normalize_args(&docs["arguments"]),
            doc["arguments"],
            "{name} arguments"
        );

        let info: Value = redis::cmd("COMMAND")
            .arg("INFO")
            .arg(&lower)
            .query(&mut con)
            .unwrap();
        let info = to_json(&info)[0].clone();
        assert_eq!(info[1], doc["arity"], "{name} arity");
        let flags: Vec<Json> = info[2]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| *f != "module")
            .map(|f| json!(f.as_str().unwrap().to_uppercase()))
            .collect();
        assert_eq!(Json::Array(flags), doc["command_flags"], "{name} flags");
        // Per-command categories exist from Redis 7.2; @crm from 7.4.
        let categories: Vec<String> = info[6]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().trim_start_matches('@').to_uppercase())
            .collect();
        let expected: Vec<String> = doc["acl_categories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        for category in &categories {
            assert!(
                expected.contains(category),
                "{name} has @{category}, not in commands.json"
            );
        }
        let spec = &info[8][0];
        let converted = json!([{
            "notes": spec["notes"],
            "flags": spec["flags"].as_array().unwrap().iter().map(|f| json!(f.as_str().unwrap().to_uppercase())).collect::<Vec<_>>(),
            "begin_search": {"index": {"pos": spec["begin_search"]["spec"]["index"]}},
            "find_keys": {"range": {
                "lastkey": spec["find_keys"]["spec"]["lastkey"],
                "step": spec["find_keys"]["spec"]["keystep"],
                "limit": spec["find_keys"]["spec"]["limit"],
            }},
        }]);
        assert_eq!(converted, doc["key_specs"], "{name} key specs");

        let section = COMMANDS_MD
            .split("\n## ")
            .find(|section| section.starts_with(&format!("{name}\n")))
            .unwrap_or_else(|| panic!("docs/commands.md has no section for {name}"));
        let line = syntax(name, &doc["arguments"]);
        assert!(
            section.contains(&format!("```\n{line}\n```")),
            "{name}: docs/commands.md lacks the syntax line\n{line}"
        );
        for field in ["summary", "complexity"] {
            assert!(
                section.contains(doc[field].as_str().unwrap()),
                "{name}: docs/commands.md lacks its {field}"
            );
        }
        let reply = doc["reply_schema"]["description"].as_str().unwrap();
        assert!(
            section.contains(reply),
            "{name}: docs/commands.md lacks the reply description"
        );
        assert!(
            section.contains(&format!("**Arity:** {}", doc["arity"])),
            "{name}: arity in docs/commands.md"
        );
    }
}
