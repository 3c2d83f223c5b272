//! The in-memory indexes on the server: one [`Index`] per database and installation queried,
//! kept exact by what the server tells the module.
//!
//! - Keyspace notifications (every class, for every key): a change to a key a part was
//!   loaded from marks that part stale; a change to a meeting's hash marks its row stale.
//!   CRM writes update the index directly instead (their own notifications are skipped).
//! - Server events: a flush, a SWAPDB, a load (RDB, AOF, a replica's full sync, DEBUG
//!   RELOAD) drop every index; a template change drops them at the next query.
//! - Keys with a TTL: the server deletes an expired key only when it is touched or sampled,
//!   so the keys an index depends on that carry a TTL are touched before each answer (on
//!   a replica, which never deletes them itself, an expired key reads as missing).
//!
//! A query reads the index only when every part it needs is loaded; a part missing or
//! stale is loaded for at most [`QUERY_BUDGET`], then in timer slices of [`SLICE`], and
//! until then the query takes the keyspace path. Everything runs on the main thread.

use std::collections::{HashMap, HashSet};
use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use redis_module::{
    raw, CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags, NotifyEvent,
};

use super::access::{caller, KeyGuard, Need};
use super::keys::{strip, KeyTemplates, Placeholder, Template};
use super::keyspace::KeyspaceStore;
use super::redis_key::{select_db, selected_db, ModuleString, ReadKey, ScanCursor};
use crate::config;
use crate::core::execute::{execute_traced, Page, Trace};
use crate::core::index::{parts_of, Answer, Index, Part, PlanKind, PlanSetting, SetName};
use crate::core::query::{Bytes, Query};
use crate::core::store::SetRef;
use crate::core::write::Effect;
use crate::error::CrmError;

/// The most a query spends loading before it takes the keyspace path instead.
const QUERY_BUDGET: Duration = Duration::from_millis(2);
/// The most one timer slice of loading holds the server.
const SLICE: Duration = Duration::from_millis(3);
/// How long an installation whose index failed (it ran out of ordinals) waits before its
/// index is built again.
const FAILURE_REST: Duration = Duration::from_secs(1);
/// How long an installation over `crm.index-max-memory` waits before it is tried again.
const MEMORY_REST: Duration = Duration::from_secs(60);
/// How often a loading index's memory is measured against `crm.index-max-memory`.
const MEASURE_EVERY: Duration = Duration::from_millis(250);
/// Keys with a TTL an index follows at most; beyond, the installation takes the keyspace
/// path (each is touched before every answer).
const MAX_VOLATILE_KEYS: usize = 1000;

/// The index figures of INFO.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    pub installations: u64,
    pub meetings: u64,
    pub memory_bytes: u64,
    pub building: u64,
    pub builds: u64,
    pub last_build_ms: u64,
    pub longest_hold_us: u64,
    pub partial_rebuilds: u64,
    pub invalidations: u64,
    pub dropped: u64,
    pub plans: [u64; 3],
    pub keyspace_answers: u64,
}

struct Entry {
    templates: KeyTemplates,
    /// The meeting key's text around `<id>`, to recognise a meeting's hash by its name.
    meeting_key: Option<(Bytes, Bytes)>,
    index: Index<ScanCursor>,
    /// Key name to the parts loaded from it.
    watched: HashMap<Bytes, Vec<Part>>,
    /// Keys with a TTL that the index depends on.
    volatile: HashSet<Bytes>,
    created: Instant,
    built: bool,
    /// When `memory` was last measured.
    measured: Instant,
    memory: usize,
    /// Counters of the index already added to the figures.
    counted_rebuilds: u64,
}

#[derive(Default)]
struct Registry {
    entries: HashMap<(c_int, Bytes), Entry>,
    /// Installations that may not have an index until then, and why.
    resting: HashMap<(c_int, Bytes), (Instant, &'static str)>,
    /// The installation a CRM write is changing: its own notifications are skipped.
    writing: Option<(c_int, Bytes)>,
    timer_armed: bool,
    figures: Figures,
    /// Per user name: whether the user may read every key (ACL GETUSER, cached until the
    /// next ACL command).
    unrestricted: HashMap<Bytes, bool>,
}

lazy_static::lazy_static! {
    static ref REGISTRY: Mutex<Registry> = Mutex::new(Registry::default());
}
/// Notifications that arrived while the registry was in use (a key expiring as the index
/// reads it); applied when it is released.
static PENDING: Mutex<Vec<(c_int, Bytes, Event)>> = Mutex::new(Vec::new());

/// What a notification means to an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// A command a CRM write runs for one of its effects (the write updates the index).
    Effect,
    /// The key got a TTL: it is touched before each answer from now on.
    Expire,
    /// Anything else (including a deletion or expiry a write's own command caused).
    Other,
}

impl Event {
    fn of(name: &str) -> Event {
        match name {
            "sadd" | "srem" | "zadd" | "zrem" | "hset" => Event::Effect,
            "expire" => Event::Expire,
            _ => Event::Other,
        }
    }
}
/// Whether any index exists: notifications return at once otherwise.
static ACTIVE: AtomicBool = AtomicBool::new(false);

fn lock_registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(recover)
}

/// A panic left an index half-changed: drop them all rather than trust them.
fn recover(poisoned: PoisonError<MutexGuard<'static, Registry>>) -> MutexGuard<'static, Registry> {
    let mut registry = poisoned.into_inner();
    registry.entries.clear();
    registry.writing = None;
    REGISTRY.clear_poison();
    registry
}

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    let mut registry = lock_registry();
    let out = f(&mut registry);
    registry.apply_pending();
    ACTIVE.store(!registry.entries.is_empty(), Ordering::Relaxed);
    out
}

impl Registry {
    fn apply_pending(&mut self) {
        let events = std::mem::take(&mut *PENDING.lock().unwrap_or_else(PoisonError::into_inner));
        for (db, key, event) in events {
            self.key_changed(db, &key, event);
        }
    }

    fn key_changed(&mut self, db: c_int, key: &[u8], event: Event) {
        let expire = event == Event::Expire;
        for ((entry_db, installation), entry) in &mut self.entries {
            if *entry_db != db {
                continue;
            }
            let writer = event == Event::Effect
                && self.writing.as_ref().is_some_and(|(w_db, w_installation)| {
                    *w_db == db && w_installation == installation
                });
            if let Some(parts) = entry.watched.get(key) {
                // Whatever replaced the key (RENAME, RESTORE, COPY, EXPIRE...) may have
                // given it a TTL: the next query looks.
                entry.volatile.insert(key.to_vec());
                // A CRM write updates the one part of each key it touches directly.
                if writer && parts.len() == 1 {
                    continue;
                }
                for part in parts {
                    entry.index.mark_stale(part);
                }
                self.figures.invalidations += 1;
            } else if let Some(id) = entry
                .meeting_key
                .as_ref()
                .and_then(|(before, after)| strip(key, before, after))
            {
                // A new TTL is seen when the row is read again.
                if !writer || expire {
                    entry.index.meeting_changed(id);
                    self.figures.invalidations += 1;
                }
            }
        }
    }

    fn drop_all(&mut self) {
        self.figures.dropped += self.entries.len() as u64;
        self.entries.clear();
        self.resting.clear();
    }

    fn arm_timer(&mut self, ctx: &Context) {
        if !self.timer_armed {
            ctx.create_timer(Duration::from_millis(1), build_slice, ());
            self.timer_armed = true;
        }
    }

    fn hold(&mut self, since: Instant) {
        let held = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.figures.longest_hold_us = self.figures.longest_hold_us.max(held);
    }

    /// Loads what waits in one entry until `deadline`; drops the entry when its memory
    /// passes the budget or its rows cannot be read, forgets a part that cannot be loaded.
    fn refresh(&mut self, key: &(c_int, Bytes), store: &KeyspaceStore, deadline: Instant) -> bool {
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let outcome = entry.index.refresh(store, deadline);
        let rebuilds = entry.index.counters.partial_rebuilds;
        self.figures.partial_rebuilds += rebuilds - entry.counted_rebuilds;
        entry.counted_rebuilds = rebuilds;
        let done = match outcome {
            Ok(done) => done,
            Err(_) => {
                self.entries.remove(key);
                self.resting.insert(
                    key.clone(),
                    (
                        Instant::now() + FAILURE_REST,
                        "the index could not be built",
                    ),
                );
                return false;
            }
        };
        if done && !entry.built {
            entry.built = true;
            self.figures.builds += 1;
            self.figures.last_build_ms =
                u64::try_from(entry.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
        // Measuring walks every bitmap: at the end of a load, and every so often during one.
        if done || entry.measured.elapsed() >= MEASURE_EVERY {
            entry.measured = Instant::now();
            self.check_memory(key);
        }
        done
    }

    /// Keeps the indexes within `crm.index-max-memory`: first the cached visible meetings
    /// go, then this installation's index.
    fn check_memory(&mut self, key: &(c_int, Bytes)) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.memory = entry.index.memory_bytes();
        }
        let budget = config::index_max_memory();
        if self.memory() <= budget {
            return;
        }
        for entry in self.entries.values_mut() {
            entry.index.drop_visible_caches();
            entry.memory = entry.index.memory_bytes();
        }
        if self.memory() > budget && self.entries.remove(key).is_some() {
            self.resting.insert(
                key.clone(),
                (Instant::now() + MEMORY_REST, "over crm.index-max-memory"),
            );
        }
    }

    fn memory(&self) -> usize {
        self.entries.values().map(|entry| entry.memory).sum()
    }
}

/// The keyspace notification handler: every class of event, for every key.
pub fn on_key_event(ctx: &Context, _class: NotifyEvent, event: &str, key: &[u8]) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let db = selected_db(ctx).unwrap_or(-1);
        let event = Event::of(event);
        match REGISTRY.try_lock() {
            Ok(mut registry) => {
                registry.key_changed(db, key, event);
                registry.apply_pending();
            }
            // The registry is in use further up this thread's stack: apply it afterwards.
            Err(TryLockError::WouldBlock) => PENDING
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((db, key.to_vec(), event)),
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut registry = recover(poisoned);
                registry.key_changed(db, key, event);
                registry.apply_pending();
            }
        }
    }));
}

/// Flush, SWAPDB, loading: the data under every index is replaced.
pub fn drop_all() {
    with_registry(Registry::drop_all);
}

/// ACL rules may have changed: ask the server again.
pub fn acl_changed() {
    with_registry(|registry| registry.unrestricted.clear());
}

pub fn figures() -> Option<Figures> {
    // Never wait here: INFO may run inside a crash report.
    let registry = REGISTRY.try_lock().ok()?;
    let mut figures = registry.figures;
    figures.installations = registry.entries.len() as u64;
    figures.meetings = registry
        .entries
        .values()
        .map(|e| e.index.meetings() as u64)
        .sum();
    figures.memory_bytes = registry.memory() as u64;
    figures.building = registry
        .entries
        .values()
        .filter(|e| e.index.has_work())
        .count() as u64;
    Some(figures)
}

/// Answers CRM.MEETINGS / CRM.EXPLAIN: from the index when it is ready for the query,
/// otherwise from the keyspace (the trace says why).
pub fn answer(
    ctx: &Context,
    store: &KeyspaceStore,
    query: &Query,
    trace: &mut Trace,
) -> Result<Page, CrmError> {
    let started = Instant::now();
    let outcome = match config::index_plan() {
        PlanSetting::Keyspace => {
            with_registry(|registry| {
                if !config::INDEX.load(Ordering::Relaxed) && !registry.entries.is_empty() {
                    registry.drop_all();
                }
            });
            Err("crm.index is no or crm.index-plan is keyspace")
        }
        PlanSetting::Auto => from_index(ctx, store, query, None, trace)?,
        PlanSetting::Forced(kind) => from_index(ctx, store, query, Some(kind), trace)?,
    };
    let reason = match outcome {
        Ok(page) => return Ok(page),
        Err(reason) => reason,
    };
    with_registry(|registry| registry.figures.keyspace_answers += 1);
    trace.record(
        "index",
        || format!("keyspace path: {reason}"),
        0,
        0,
        started,
    );
    execute_traced(store, query, trace)
}

/// The page from the index, or why the keyspace path must answer.
fn from_index(
    ctx: &Context,
    store: &KeyspaceStore,
    query: &Query,
    forced: Option<PlanKind>,
    trace: &mut Trace,
) -> Result<Result<Page, &'static str>, CrmError> {
    // The index holds what the caller may not be allowed to read (every meeting's client):
    // only callers who may read every key use it; the keyspace path checks key by key.
    if !unrestricted(ctx)? {
        return Ok(Err("the user's ACL limits the keys it may read"));
    }
    // The keys the query names are checked as the keyspace path would (ACL, cluster slot).
    let parts = parts_of(query);
    for part in &parts {
        let (key, setting) = part_key(store, query, part);
        store.check_key(&key, setting, Need::Read)?;
    }
    let db = selected_db(ctx)?;
    let key = (db, query.installation.clone());
    let templates = store.templates().clone();
    let started = Instant::now();
    with_registry(|registry| {
        if let Some((until, reason)) = registry.resting.get(&key) {
            if Instant::now() < *until {
                return Ok(Err(*reason));
            }
            registry.resting.remove(&key);
        }
        let stale_templates = registry
            .entries
            .get(&key)
            .is_some_and(|entry| !same_templates(&entry.templates, &templates));
        if stale_templates {
            registry.drop_all();
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
            return Ok(Err(
                "crm.meeting-key or crm.sort-member holds <id> more than once",
            ));
        }
        let entry = registry
            .entries
            .entry(key.clone())
            .or_insert_with(|| Entry {
                meeting_key,
                templates,
                index: Index::new(query.installation.clone()),
                watched: HashMap::new(),
                volatile: HashSet::new(),
                created: Instant::now(),
                built: false,
                measured: Instant::now(),
                memory: 0,
                counted_rebuilds: 0,
            });
        touch_volatile(ctx, store, entry)?;
        if entry.volatile.len() + entry.index.expiring_count() > MAX_VOLATILE_KEYS {
            registry.entries.remove(&key);
            registry.resting.insert(
                key,
                (Instant::now() + MEMORY_REST, "too many keys with a TTL"),
            );
            return Ok(Err("too many keys with a TTL"));
        }
        for part in entry.index.register(&parts) {
            let (name, _) = part_key(store, query, &part);
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

/// The key a part is loaded from, with the setting its template comes from.
fn part_key(store: &KeyspaceStore, query: &Query, part: &Part) -> (Bytes, &'static str) {
    let installation = query.installation.as_slice();
    match part {
        Part::Set(SetName::Meetings) => (
            store.set_key(SetRef::Meetings { installation }),
            "meetings-key",
        ),
        Part::Set(SetName::Value(field, value)) => (
            store.set_key(SetRef::Filter {
                installation,
                field,
                value,
            }),
            "filter-key",
        ),
        Part::Sort(field) => (store.sort_key(installation, field), "sort-key"),
        Part::Clients(user) => (
            store.set_key(SetRef::VisibleClients { installation, user }),
            "clients-key",
        ),
    }
}

fn same_templates(a: &KeyTemplates, b: &KeyTemplates) -> bool {
    Arc::ptr_eq(&a.filter, &b.filter)
        && Arc::ptr_eq(&a.meetings, &b.meetings)
        && Arc::ptr_eq(&a.clients, &b.clients)
        && Arc::ptr_eq(&a.meeting, &b.meeting)
        && Arc::ptr_eq(&a.sort, &b.sort)
        && Arc::ptr_eq(&a.sort_member, &b.sort_member)
}

/// Opens every key with a TTL the index depends on: on a primary an expired one is deleted
/// now, on a replica it reads as missing; either way what it feeds is read again. A key
/// whose TTL was removed is no longer followed.
fn touch_volatile(ctx: &Context, store: &KeyspaceStore, entry: &mut Entry) -> Result<(), CrmError> {
    let mut gone = Vec::new();
    for key in &entry.volatile {
        let opened = ReadKey::open(ctx, &ModuleString::new(key)?, key)?;
        if opened.is_missing() || !opened.has_expire()? {
            gone.push((key.clone(), opened.is_missing()));
        }
    }
    for (key, missing) in gone {
        entry.volatile.remove(&key);
        match entry.watched.get(&key) {
            Some(parts) if missing => parts.iter().for_each(|part| entry.index.mark_stale(part)),
            _ => {}
        }
    }
    let installation = entry.index.installation().to_vec();
    let mut name = Vec::new();
    for id in entry.index.expiring() {
        store.meeting_key(&installation, &id, &mut name);
        let opened = ReadKey::open(ctx, &ModuleString::new(&name)?, &name)?;
        if opened.is_missing() || !opened.has_expire()? {
            entry.index.meeting_changed(&id);
        }
    }
    Ok(())
}

/// Follows the TTL of the keys of newly registered parts (a TTL set later is announced).
fn watch_ttl(ctx: &Context, entry: &mut Entry, key: &[u8]) -> Result<(), CrmError> {
    if ReadKey::open(ctx, &ModuleString::new(key)?, key)?.has_expire()? {
        entry.volatile.insert(key.to_vec());
    }
    Ok(())
}

/// Whether the calling user may read every key: `~*` (or `%R~*`) among its root key
/// patterns. No calling user (a replica's stream, the AOF) may read everything.
fn unrestricted(ctx: &Context) -> Result<bool, CrmError> {
    let Some(user) = caller(ctx) else {
        return Ok(true);
    };
    if let Some(known) = with_registry(|registry| registry.unrestricted.get(&user).copied()) {
        return Ok(known);
    }
    let reply: CallResult = ctx.call_ext(
        "ACL",
        &CallOptionsBuilder::new().errors_as_replies().build(),
        &[b"GETUSER".as_slice(), &user],
    );
    let all_keys = match &reply {
        Ok(CallReply::Array(fields)) => {
            let fields: Vec<_> = fields.iter().collect();
            fields.chunks(2).any(|pair| match pair {
                [Ok(CallReply::String(name)), Ok(CallReply::String(patterns))]
                    if name.as_bytes() == b"keys" =>
                {
                    patterns
                        .as_bytes()
                        .split(|&byte| byte == b' ')
                        .any(|pattern| matches!(pattern, b"~*" | b"%R~*" | b"%RW~*" | b"%WR~*"))
                }
                _ => false,
            })
        }
        _ => false,
    };
    // Inside MULTI an ACL command may follow in the same transaction: no caching there.
    if !ctx.get_flags().contains(ContextFlags::MULTI) {
        with_registry(|registry| registry.unrestricted.insert(user, all_keys));
    }
    Ok(all_keys)
}

/// One slice of loading for every index with work, then the next slice if work remains.
fn build_slice(ctx: &Context, _: ()) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let started = Instant::now();
        let deadline = started + SLICE;
        let original_db = selected_db(ctx).unwrap_or(0);
        with_registry(|registry| {
            registry.timer_armed = false;
            let waiting: Vec<(c_int, Bytes)> = registry
                .entries
                .iter()
                .filter(|(_, entry)| entry.index.has_work())
                .map(|(key, _)| key.clone())
                .collect();
            for key in waiting {
                if Instant::now() >= deadline {
                    break;
                }
                let Some(entry) = registry.entries.get(&key) else {
                    continue;
                };
                if select_db(ctx, key.0).is_err() {
                    continue;
                }
                let Ok(guard) = KeyGuard::new(ctx, None, &key.1) else {
                    continue;
                };
                let store = KeyspaceStore::new(ctx, entry.templates.clone(), guard);
                registry.refresh(&key, &store, deadline);
            }
            registry.hold(started);
            if registry
                .entries
                .values()
                .any(|entry| entry.index.has_work())
            {
                registry.arm_timer(ctx);
            }
        });
        let _ = select_db(ctx, original_db);
    }));
}

/// Runs a CRM write (`apply` changes the keyspace), then applies its effects to the
/// installation's index; the write's own notifications are skipped for that index.
pub fn write(
    ctx: &Context,
    installation: &[u8],
    id: &[u8],
    apply: impl FnOnce() -> Result<Vec<Effect>, CrmError>,
) -> Result<(), CrmError> {
    if !ACTIVE.load(Ordering::Relaxed) {
        return apply().map(drop);
    }
    let key = (selected_db(ctx)?, installation.to_vec());
    with_registry(|registry| registry.writing = Some(key.clone()));
    // Should `apply` panic, the guard drops this installation's index: what the write did
    // is unknown, and its own notifications were skipped.
    let writing = Writing;
    let outcome = apply();
    std::mem::forget(writing);
    with_registry(|registry| {
        registry.writing = None;
        let Some(entry) = registry.entries.get_mut(&key) else {
            return;
        };
        let applied = match &outcome {
            Ok(effects) => entry.index.apply_write(id, effects).is_ok(),
            // Refused before the first change: nothing to follow.
            Err(error) => !matches!(error, CrmError::Internal(_)),
        };
        if !applied {
            // Whatever the write did is unknown: start this index again.
            registry.entries.remove(&key);
        }
    });
    outcome.map(drop)
}

struct Writing;

impl Drop for Writing {
    fn drop(&mut self) {
        with_registry(|registry| {
            if let Some(key) = registry.writing.take() {
                registry.entries.remove(&key);
            }
        });
    }
}

/// Subscribes to the server events that replace the data under the indexes.
pub fn subscribe_server_events(ctx: &Context) -> Result<(), String> {
    let subscribe = unsafe { raw::RedisModule_SubscribeToServerEvent }
        .ok_or("no server events on this server")?;
    for id in [
        raw::REDISMODULE_EVENT_FLUSHDB,
        raw::REDISMODULE_EVENT_LOADING,
        raw::REDISMODULE_EVENT_SWAPDB,
        raw::REDISMODULE_EVENT_REPL_ASYNC_LOAD,
    ] {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: called from OnLoad with the module's context; the callback lives forever.
        if unsafe { subscribe(ctx.ctx, event, Some(on_server_event)) }
            != raw::REDISMODULE_OK as c_int
            && id != raw::REDISMODULE_EVENT_REPL_ASYNC_LOAD
        {
            return Err(format!("cannot subscribe to server event {id}"));
        }
    }
    Ok(())
}

extern "C" fn on_server_event(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    _data: *mut std::os::raw::c_void,
) {
    let _ = catch_unwind(drop_all);
}
