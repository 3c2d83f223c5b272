//! Answering a query from its installation's index, or saying why the keyspace path must:
//! the caller's ACL, the keys it names, the index's state for the query.

use std::time::Instant;

use redis_module::Context;

use super::loading::{MEMORY_REST, QUERY_BUDGET};
use super::ttl::watch_ttl;
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
use crate::store::access::reader;
use crate::store::keys::{Placeholder, Template};
use crate::store::keyspace::KeyspaceStore;

/// Keys with a TTL an index follows at most; beyond, the installation takes the keyspace
/// path (each is touched before every answer).
const MAX_VOLATILE_KEYS: usize = 1000;

/// Where a query's answer comes from.
pub enum Route {
    /// The index answered.
    Page(Page),
    /// The index is loading what the query reads: wait for it (or, for a small query,
    /// take the keyspace path).
    Loading,
    /// The keyspace path must answer, for this reason.
    Keyspace(&'static str),
}

/// The page of `query` from its installation's index, or why it cannot answer now.
/// `forced` picks the plan (`crm.index-plan`). With `may_load`, the query loads what it
/// needs for up to 2 ms itself first (not a woken client's run: hundreds of them may run
/// back to back).
pub fn try_answer(
    ctx: &Context,
    store: &KeyspaceStore,
    query: &Query,
    forced: Option<PlanKind>,
    may_load: bool,
    trace: &mut Trace,
) -> Result<Route, CrmError> {
    let reader = reader(ctx)?;
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
        registry.mark_postponed(ctx);
        if registry.entry_for(&key, store)?.is_none() {
            return Ok(Route::Keyspace(registry.why_not(&key)));
        }
        if registry.touch_volatile(ctx, store, &key)? > MAX_VOLATILE_KEYS {
            registry.rest(&key, "too many keys with a TTL");
            return Ok(Route::Keyspace("too many keys with a TTL"));
        }
        registry.register(ctx, store, &key, &parts)?;
        registry.apply_pending();
        let ready = |registry: &Registry| {
            registry
                .entries
                .get(&key)
                .is_some_and(|entry| entry.index.is_ready(&parts))
        };
        if !ready(registry) {
            let done = may_load && registry.refresh(&key, store, started + QUERY_BUDGET);
            registry.hold(started);
            if !registry.entries.contains_key(&key) {
                // Dropped while loading (over the memory budget, or it could not be built).
                return Ok(Route::Keyspace(registry.why_not(&key)));
            }
            if !done {
                registry.arm_timer(ctx);
                return Ok(Route::Loading);
            }
            if !ready(registry) {
                return Ok(Route::Keyspace("a key the query reads cannot be loaded"));
            }
        }
        let Some(entry) = registry.entries.get_mut(&key) else {
            // Dropped while loading (over the memory budget, or it could not be built).
            return Ok(Route::Keyspace(registry.why_not(&key)));
        };
        // The index holds every meeting's client: a restricted user reads it only once it
        // may read every meeting hash (see `permits.rs`).
        if let Some(route) = entry.route_for(ctx, &reader, may_load)? {
            if matches!(route, Route::Loading) {
                registry.arm_timer(ctx);
            }
            return Ok(route);
        }
        let visible_built = entry.index.counters.visible_built;
        let answer = entry.index.execute(store, query, forced, trace)?;
        let grew = entry.index.counters.visible_built != visible_built;
        let outcome = match answer {
            Answer::Page(page, kind) => {
                let slot = PlanKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
                if let Some(count) = registry.figures.plans.get_mut(slot) {
                    *count += 1;
                }
                Route::Page(page)
            }
            Answer::Unsupported(reason) => Route::Keyspace(reason),
            Answer::Changed => {
                registry.arm_timer(ctx);
                Route::Loading
            }
        };
        if grew {
            registry.check_memory(&key);
        }
        Ok(outcome)
    })
}

impl Registry {
    /// Adds `parts` to the installation's index (they load from now on), follows their
    /// keys' TTLs, and routes their keys' notifications to it.
    pub(super) fn register(
        &mut self,
        ctx: &Context,
        store: &KeyspaceStore,
        key: &(i32, Bytes),
        parts: &[Part],
    ) -> Result<(), CrmError> {
        let Some(entry) = self.entries.get_mut(key) else {
            return Ok(());
        };
        for part in entry.index.register(parts) {
            let (name, _) = store.part_key(&key.1, &part);
            watch_ttl(ctx, entry, &name)?;
            self.routes.watch(key.0, &name, &key.1, &part);
        }
        Ok(())
    }

    /// The installation's entry, created when missing; `None` while it rests or when its
    /// templates cannot be read back (see [`Registry::why_not`]).
    pub(super) fn entry_for(
        &mut self,
        key: &(i32, Bytes),
        store: &KeyspaceStore,
    ) -> Result<Option<&mut Entry>, CrmError> {
        let installation = &key.1;
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
                Placeholder::Installation => installation,
                _ => b"",
            })
        };
        let meeting_key = around(&templates.meeting);
        let Some((before, after)) = &meeting_key else {
            return Ok(None);
        };
        let Some(sort_member) = around(&templates.sort_member) else {
            return Ok(None);
        };
        if !self.entries.contains_key(key) {
            self.routes
                .meetings_named(key.0, installation, before, after);
        }
        let entry = self.entries.entry(key.clone()).or_insert_with(|| {
            Box::new(Entry::new(
                templates.clone(),
                meeting_key,
                sort_member,
                installation,
            ))
        });
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
        self.remove_entry(key);
        self.resting
            .insert(key.clone(), (Instant::now() + MEMORY_REST, reason));
    }
}
