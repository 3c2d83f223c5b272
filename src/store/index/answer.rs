//! Answering a query from its installation's index, or saying why the keyspace path must:
//! the caller's ACL, the keys it names, the index's state for the query.

use std::time::Instant;

use redis_module::Context;

use super::loading::{MEMORY_REST, QUERY_BUDGET};
use super::ttl::{touch_volatile, watch_ttl};
use super::{with_registry, Entry, Registry};
use crate::core::index::answer::Answer;
use crate::core::index::plan::PlanKind;
use crate::core::index::{parts_of, Part};
use crate::core::page::Page;
use crate::core::query::Query;
use crate::core::trace::Trace;
use crate::core::types::Bytes;
use crate::error::CrmError;
use crate::error::KeyKind;
use crate::ffi::selected_db;
use crate::store::access::may_read_every_key;
use crate::store::keys::{Placeholder, Template};
use crate::store::keyspace::KeyspaceStore;

/// Keys with a TTL an index follows at most; beyond, the installation takes the keyspace
/// path (each is touched before every answer).
const MAX_VOLATILE_KEYS: usize = 1000;

/// The page of `query` from its installation's index, or why the keyspace path must answer
/// (the index is loading, the caller's ACL is restricted, ...). `forced` picks the plan
/// (`crm.index-plan`).
pub fn try_answer(
    ctx: &Context,
    store: &KeyspaceStore,
    query: &Query,
    forced: Option<PlanKind>,
    trace: &mut Trace,
) -> Result<Result<Page, &'static str>, CrmError> {
    // The index holds what the caller may not be allowed to read (every meeting's client):
    // only callers who may read every key use it; the keyspace path checks key by key.
    if !may_read_every_key(ctx)? {
        return Ok(Err("the user's ACL limits the keys it may read"));
    }
    // The keys the query names are opened as the keyspace path opens them, in its order
    // (the user's clients first): ACL, cluster slot and type, so that the same error comes
    // first (and a key replaced without a notification, say by VADD, gives its WRONGTYPE).
    let parts = parts_of(query);
    let is_clients = |part: &&Part| matches!(part, Part::Clients(_));
    let clients_first = parts
        .iter()
        .filter(is_clients)
        .chain(parts.iter().filter(|part| !is_clients(part)));
    for part in clients_first {
        let (key, role) = store.part_key(&query.installation, part);
        let kind = match part {
            Part::Sort(_) => KeyKind::SortedSet,
            Part::Set(_) | Part::Clients(_) => KeyKind::Set,
        };
        store.open(&key, role)?.exists_as(kind)?;
    }
    let key = (selected_db(ctx)?, query.installation.clone());
    let started = Instant::now();
    with_registry(|registry| {
        let Some(entry) = registry.entry_for(&key, store, query)? else {
            return Ok(Err(registry.why_not(&key)));
        };
        touch_volatile(ctx, store, entry)?;
        let volatile =
            entry.volatile.len() + entry.index.expiring_count() + entry.field_volatile.len();
        if volatile > MAX_VOLATILE_KEYS {
            registry.rest(&key, "too many keys with a TTL");
            return Ok(Err("too many keys with a TTL"));
        }
        for part in entry.index.register(&parts) {
            let (name, _) = store.part_key(&query.installation, &part);
            watch_ttl(ctx, entry, &name)?;
            let parts = entry.watched.entry(name).or_default();
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        registry.apply_pending();
        let ready = |registry: &Registry| {
            registry
                .entries
                .get(&key)
                .is_some_and(|entry| entry.index.is_ready(&parts))
        };
        if !ready(registry) {
            let done = registry.refresh(&key, store, started + QUERY_BUDGET);
            registry.hold(started);
            if !done {
                registry.arm_timer(ctx);
                return Ok(Err("the index is loading"));
            }
            if !ready(registry) {
                return Ok(Err("a key the query reads cannot be loaded"));
            }
        }
        let Some(entry) = registry.entries.get_mut(&key) else {
            return Ok(Err("the index is loading"));
        };
        let visible_built = entry.index.counters.visible_built;
        let answer = entry.index.execute(store, query, forced, trace)?;
        let grew = entry.index.counters.visible_built != visible_built;
        let outcome = match answer {
            Answer::Page(page, kind) => {
                let slot = PlanKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
                if let Some(count) = registry.figures.plans.get_mut(slot) {
                    *count += 1;
                }
                Ok(page)
            }
            Answer::Unsupported(reason) => Err(reason),
            Answer::Changed => {
                registry.arm_timer(ctx);
                Err("a meeting changed under the index")
            }
        };
        if grew {
            registry.check_memory(&key);
        }
        Ok(outcome)
    })
}

impl Registry {
    /// The installation's entry, created when missing; `None` while it rests or when its
    /// templates cannot be read back (see [`Registry::why_not`]).
    fn entry_for(
        &mut self,
        key: &(i32, Bytes),
        store: &KeyspaceStore,
        query: &Query,
    ) -> Result<Option<&mut Entry>, CrmError> {
        if let Some((until, _)) = self.resting.get(key) {
            if Instant::now() < *until {
                return Ok(None);
            }
            self.resting.remove(key);
        }
        let templates = store.templates();
        let stale_templates = self
            .entries
            .get(key)
            .is_some_and(|entry| !entry.templates.same_as(templates));
        if stale_templates {
            self.drop_all();
        }
        // A meeting's hash and sort member are recognised by the text around their one <id>.
        let around = |template: &Template| {
            template.around(Placeholder::Id, |slot| match slot {
                Placeholder::Installation => &query.installation,
                _ => b"",
            })
        };
        let meeting_key = around(&templates.meeting);
        if meeting_key.is_none() || around(&templates.sort_member).is_none() {
            return Ok(None);
        }
        let entry = self
            .entries
            .entry(key.clone())
            .or_insert_with(|| Entry::new(templates.clone(), meeting_key, &query.installation));
        Ok(Some(entry))
    }

    /// Why [`Registry::entry_for`] gave no entry.
    fn why_not(&self, key: &(i32, Bytes)) -> &'static str {
        match self.resting.get(key) {
            Some((_, reason)) => reason,
            None => "crm.meeting-key or crm.sort-member holds <id> more than once",
        }
    }

    /// Drops the installation's index; it is not built again for a while.
    fn rest(&mut self, key: &(i32, Bytes), reason: &'static str) {
        self.entries.remove(key);
        self.resting
            .insert(key.clone(), (Instant::now() + MEMORY_REST, reason));
    }
}
