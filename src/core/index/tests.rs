//! The index against the keyspace path over the in-memory store, under every plan.
//! Unit tests only: the parent declares this file `#[cfg(test)] mod tests;`.

use std::time::{Duration, Instant};

use super::answer::Answer;
use super::plan::PlanKind;
use super::*;
use crate::core::in_memory_store::{InMemoryCursor, InMemoryStore};
use crate::core::keyspace_path::execute;
use crate::core::query::{parse_facets, parse_query};
use crate::core::trace::Trace;
use crate::core::types::Effect;
use seeded::Rng;

type TestIndex = Index<InMemoryCursor>;

/// A random name: `prefix` and a number below `n`.
fn text(rng: &mut Rng, prefix: &str, n: u64) -> String {
    format!("{prefix}{}", rng.below(n))
}

const TYPES: [&str; 3] = ["email", "sms", "call"];
const STATUSES: [&str; 2] = ["open", "close"];

fn random_store(rng: &mut Rng, meetings: u64) -> InMemoryStore {
    let mut store = InMemoryStore::default();
    for id in 0..meetings {
        let id = if rng.below(10) == 0 {
            format!("m{id}")
        } else {
            id.to_string()
        };
        write_meeting(&mut store, rng, &id);
    }
    for user in 0..6 {
        let clients: Vec<String> = (0..rng.below(12)).map(|_| text(rng, "", 20)).collect();
        let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
        store.clients(&user.to_string(), &clients);
    }
    store
}

/// Writes a meeting as the raw keyspace would hold it: maybe no hash, maybe no client,
/// maybe no date, in some of the value sets.
fn write_meeting(store: &mut InMemoryStore, rng: &mut Rng, id: &str) {
    let id_bytes = id.as_bytes().to_vec();
    for set in store
        .filter_sets
        .values_mut()
        .chain(store.meeting_sets.values_mut())
    {
        set.retain(|member| *member != id_bytes);
    }
    if rng.below(10) > 0 {
        store
            .meeting_sets
            .entry(b"10".to_vec())
            .or_default()
            .push(id_bytes.clone());
    }
    match rng.below(8) {
        0 => {
            store.meetings.remove(&id_bytes);
        }
        1 => store.meeting(id, &[("details", "{}")]),
        _ => {
            let client = text(rng, "", 20);
            store.meeting(id, &[("clientid", &client), ("details", id)]);
        }
    }
    let dates = store.sort_indexes.entry(b"date".to_vec()).or_default();
    if rng.below(6) == 0 {
        dates.remove(&id_bytes);
    } else {
        // Few distinct dates, so ties are common.
        dates.insert(id_bytes.clone(), (rng.below(40) as f64) - 5.0);
    }
    for (field, values) in [("type", &TYPES[..]), ("status", &STATUSES[..])] {
        if rng.below(10) > 0 {
            let value = values[rng.below(values.len() as u64) as usize];
            let key = (
                b"10".to_vec(),
                field.as_bytes().to_vec(),
                value.as_bytes().to_vec(),
            );
            store
                .filter_sets
                .entry(key)
                .or_default()
                .push(id_bytes.clone());
        }
    }
}

/// `FILTER` or `EXCLUDE` (`clause`) of a random field and one of its values.
fn value_clause(rng: &mut Rng, clause: &str) -> [String; 3] {
    let (field, values) = if rng.below(2) == 0 {
        ("type", &TYPES[..])
    } else {
        ("status", &STATUSES[..])
    };
    let value = values[rng.below(values.len() as u64) as usize];
    [clause.into(), field.into(), value.into()]
}

fn random_query(rng: &mut Rng) -> Query {
    let mut words = vec!["10".to_string(), text(rng, "", 6)];
    for _ in 0..rng.below(3) {
        words.extend(value_clause(rng, "FILTER"));
    }
    for _ in 0..rng.below(4) / 2 {
        words.extend(value_clause(rng, "EXCLUDE"));
    }
    if rng.below(3) == 0 {
        // Dates run from -5 to 39: bounds inside, at and outside them, some exclusive.
        let bound = |rng: &mut Rng| {
            let value = rng.below(50) as i64 - 8;
            match rng.below(6) {
                0 => "-inf".to_string(),
                1 => "+inf".to_string(),
                2 => format!("({value}"),
                _ => value.to_string(),
            }
        };
        let (min, max) = (bound(rng), bound(rng));
        words.extend(["RANGE".into(), "date".into(), min, max]);
    }
    words.extend(["SORTBY".into(), "date".into()]);
    if rng.below(2) == 0 {
        words.push("DESC".into());
    }
    if rng.below(4) == 0 {
        // Most ids exist (0 to 39 are written), a few do not.
        words.extend(["AFTER".into(), text(rng, "", 44), rng.below(12).to_string()]);
    } else {
        words.extend([
            "LIMIT".into(),
            rng.below(30).to_string(),
            rng.below(12).to_string(),
        ]);
    }
    // A fifth of the queries are CRM.FACETS with the same clauses.
    if rng.below(5) == 0 {
        let clauses = words
            .iter()
            .position(|word| word == "SORTBY")
            .unwrap_or(words.len());
        words.truncate(clauses);
        words.extend(
            "FIELD status 3 open close fax FIELD type 2 sms email"
                .split(' ')
                .map(String::from),
        );
        let args: Vec<&[u8]> = words.iter().map(String::as_bytes).collect();
        return parse_facets(&args).unwrap();
    }
    let args: Vec<&[u8]> = words.iter().map(String::as_bytes).collect();
    parse_query(&args, 1000).unwrap()
}

fn loaded(index: &mut TestIndex, store: &InMemoryStore, query: &Query) {
    let parts = parts_of(query);
    index.register(&parts);
    let deadline = Instant::now() + Duration::from_secs(5);
    assert!(index.refresh(store, deadline).unwrap());
    // Half the time shrunk, as the glue does after a load: later changes then meet
    // vectors and bitmaps copied to size.
    if parts.len().is_multiple_of(2) {
        index.shrink_to_fit(true);
    }
    assert!(index.is_ready(&parts));
}

/// The index's answer under every plan equals the keyspace path's.
fn assert_same(index: &mut TestIndex, store: &InMemoryStore, query: &Query, step: usize) {
    loaded(index, store, query);
    let expected = match execute(store, query) {
        Ok(page) => page,
        Err(error) => {
            // AFTER a meeting without a hash: the same error from the index.
            let answer = index.execute(store, query, None, &mut Trace::default());
            assert_eq!(answer.map_err(|e| e.to_string()), Err(error.to_string()));
            return;
        }
    };
    for forced in [
        None,
        Some(PlanKind::FilterFirst),
        Some(PlanKind::ClientFirst),
        Some(PlanKind::SortWalk),
    ] {
        match index
            .execute(store, query, forced, &mut Trace::default())
            .unwrap()
        {
            Answer::Page(page, kind) => {
                assert_eq!(page, expected, "step {step}, {query:?}, plan {kind:?}");
                if let Some(forced) = forced {
                    assert_eq!(kind, forced);
                }
            }
            other => panic!("step {step}: {other:?}"),
        }
    }
}

/// One change to the store, reported to the index as the glue would: a raw write
/// (`raw_percent` of the time: every key it may have touched is marked stale), a CRM
/// write or delete (its effects applied), a user's clients changed (marked stale).
fn random_change(
    store: &mut InMemoryStore,
    index: &mut TestIndex,
    rng: &mut Rng,
    raw_percent: u64,
) {
    let id = if rng.below(5) == 0 {
        text(rng, "new", 1000)
    } else {
        rng.below(80).to_string()
    };
    let kind = if rng.below(100) < raw_percent {
        0
    } else {
        1 + rng.below(4)
    };
    match kind {
        // A raw write: the glue reports every key it touched.
        0 => {
            write_meeting(store, rng, &id);
            index.meeting_changed(id.as_bytes());
            for (_, field, value) in store.filter_sets.keys() {
                index.mark_stale(&Part::Set(SetName::Value(field.clone(), value.clone())));
            }
            index.mark_stale(&Part::Set(SetName::Meetings));
            index.mark_stale(&Part::Sort(b"date".to_vec()));
        }
        // A CRM write: the effects, applied directly.
        1 => {
            let client = text(rng, "", 20);
            store.meeting(&id, &[("clientid", &client), ("details", "{}")]);
            let value = TYPES[rng.below(3) as usize];
            let key = (b"10".to_vec(), b"type".to_vec(), value.as_bytes().to_vec());
            store
                .filter_sets
                .entry(key)
                .or_default()
                .push(id.as_bytes().to_vec());
            let score = rng.below(40) as f64;
            store.score("date", &id, score);
            let effects = [
                Effect::WriteHash(vec![]),
                Effect::AddToValueSet {
                    field: b"type".to_vec(),
                    value: value.as_bytes().to_vec(),
                },
                Effect::SetSortScore {
                    field: b"date".to_vec(),
                    score,
                },
            ];
            index.apply_write(id.as_bytes(), &effects).unwrap();
        }
        // Raw writes the glue saw member by member (SADD, SREM, ZADD of named members).
        4 => {
            let value = TYPES[rng.below(3) as usize];
            let key = (b"10".to_vec(), b"type".to_vec(), value.as_bytes().to_vec());
            let set = store.filter_sets.entry(key).or_default();
            let id_bytes = id.as_bytes().to_vec();
            if rng.below(2) == 0 {
                set.retain(|member| *member != id_bytes);
            } else if !set.contains(&id_bytes) {
                set.push(id_bytes.clone());
            }
            let part = Part::Set(SetName::Value(b"type".to_vec(), value.as_bytes().to_vec()));
            index
                .members_changed(store, &part, std::slice::from_ref(&id_bytes))
                .unwrap();
            store.score("date", &id, rng.below(40) as f64);
            let part = Part::Sort(b"date".to_vec());
            index.members_changed(store, &part, &[id_bytes]).unwrap();
            let user = text(rng, "", 6);
            let client = text(rng, "", 20);
            let clients = store
                .user_clients
                .entry(user.as_bytes().to_vec())
                .or_default();
            if !clients.contains(&client.clone().into_bytes()) {
                clients.push(client.clone().into_bytes());
            }
            let part = Part::Clients(user.into_bytes());
            index
                .members_changed(store, &part, &[client.into_bytes()])
                .unwrap();
        }
        // A user's clients change.
        2 => {
            let user = text(rng, "", 6);
            let client = text(rng, "", 20);
            store
                .user_clients
                .entry(user.as_bytes().to_vec())
                .or_default()
                .push(client.into_bytes());
            index.mark_stale(&Part::Clients(user.into_bytes()));
        }
        // A CRM delete.
        _ => {
            let id_bytes = id.as_bytes().to_vec();
            store.meetings.remove(&id_bytes);
            let mut effects = vec![Effect::DeleteHash];
            for ((_, field, value), set) in &mut store.filter_sets {
                if set.contains(&id_bytes) {
                    set.retain(|member| *member != id_bytes);
                    effects.push(Effect::RemoveFromValueSet {
                        field: field.clone(),
                        value: value.clone(),
                    });
                }
            }
            if let Some(dates) = store.sort_indexes.get_mut(b"date".as_slice()) {
                dates.remove(&id_bytes);
            }
            effects.push(Effect::RemoveSortScore {
                field: b"date".to_vec(),
            });
            index.apply_write(&id_bytes, &effects).unwrap();
        }
    }
}

#[test]
fn every_plan_answers_as_the_keyspace_path() {
    for seed in 1..=20 {
        let mut rng = Rng::new(seed * 7919);
        let store = random_store(&mut rng, 60 + seed * 10);
        let mut index = Index::new(b"10".to_vec());
        for step in 0..40 {
            let query = random_query(&mut rng);
            assert_same(&mut index, &store, &query, step);
        }
    }
}

#[test]
fn changes_are_followed_when_reported() {
    for seed in 1..=10 {
        let mut rng = Rng::new(seed * 104_729);
        let mut store = random_store(&mut rng, 80);
        let mut index = Index::new(b"10".to_vec());
        let queries: Vec<Query> = (0..6).map(|_| random_query(&mut rng)).collect();
        for query in &queries {
            loaded(&mut index, &store, query);
        }
        for step in 0..300 {
            random_change(&mut store, &mut index, &mut rng, 25);
            for query in &queries {
                assert_same(&mut index, &store, query, step);
            }
        }
    }
}

#[test]
fn changes_during_a_sliced_load_are_kept() {
    for seed in 1..=12 {
        let mut rng = Rng::new(seed * 31_337);
        let mut store = random_store(&mut rng, 120);
        store.scan_step = 3;
        let mut index = Index::new(b"10".to_vec());
        let queries: Vec<Query> = (0..5).map(|_| random_query(&mut rng)).collect();
        for query in &queries {
            index.register(&parts_of(query));
        }
        // The deadline has passed: each refresh takes one scan step, then a change (CRM
        // writes only in the first half: a raw write restarts the scans it touches).
        for step in 0..300 {
            let _ = index.refresh(&store, Instant::now()).unwrap();
            let raw_percent = if step < 150 { 0 } else { 3 };
            random_change(&mut store, &mut index, &mut rng, raw_percent);
        }
        for query in &queries {
            assert_same(&mut index, &store, query, 300);
        }
    }
}

#[test]
fn a_row_changed_unreported_fails_the_page_check() {
    let mut rng = Rng::new(42);
    let mut store = random_store(&mut rng, 50);
    store.clients(
        "9",
        &(0..20)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    let args: Vec<&[u8]> = vec![b"10", b"9", b"LIMIT", b"0", b"5"];
    let query = parse_query(&args, 1000).unwrap();
    let mut index = Index::new(b"10".to_vec());
    loaded(&mut index, &store, &query);
    let Answer::Page(page, _) = index
        .execute(&store, &query, None, &mut Trace::default())
        .unwrap()
    else {
        panic!("no page");
    };
    // The first meeting's client moves to one the user cannot see, unreported.
    let (first, _) = &page.meetings[0];
    store
        .meetings
        .get_mut(first)
        .unwrap()
        .insert(b"clientid".to_vec(), b"nobody".to_vec());
    let answer = index
        .execute(&store, &query, None, &mut Trace::default())
        .unwrap();
    assert_eq!(answer, Answer::Changed);
    assert_same(&mut index, &store, &query, 0);
}

#[test]
fn order_keys_order_like_floats() {
    let values = [
        f64::NEG_INFINITY,
        -1e300,
        -2.5,
        -0.0,
        0.0,
        1e-300,
        3.0,
        f64::INFINITY,
    ];
    for pair in values.windows(2) {
        assert!(order_key(pair[0]) <= order_key(pair[1]), "{pair:?}");
    }
    assert_eq!(order_key(-0.0), order_key(0.0));
}

/// AFTER and RANGE over many score buckets (a walk skips the buckets before the cursor
/// unread; RANGE takes whole buckets inside it): the same pages as the keyspace path, with
/// dates spread out and with dates in few values (buckets of one key), both directions.
#[test]
fn after_and_range_over_many_buckets() {
    for (seed, spread) in [(1, true), (2, false)] {
        let mut rng = Rng::new(seed * 7_919);
        let mut store = InMemoryStore::default();
        let ids: Vec<String> = (0..20_000).map(|id| id.to_string()).collect();
        let clients: Vec<String> = (0..40).map(|c| c.to_string()).collect();
        let mut status_open = Vec::new();
        for (n, id) in ids.iter().enumerate() {
            let client = &clients[n % clients.len()];
            store.meeting(id, &[("clientid", client)]);
            // Some meetings have no date: they page last, by id.
            if n % 50 != 0 {
                let date = if spread {
                    rng.below(1_000_000) as f64
                } else {
                    rng.below(30) as f64
                };
                store.score("date", id, date);
            }
            if n % 3 != 0 {
                status_open.push(id.as_str());
            }
        }
        store.filter("10", "status", "open", &status_open);
        let visible: Vec<&str> = clients.iter().step_by(3).map(String::as_str).collect();
        store.clients("u", &visible);
        let mut index = Index::new(b"10".to_vec());
        for step in 0..60 {
            let mut words = String::from("10 u FILTER status open SORTBY date");
            if rng.below(2) == 0 {
                words.push_str(" DESC");
            }
            if rng.below(3) == 0 {
                let low = rng.below(if spread { 1_000_000 } else { 30 });
                words.push_str(&format!(" RANGE date {low} +inf"));
            }
            // A cursor among the first, the middle and the last meetings, or one without
            // a date (id a multiple of 50).
            let cursor = match step % 4 {
                0 => rng.below(20_000),
                1 => rng.below(400) * 50,
                2 => rng.below(100),
                _ => 19_900 + rng.below(100),
            };
            words.push_str(&format!(" AFTER {cursor} {}", 1 + rng.below(30)));
            let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
            let query = parse_query(&args, 1000).unwrap();
            assert_same(&mut index, &store, &query, step as usize);
        }
    }
}
