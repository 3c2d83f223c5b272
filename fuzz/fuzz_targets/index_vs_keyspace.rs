//! The in-memory index against the keyspace path over one in-memory store, through random
//! steps: raw changes to sets, sorted sets and hashes reported as the server glue reports
//! them (the members a command named read back, or the part marked stale; the meeting's
//! row to read again), CRM writes and deletes
//! applied to the store and then to the index, sliced loads, dropped caches and indexes,
//! and queries under the planner and every forced plan. Whenever the index answers with a
//! page it must be the keyspace path's: same total, same ids, same values. Small alphabets
//! make ties, odd ids, missing hashes and clients, unparsable values and absent keys common.
#![no_main]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use crm_meetings::core::in_memory_store::{InMemoryCursor, InMemoryStore};
use crm_meetings::core::index::answer::Answer;
use crm_meetings::core::index::follow::part_written;
use crm_meetings::core::index::plan::PlanKind;
use crm_meetings::core::index::{parts_of, Index, Part, SetName};
use crm_meetings::core::keyspace_path::execute;
use crm_meetings::core::page::Page;
use crm_meetings::core::query::{parse_facets, parse_query, Query};
use crm_meetings::core::trace::Trace;
use crm_meetings::core::types::{Bytes, Effect};
use crm_meetings::core::write::{effects_of_delete, effects_of_set, parse_meeting_set, Schema};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const INSTALLATIONS: [&str; 2] = ["10", "11"];
const IDS: [&str; 10] = [
    "1",
    "2",
    "3",
    "10",
    "0",
    "-3",
    "007",
    "a1",
    "-0",
    "99999999999999999999",
];
const CLIENTS: [&str; 4] = ["c1", "c2", "c3", "c4"];
const USERS: [&str; 4] = ["u1", "u2", "u3", "nobody"];
const FIELDS: [(&str, [&str; 3]); 2] = [
    ("type", ["email", "sms", "call"]),
    ("status", ["open", "close", "x"]),
];
/// Hash fields written raw or by CRM writes: the client, the schema's filter and sort
/// fields, and two the schema does not index.
const HASH_FIELDS: [&str; 6] = ["clientid", "type", "status", "date", "rank", "details"];
/// Sort values as hash fields hold them (CRM writes refuse the unparsable ones for `date`).
const RANKS: [&str; 10] = [
    "5",
    "-1.5",
    "tbd",
    "",
    "1e3",
    "5",
    "0x10",
    "-0",
    "0",
    "2017-06-10T00:00:00Z",
];
/// Scores of raw ZADDs: ties, both zeros, infinities (never NaN: Redis refuses it).
const SCORES: [f64; 10] = [
    1.0,
    2.0,
    2.0,
    -5.0,
    1e300,
    0.5,
    0.0,
    -0.0,
    f64::INFINITY,
    f64::NEG_INFINITY,
];
/// The sorted sets raw writes touch: the schema's sort field and one it does not index.
const SORT_FIELDS: [&str; 2] = ["date", "rank"];
/// Query sort fields, mostly the one the index can answer for.
const QUERY_SORTS: [&str; 6] = ["date", "date", "date", "date", "rank", "missing"];

/// A store, and the indexes the glue would hold for it (one per installation, made by the
/// first query of the installation) with the parts whose keys it watches.
struct World {
    store: InMemoryStore,
    indexes: BTreeMap<&'static str, Index<InMemoryCursor>>,
    watched: BTreeMap<&'static str, HashSet<Part>>,
    schema: Schema,
}

fn b(text: &str) -> Bytes {
    text.as_bytes().to_vec()
}

/// The items of `pool` (at most 16) a bit mask picks: two bytes of input, so that a short
/// input already holds a store worth querying.
fn subset(u: &mut Unstructured<'_>, pool: &[&'static str]) -> Result<Vec<&'static str>> {
    let mask: u16 = u.arbitrary()?;
    Ok(pool
        .iter()
        .enumerate()
        .filter(|(at, _)| mask & (1 << at) != 0)
        .map(|(_, item)| *item)
        .collect())
}

/// SADD: a set never holds a member twice.
fn add(members: &mut Vec<Bytes>, id: &[u8]) {
    if !members.iter().any(|member| member == id) {
        members.push(id.to_vec());
    }
}

fn value_for(u: &mut Unstructured<'_>, field: &str) -> Result<&'static str> {
    Ok(match field {
        "clientid" => *u.choose(&["c1", "c2", "c3", "c4", "c1", "c2", "c9", ""])?,
        "type" => *u.choose(&["email", "sms", "call", "fax"])?,
        "status" => *u.choose(&["open", "close", "x"])?,
        "details" => *u.choose(&["{}", "{\"a\":1}", "{oops"])?,
        _ => *u.choose(&RANKS)?,
    })
}

fn initial_store(u: &mut Unstructured<'_>) -> Result<InMemoryStore> {
    // Sets and sorted sets scanned whole, or a few members a step.
    let mut store = InMemoryStore {
        scan_step: u.int_in_range(0..=3)?,
        ..InMemoryStore::default()
    };
    for installation in INSTALLATIONS {
        for (field, values) in FIELDS {
            for value in values {
                store.filter(installation, field, value, &subset(u, &IDS)?);
            }
        }
        let ids = subset(u, &IDS)?.iter().map(|id| b(id)).collect();
        store.meeting_sets.insert(b(installation), ids);
    }
    // `nobody` has no clients set (until a raw SADD gives it one).
    for user in &USERS[..3] {
        store.clients(user, &subset(u, &CLIENTS)?);
    }
    for id in IDS {
        // A bit per field, the client's inverted (most meetings have one); a quarter of
        // the meetings have no hash.
        let mask: u8 = u.arbitrary()?;
        if mask >> 6 == 3 {
            continue;
        }
        let mut hash = Vec::new();
        for (at, field) in HASH_FIELDS.iter().enumerate() {
            if (mask ^ 1) & (1 << at) != 0 {
                hash.push((*field, value_for(u, field)?));
            }
        }
        // Redis has no empty hash.
        if !hash.is_empty() {
            store.meeting(id, &hash);
        }
    }
    for field in SORT_FIELDS {
        for id in subset(u, &IDS)? {
            store.score(field, id, *u.choose(&SCORES)?);
        }
    }
    Ok(store)
}

impl World {
    /// SADD, SREM or DEL on a value set or the installation's set, which only that
    /// installation reads.
    fn raw_set(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let installation = *u.choose(&INSTALLATIONS)?;
        let name = if u.ratio(1, 4)? {
            SetName::Meetings
        } else {
            let (field, values) = u.choose(&FIELDS)?;
            SetName::Value(b(field), b(u.choose(values)?))
        };
        let id = b(u.choose(&IDS)?);
        let members = match &name {
            SetName::Meetings => self.store.meeting_sets.entry(b(installation)).or_default(),
            SetName::Value(field, value) => {
                let key = (b(installation), field.clone(), value.clone());
                self.store.filter_sets.entry(key).or_default()
            }
        };
        let named = edit(u, members, &id)?.then_some(id);
        self.key_changed(u, &[installation], &Part::Set(name), named)
    }

    /// SADD, SREM or DEL on a user's clients, which every installation reads (the in-memory
    /// store keeps one set per user).
    fn raw_clients(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let user = *u.choose(&USERS)?;
        let client = b(u.choose(&CLIENTS)?);
        let clients = self.store.user_clients.entry(b(user)).or_default();
        let named = edit(u, clients, &client)?.then_some(client);
        self.key_changed(u, &INSTALLATIONS, &Part::Clients(b(user)), named)
    }

    /// ZADD, ZREM or DEL on a sorted set (shared by the installations in this store).
    fn raw_sort(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let field = b(u.choose(&SORT_FIELDS)?);
        let id = b(u.choose(&IDS)?);
        let named = match u.int_in_range(0..=3)? {
            0 | 1 => {
                let score = *u.choose(&SCORES)?;
                let scores = self.store.sort_indexes.entry(field.clone()).or_default();
                scores.insert(id.clone(), score);
                Some(id)
            }
            2 => {
                remove_score(&mut self.store, &field, &id);
                Some(id)
            }
            _ => {
                self.store.sort_indexes.remove(&field);
                None
            }
        };
        self.key_changed(u, &INSTALLATIONS, &Part::Sort(field), named)
    }

    /// Reports a raw change to the key of `part` to the indexes of `installations` that
    /// watch it, as `store::index::events` does: when the command filter noted the member
    /// the command named (`named`; not always: a command may name members in a way it
    /// cannot follow), it is read back into the part, else the part is read again.
    fn key_changed(
        &mut self,
        u: &mut Unstructured<'_>,
        installations: &[&str],
        part: &Part,
        named: Option<Bytes>,
    ) -> Result<()> {
        let noted = match named {
            Some(member) if u.arbitrary()? => Some(vec![member]),
            _ => None,
        };
        for (installation, index) in &mut self.indexes {
            let watches = self
                .watched
                .get(installation)
                .is_some_and(|w| w.contains(part));
            if !installations.contains(installation) || !watches {
                continue;
            }
            let updated = noted
                .as_ref()
                .is_some_and(|ids| index.members_changed(&self.store, part, ids).is_ok());
            if !updated {
                index.mark_stale(part);
            }
        }
        Ok(())
    }

    /// HSET, HDEL or DEL on a meeting's hash: its row is read again.
    fn raw_hash(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let id = b(u.choose(&IDS)?);
        match u.int_in_range(0..=3)? {
            0 | 1 => {
                let field = *u.choose(&HASH_FIELDS)?;
                let value = b(value_for(u, field)?);
                let hash = self.store.meetings.entry(id.clone()).or_default();
                hash.insert(b(field), value);
            }
            2 => {
                let field = b(u.choose(&HASH_FIELDS)?);
                if let Some(hash) = self.store.meetings.get_mut(&id) {
                    hash.remove(&field);
                    // Redis deletes a hash with its last field.
                    if hash.is_empty() {
                        self.store.meetings.remove(&id);
                    }
                }
            }
            _ => {
                self.store.meetings.remove(&id);
            }
        }
        for index in self.indexes.values_mut() {
            index.meeting_changed(&id);
        }
        Ok(())
    }

    /// The tracked fields of a meeting's hash, as `MeetingWriter::stored_fields` reads them.
    fn stored(&self, id: &[u8]) -> Option<Vec<(Bytes, Option<Bytes>)>> {
        let hash = self.store.meetings.get(id)?;
        let fields = self.schema.tracked_fields();
        Some(
            fields
                .into_iter()
                .map(|field| (field.to_vec(), hash.get(field).cloned()))
                .collect(),
        )
    }

    /// CRM.MEETING.SET: the effects applied to the store, then to the index.
    fn crm_set(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let installation = *u.choose(&INSTALLATIONS)?;
        let id = *u.choose(&IDS)?;
        let mut words = vec![installation, id];
        for _ in 0..u.int_in_range(1..=3)? {
            let field = *u.choose(&HASH_FIELDS)?;
            words.extend([field, value_for(u, field)?]);
        }
        let args: Vec<&[u8]> = words.iter().map(|word| word.as_bytes()).collect();
        let Ok(write) = parse_meeting_set(&args) else {
            return Ok(());
        };
        let id = write.id.clone();
        let stored = self.stored(&id);
        // A refused write changes nothing.
        let Ok((_, effects)) = effects_of_set(write, stored.as_deref(), &self.schema) else {
            return Ok(());
        };
        self.write_through(installation, &id, &effects);
        Ok(())
    }

    /// CRM.MEETING.DEL.
    fn crm_delete(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let installation = *u.choose(&INSTALLATIONS)?;
        let id = b(u.choose(&IDS)?);
        let stored = self.stored(&id);
        let Ok(effects) = effects_of_delete(
            installation.as_bytes(),
            &id,
            stored.as_deref(),
            &self.schema,
        ) else {
            return Ok(());
        };
        self.write_through(installation, &id, &effects);
        Ok(())
    }

    /// A CRM write as `store::index::writes::write_through` runs it: the effects applied to
    /// the keyspace, then to the installation's index; its own notifications followed
    /// afterwards except for the parts it updated (here each key is one part, so only the
    /// meeting's hash remains). Other installations' indexes follow the notifications of
    /// the keys they share with it (the sorted sets and hashes of this store).
    fn write_through(&mut self, installation: &str, id: &[u8], effects: &[Effect]) {
        apply(&mut self.store, installation, id, effects);
        for (&owner, index) in &mut self.indexes {
            if owner == installation {
                index
                    .apply_write(id, effects)
                    .expect("the index has room for a few meetings");
                index.meeting_changed(id);
                continue;
            }
            for effect in effects {
                match part_written(effect) {
                    Some(part @ Part::Sort(_)) => index.mark_stale(&part),
                    Some(_) => {}
                    None => index.meeting_changed(id),
                }
            }
        }
    }

    /// A query registers its parts and loads them in one slice that has passed its deadline
    /// (a scan step or so), as a query that finds the index loading does.
    fn sliced_load(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let installation = *u.choose(&INSTALLATIONS)?;
        let (query, _) = query(u, installation)?;
        let index = self
            .indexes
            .entry(installation)
            .or_insert_with(|| Index::new(b(installation)));
        let added = index.register(&parts_of(&query));
        self.watched.entry(installation).or_default().extend(added);
        index
            .refresh(&self.store, Instant::now())
            .expect("the in-memory store does not fail");
        Ok(())
    }

    /// A query answered by the index, when ready, under the planner and each forced plan,
    /// against the keyspace path.
    fn ask(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        let installation = *u.choose(&INSTALLATIONS)?;
        let (query, words) = query(u, installation)?;
        // An error only for AFTER a meeting without a hash: the index must give it too.
        let expected = execute(&self.store, &query).map_err(|e| e.to_string());
        let index = self
            .indexes
            .entry(installation)
            .or_insert_with(|| Index::new(b(installation)));
        let parts = parts_of(&query);
        let added = index.register(&parts);
        self.watched.entry(installation).or_default().extend(added);
        for forced in std::iter::once(None).chain(PlanKind::ALL.map(Some)) {
            let deadline = Instant::now() + Duration::from_secs(60);
            let done = index
                .refresh(&self.store, deadline)
                .expect("the in-memory store does not fail");
            assert!(done && index.is_ready(&parts), "not loaded: {words}");
            // As the glue does after a load: vectors and bitmaps copied to size.
            if u.arbitrary()? {
                index.shrink_to_fit(true);
            }
            let answer = index.execute(&self.store, &query, forced, &mut Trace::default());
            match (answer, &expected) {
                (Ok(Answer::Page(page, kind)), Ok(expected)) => {
                    assert!(
                        page == *expected,
                        "{words}: plan {kind:?}, forced {forced:?}\n index:    {}\n keyspace: {}",
                        show(&page),
                        show(expected)
                    );
                    if let Some(forced) = forced {
                        assert_eq!(kind, forced, "{words}");
                    }
                }
                (Ok(Answer::Unsupported(_) | Answer::Changed), _) => {}
                (Err(error), Err(wanted)) => assert_eq!(&error.to_string(), wanted, "{words}"),
                (answer, _) => panic!("{words}: index {answer:?}, keyspace {expected:?}"),
            }
        }
        Ok(())
    }
}

/// SADD, SREM or DEL (emptied) of `id` in one set; whether the command named `id`.
fn edit(u: &mut Unstructured<'_>, members: &mut Vec<Bytes>, id: &[u8]) -> Result<bool> {
    match u.int_in_range(0..=4)? {
        0..=2 => add(members, id),
        3 => members.retain(|member| member != id),
        _ => {
            members.clear();
            return Ok(false);
        }
    }
    Ok(true)
}

/// ZREM: Redis deletes a sorted set with its last member.
fn remove_score(store: &mut InMemoryStore, field: &[u8], id: &[u8]) {
    if let Some(scores) = store.sort_indexes.get_mut(field) {
        scores.remove(id);
        if scores.is_empty() {
            store.sort_indexes.remove(field);
        }
    }
}

/// The effects of one write applied as `KeyspaceStore::apply` runs them.
fn apply(store: &mut InMemoryStore, installation: &str, id: &[u8], effects: &[Effect]) {
    let value_set = |field: &Bytes, value: &Bytes| (b(installation), field.clone(), value.clone());
    for effect in effects {
        match effect {
            Effect::WriteHash(pairs) => {
                let hash = store.meetings.entry(id.to_vec()).or_default();
                for (field, value) in pairs {
                    hash.insert(field.clone(), value.clone());
                }
            }
            Effect::DeleteHash => {
                store.meetings.remove(id);
            }
            Effect::AddToValueSet { field, value } => {
                let members = store.filter_sets.entry(value_set(field, value));
                add(members.or_default(), id);
            }
            Effect::RemoveFromValueSet { field, value } => {
                if let Some(members) = store.filter_sets.get_mut(&value_set(field, value)) {
                    members.retain(|member| member != id);
                }
            }
            Effect::AddToMeetingsSet => {
                add(store.meeting_sets.entry(b(installation)).or_default(), id);
            }
            Effect::RemoveFromMeetingsSet => {
                if let Some(members) = store.meeting_sets.get_mut(installation.as_bytes()) {
                    members.retain(|member| member != id);
                }
            }
            Effect::SetSortScore { field, score } => {
                let scores = store.sort_indexes.entry(field.clone()).or_default();
                scores.insert(id.to_vec(), *score);
            }
            Effect::RemoveSortScore { field } => remove_score(store, field, id),
        }
    }
}

/// A random CRM.MEETINGS query of `installation`, and its arguments (for messages).
fn query(u: &mut Unstructured<'_>, installation: &str) -> Result<(Query, String)> {
    let mut words = vec![installation.to_string(), u.choose(&USERS)?.to_string()];
    for _ in 0..u.int_in_range(0..=3)? {
        let (field, values) = u.choose(&FIELDS)?;
        let value = if u.ratio(1, 10)? {
            "fax"
        } else {
            *u.choose(values)?
        };
        words.extend(["FILTER".into(), field.to_string(), value.to_string()]);
    }
    for _ in 0..u.int_in_range(0..=2)? {
        let (field, values) = u.choose(&FIELDS)?;
        words.extend([
            "EXCLUDE".into(),
            field.to_string(),
            u.choose(values)?.to_string(),
        ]);
    }
    for _ in 0..u.int_in_range(0..=1)? {
        let bounds = ["-inf", "+inf", "0", "(0", "1", "(1", "2", "1e300", "(-5"];
        words.extend([
            "RANGE".into(),
            u.choose(&QUERY_SORTS)?.to_string(),
            u.choose(&bounds)?.to_string(),
            u.choose(&bounds)?.to_string(),
        ]);
    }
    let direction = if u.arbitrary()? { "DESC" } else { "ASC" };
    words.extend([
        "SORTBY".into(),
        u.choose(&QUERY_SORTS)?.to_string(),
        direction.into(),
    ]);
    // Mostly the first pages: matches are few.
    let offset = if u.ratio(3, 4)? {
        u.int_in_range(0..=2u64)?
    } else {
        u.int_in_range(0..=12u64)?
    };
    let count = u.int_in_range(0..=12u64)?;
    // CRM.FACETS with the same clauses, now and then.
    if u.ratio(1, 6)? {
        let clauses = words.len() - 3;
        words.truncate(clauses);
        words.extend(
            "FIELD status 2 open fax FIELD type 2 email sms"
                .split(' ')
                .map(String::from),
        );
        let args: Vec<&[u8]> = words.iter().map(String::as_bytes).collect();
        let query = parse_facets(&args).expect("the target's queries are valid");
        return Ok((query, words.join(" ")));
    }
    if u.ratio(1, 4)? {
        words.extend([
            "AFTER".into(),
            u.choose(&IDS)?.to_string(),
            count.to_string(),
        ]);
    } else {
        words.extend(["LIMIT".into(), offset.to_string(), count.to_string()]);
    }
    if u.ratio(1, 4)? {
        words.extend(["RETURN", "3", "rank", "clientid", "nope"].map(String::from));
    }
    let args: Vec<&[u8]> = words.iter().map(String::as_bytes).collect();
    let query = parse_query(&args, 1000).expect("the target's queries are valid");
    Ok((query, words.join(" ")))
}

/// A page as text: its total, then each meeting's id and values.
fn show(page: &Page) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let meetings: Vec<String> = page
        .meetings
        .iter()
        .map(|(id, values)| {
            let values: Vec<String> = values
                .iter()
                .map(|value| value.as_deref().map_or("(nil)".into(), text))
                .collect();
            format!("{} [{}]", text(id), values.join(", "))
        })
        .collect();
    format!("total {}: {}", page.total, meetings.join("; "))
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let Ok(store) = initial_store(&mut u) else {
        return;
    };
    let mut world = World {
        store,
        indexes: BTreeMap::new(),
        watched: BTreeMap::new(),
        schema: Schema::seed(),
    };
    for _ in 0..64 {
        if u.is_empty() {
            return;
        }
        let step = match u.int_in_range(0..=15u8) {
            Ok(step) => step,
            Err(_) => return,
        };
        let done = match step {
            0 | 1 => world.raw_set(&mut u),
            2 => world.raw_clients(&mut u),
            3 => world.raw_sort(&mut u),
            4 | 5 => world.raw_hash(&mut u),
            6 | 7 => world.crm_set(&mut u),
            8 => world.crm_delete(&mut u),
            9 => world.sliced_load(&mut u),
            // FLUSHALL, SWAPDB, a load: the glue drops every index.
            10 => {
                world.indexes.clear();
                world.watched.clear();
                Ok(())
            }
            // Memory pressure.
            11 => {
                for index in world.indexes.values_mut() {
                    index.drop_visible_caches();
                }
                Ok(())
            }
            _ => world.ask(&mut u),
        };
        if done.is_err() {
            return;
        }
    }
});
