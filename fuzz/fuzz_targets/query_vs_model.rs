//! The core executing random queries over random in-memory data, checked against a naive
//! model that tests every meeting and sorts everything: same total, same page, same fields.
//! Inputs mix odd ids, missing hashes and clients, unparsable sort values and absent keys.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};

use crm_meetings::core::in_memory_store::InMemoryStore;
use crm_meetings::core::keyspace_path::execute;
use crm_meetings::core::query::{parse_facets, parse_query};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/common/model.rs"]
mod model;
use model::{model_number, model_row_order};

const IDS: [&str; 12] = [
    "1",
    "2",
    "3",
    "10",
    "11",
    "0",
    "-3",
    "007",
    "a1",
    "B",
    "-0",
    "99999999999999999999",
];
const CLIENTS: [&str; 4] = ["c1", "c2", "c3", "c4"];
const USERS: [&str; 3] = ["u1", "u2", "u3"];
const FIELDS: [(&str, [&str; 3]); 2] = [
    ("type", ["email", "sms", "call"]),
    ("status", ["open", "close", "x"]),
];
const RANKS: [&str; 13] = [
    "5",
    "-1.5",
    "tbd",
    "",
    "1e3",
    "5",
    "7",
    "0x10",
    "-0",
    "0",
    "2017-06-10T09:30:00Z",
    "2017-06-10T11:30:00+02:00",
    "2017-06-10",
];
const SCORES: [f64; 6] = [1.0, 2.0, 2.0, -5.0, 1e300, 0.5];
/// RANGE bounds: the module's text and the bound as (score, exclusive).
const BOUNDS: [(&str, f64, bool); 8] = [
    ("-inf", f64::NEG_INFINITY, false),
    ("+inf", f64::INFINITY, false),
    ("1", 1.0, false),
    ("(1", 1.0, true),
    ("2", 2.0, false),
    ("(2", 2.0, true),
    ("-5", -5.0, false),
    ("1970-01-01", 0.0, false),
];
const INSTALLATION: &str = "10";

struct Data {
    filter_sets: BTreeMap<(&'static str, &'static str), BTreeSet<&'static str>>,
    meetings: Option<BTreeSet<&'static str>>,
    users: BTreeMap<&'static str, BTreeSet<&'static str>>,
    hashes: BTreeMap<&'static str, BTreeMap<&'static str, String>>,
    dates: Option<BTreeMap<&'static str, f64>>,
}

fn subset<T: Copy + Ord>(u: &mut Unstructured<'_>, pool: &[T]) -> Result<BTreeSet<T>> {
    let mut out = BTreeSet::new();
    for item in pool {
        if u.ratio(1, 3)? {
            out.insert(*item);
        }
    }
    Ok(out)
}

fn data(u: &mut Unstructured<'_>) -> Result<Data> {
    let mut filter_sets = BTreeMap::new();
    for (field, values) in FIELDS {
        for value in values {
            if u.ratio(3, 4)? {
                filter_sets.insert((field, value), subset(u, &IDS)?);
            }
        }
    }
    let meetings = if u.ratio(4, 5)? {
        Some(subset(u, &IDS)?)
    } else {
        None
    };
    let mut users = BTreeMap::new();
    for user in USERS {
        if u.ratio(4, 5)? {
            users.insert(user, subset(u, &CLIENTS)?);
        }
    }
    let mut hashes = BTreeMap::new();
    for id in IDS {
        if u.ratio(4, 5)? {
            let mut hash = BTreeMap::new();
            if u.ratio(9, 10)? {
                hash.insert("clientid", u.choose(&CLIENTS)?.to_string());
            }
            if u.ratio(4, 5)? {
                hash.insert("details", format!("{{\"id\":\"{id}\"}}"));
            }
            if u.ratio(3, 4)? {
                hash.insert("rank", u.choose(&RANKS)?.to_string());
            }
            hashes.insert(id, hash);
        }
    }
    let dates = if u.ratio(4, 5)? {
        let mut dates = BTreeMap::new();
        for id in IDS {
            if u.ratio(4, 5)? {
                dates.insert(id, *u.choose(&SCORES)?);
            }
        }
        Some(dates)
    } else {
        None
    };
    Ok(Data {
        filter_sets,
        meetings,
        users,
        hashes,
        dates,
    })
}

fn store(data: &Data) -> InMemoryStore {
    let mut store = InMemoryStore::default();
    for ((field, value), ids) in &data.filter_sets {
        let ids: Vec<&str> = ids.iter().copied().collect();
        store.filter(INSTALLATION, field, value, &ids);
    }
    if let Some(meetings) = &data.meetings {
        let ids = meetings.iter().map(|id| id.as_bytes().to_vec()).collect();
        store
            .meeting_sets
            .insert(INSTALLATION.as_bytes().to_vec(), ids);
    }
    for (user, clients) in &data.users {
        let clients: Vec<&str> = clients.iter().copied().collect();
        store.clients(user, &clients);
    }
    for (id, hash) in &data.hashes {
        let fields: Vec<(&str, &str)> = hash.iter().map(|(f, v)| (*f, v.as_str())).collect();
        store.meeting(id, &fields);
    }
    if let Some(dates) = &data.dates {
        store.sort_indexes.entry(b"date".to_vec()).or_default();
        for (id, score) in dates {
            store.score("date", id, *score);
        }
    }
    store
}

struct Ask {
    installation: &'static str,
    user: &'static str,
    filters: Vec<(&'static str, &'static str)>,
    excludes: Vec<(&'static str, &'static str)>,
    ranges: Vec<((&'static str, f64, bool), (&'static str, f64, bool))>,
    /// AFTER this meeting instead of LIMIT.
    after: Option<&'static str>,
    sort_field: &'static str,
    descending: bool,
    offset: u64,
    count: u64,
    returns: Option<Vec<&'static str>>,
}

fn ask(u: &mut Unstructured<'_>) -> Result<Ask> {
    let mut filters = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let (field, values) = u.choose(&FIELDS)?;
        filters.push((*field, *u.choose(values)?));
    }
    let mut excludes = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        let (field, values) = u.choose(&FIELDS)?;
        excludes.push((*field, *u.choose(values)?));
    }
    let mut ranges = Vec::new();
    for _ in 0..u.int_in_range(0..=2)? {
        ranges.push((*u.choose(&BOUNDS)?, *u.choose(&BOUNDS)?));
    }
    Ok(Ask {
        installation: if u.ratio(9, 10)? { INSTALLATION } else { "11" },
        user: *u.choose(&["u1", "u2", "u3", "nobody"])?,
        filters,
        excludes,
        ranges,
        after: if u.ratio(1, 4)? {
            Some(*u.choose(&IDS)?)
        } else {
            None
        },
        sort_field: *u.choose(&["date", "rank", "missing"])?,
        descending: u.arbitrary()?,
        offset: u.int_in_range(0..=13)?,
        count: u.int_in_range(0..=13)?,
        returns: if u.ratio(1, 4)? {
            Some(vec!["rank", "clientid", "nope"])
        } else {
            None
        },
    })
}

fn args(ask: &Ask) -> Vec<String> {
    let mut args = vec![ask.installation.to_string(), ask.user.to_string()];
    for (field, value) in &ask.filters {
        args.extend(["FILTER".into(), field.to_string(), value.to_string()]);
    }
    for (field, value) in &ask.excludes {
        args.extend(["EXCLUDE".into(), field.to_string(), value.to_string()]);
    }
    for ((min, _, _), (max, _, _)) in &ask.ranges {
        args.extend([
            "RANGE".into(),
            "date".into(),
            min.to_string(),
            max.to_string(),
        ]);
    }
    let direction = if ask.descending { "DESC" } else { "ASC" };
    args.extend(["SORTBY".into(), ask.sort_field.into(), direction.into()]);
    args.extend([
        match ask.after {
            Some(_) => "AFTER".into(),
            None => "LIMIT".into(),
        },
        match ask.after {
            Some(id) => id.to_string(),
            None => ask.offset.to_string(),
        },
        ask.count.to_string(),
    ]);
    if let Some(fields) = &ask.returns {
        args.extend(["RETURN".into(), fields.len().to_string()]);
        args.extend(fields.iter().map(|f| f.to_string()));
    }
    args
}

type Answer = (u64, Vec<(Vec<u8>, Vec<Option<Vec<u8>>>)>);

/// A meeting's sort value for `ask`: its date score when sorting by date and there are
/// dates, else its hash field when a number (or a date the model knows).
fn sort_value(data: &Data, ask: &Ask, id: &str) -> Option<f64> {
    match (&data.dates, ask.sort_field) {
        (Some(dates), "date") => dates.get(id).copied(),
        _ => data
            .hashes
            .get(id)
            .and_then(|hash| hash.get(ask.sort_field))
            .and_then(|raw| model_number(raw)),
    }
}

/// The visible matches of `ask`'s clauses, in the query's order: the naive way.
fn matches(data: &Data, ask: &Ask) -> Vec<(Option<f64>, &'static str)> {
    let same = ask.installation == INSTALLATION;
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (field, value) in &ask.filters {
        groups.entry(field).or_default().push(value);
    }
    let candidates: Vec<&str> = if !same {
        Vec::new()
    } else if groups.is_empty() {
        data.meetings.iter().flatten().copied().collect()
    } else {
        IDS.iter()
            .copied()
            .filter(|id| {
                groups.iter().all(|(field, values)| {
                    values.iter().any(|value| {
                        data.filter_sets
                            .get(&(*field, *value))
                            .is_some_and(|ids| ids.contains(id))
                    })
                })
            })
            .collect()
    };
    let excluded = |id: &str| {
        ask.excludes.iter().any(|(field, value)| {
            data.filter_sets
                .get(&(*field, *value))
                .is_some_and(|ids| ids.contains(id))
        })
    };
    let in_ranges = |id: &str| {
        let score = data.dates.as_ref().and_then(|dates| dates.get(id).copied());
        ask.ranges
            .iter()
            .all(|((_, min, min_open), (_, max, max_open))| {
                score.is_some_and(|s| {
                    (s > *min || !min_open && s == *min) && (s < *max || !max_open && s == *max)
                })
            })
    };
    let candidates = candidates
        .into_iter()
        .filter(|id| !excluded(id) && in_ranges(id));
    let visible = data.users.get(ask.user);
    let mut rows: Vec<(Option<f64>, &str)> = Vec::new();
    for id in candidates {
        let Some(hash) = data.hashes.get(id) else {
            continue;
        };
        let Some(client) = hash.get("clientid") else {
            continue;
        };
        if !visible.is_some_and(|clients| clients.contains(client.as_str())) {
            continue;
        }
        rows.push((sort_value(data, ask, id), id));
    }
    rows.sort_by(|(a, a_id), (b, b_id)| model_row_order((*a, a_id), (*b, b_id), ask.descending));
    rows
}

fn model(data: &Data, ask: &Ask) -> Result<Answer, String> {
    let cursor = match ask.after {
        Some(id) if !data.hashes.contains_key(id) => {
            return Err(format!("ERR AFTER: meeting '{id}' does not exist"));
        }
        Some(id) => Some((sort_value(data, ask, id), id)),
        None => None,
    };
    let rows = matches(data, ask);
    let offset = match cursor {
        Some(cursor) => rows
            .iter()
            .take_while(|row| model_row_order(**row, cursor, ask.descending).is_le())
            .count(),
        None => usize::try_from(ask.offset).unwrap_or(usize::MAX),
    };
    let fields = ask.returns.clone().unwrap_or_else(|| vec!["details"]);
    let page = rows
        .iter()
        .skip(offset)
        .take(usize::try_from(ask.count).unwrap_or(usize::MAX))
        .map(|(_, id)| {
            let hash = data.hashes.get(id);
            let values = fields
                .iter()
                .map(|f| hash.and_then(|h| h.get(f)).map(|v| v.as_bytes().to_vec()))
                .collect();
            (id.as_bytes().to_vec(), values)
        })
        .collect();
    Ok((rows.len() as u64, page))
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let Ok(data) = data(&mut u) else { return };
    let store = store(&data);
    for _ in 0..4 {
        let Ok(ask) = ask(&mut u) else { return };
        let words = args(&ask);
        let words: Vec<&[u8]> = words.iter().map(String::as_bytes).collect();
        let query = parse_query(&words, 1000).expect("the model's queries are valid");
        let got = execute(&store, &query)
            .map(|page| (page.total, page.meetings))
            .map_err(|e| e.to_string());
        assert_eq!(got, model(&data, &ask), "query {:?}", args(&ask));

        // CRM.FACETS with the same clauses: the matches counted in each value's set.
        let mut words = args(&ask);
        let clauses = words
            .iter()
            .position(|word| word == "SORTBY")
            .unwrap_or(words.len());
        words.truncate(clauses);
        for (field, values) in FIELDS {
            words.extend([
                "FIELD".to_string(),
                field.to_string(),
                values.len().to_string(),
            ]);
            words.extend(values.iter().map(|value| value.to_string()));
        }
        let args: Vec<&[u8]> = words.iter().map(String::as_bytes).collect();
        let query = parse_facets(&args).expect("the model's queries are valid");
        let page = execute(&store, &query).expect("no AFTER: nothing to fail");
        let rows = matches(&data, &ask);
        let expected: Vec<Vec<u64>> = FIELDS
            .iter()
            .map(|(field, values)| {
                values
                    .iter()
                    .map(|value| {
                        let set = data.filter_sets.get(&(*field, *value));
                        rows.iter()
                            .filter(|(_, id)| set.is_some_and(|ids| ids.contains(id)))
                            .count() as u64
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            (page.total, page.facets),
            (rows.len() as u64, expected),
            "{words:?}"
        );
    }
});
