//! The in-memory indexes on the server: one [`Index`] per database and installation queried,
//! kept exact by what the server tells the module, never used stale.
//!
//! - `events.rs`: key-space notifications and the server events that replace data;
//! - `loading.rs`: loading in bounded slices, memory measured against the budget;
//! - `ttl.rs`: keys with a TTL touched before each answer;
//! - `writes.rs`: CRM writes applied to their index directly;
//! - `members.rs`: other commands' members, noted by the command filter;
//! - `touched.rs`: string and hash writes, seen by the command filter where it stands in
//!   for their notifications;
//! - `routes.rs`: which indexes and parts a notification concerns, in a few lookups.
//!
//! - `answer.rs`: a query reads the index only when every part it needs is loaded; it says
//!   why not otherwise: the index is loading, or the keyspace path must answer;
//! - `permits.rs`: whether a user with a restricted ACL may read every meeting hash;
//! - `waiting.rs`: clients blocked until their index is loaded;
//! - `preload.rs`: indexes built after a load without waiting for a query.
//!
//! Everything runs on the main thread; settings come in as arguments.

pub mod answer;
pub mod events;
mod loading;
pub mod members;
mod permits;
pub mod preload;
mod routes;
pub mod touched;
mod ttl;
pub mod waiting;
pub mod writes;

use std::collections::{HashMap, HashSet};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

use super::keys::KeyTemplates;
use crate::core::index::Index;
use crate::core::types::Bytes;
use crate::ffi::key::ScanCursor;

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
    /// Parts updated member by member after a command the filter saw.
    pub member_updates: u64,
    pub dropped: u64,
    pub plans: [u64; 3],
    pub keyspace_answers: u64,
    /// Queries that waited for their index (blocked clients).
    pub waits: u64,
    /// Waits that passed `crm.index-wait-ms` (answered `LOADING ...`).
    pub wait_timeouts: u64,
    /// Queries answered `LOADING ...` at once: they could not wait (MULTI/EXEC, scripts).
    pub loading_errors: u64,
}

struct Entry {
    templates: KeyTemplates,
    /// The meeting key's text around `<id>`, to recognise a meeting's hash by its name.
    meeting_key: Option<(Bytes, Bytes)>,
    /// The sort member's text around `<id>`, to find a sort member's meeting.
    sort_member: (Bytes, Bytes),
    index: Index<ScanCursor>,
    /// Keys with a TTL that the index depends on.
    volatile: HashSet<Bytes>,
    /// Meetings whose hash got a field TTL (HEXPIRE) since the index was made: a field may
    /// expire unannounced, so their rows are read again before each answer. Needed where
    /// reading a row cannot tell field TTLs (Valkey); elsewhere the row read sees them.
    field_volatile: HashSet<Bytes>,
    /// Per restricted user: how far its reads of the meeting hashes are checked.
    permits: HashMap<Bytes, permits::Permit>,
    created: Instant,
    built: bool,
    /// Counters of the index already added to the figures.
    counted_rebuilds: u64,
}

impl Entry {
    fn new(
        templates: KeyTemplates,
        meeting_key: Option<(Bytes, Bytes)>,
        sort_member: (Bytes, Bytes),
        installation: &[u8],
    ) -> Self {
        Entry {
            meeting_key,
            sort_member,
            templates,
            index: Index::new(installation.to_vec()),
            volatile: HashSet::new(),
            field_volatile: HashSet::new(),
            permits: HashMap::new(),
            created: Instant::now(),
            built: false,
            counted_rebuilds: 0,
        }
    }
}

/// A CRM write under way: its database and installation, and the keys its own effect
/// notifications named (followed when it ends, knowing what it updated).
struct Writing {
    key: (i32, Bytes),
    deferred: Vec<Bytes>,
}

struct Registry {
    /// Boxed: thousands of installations' entries, moved when the map grows.
    entries: HashMap<(i32, Bytes), Box<Entry>>,
    /// Installations that may not have an index until then, and why.
    resting: HashMap<(i32, Bytes), (Instant, &'static str)>,
    /// The CRM write under way, if any.
    writing: Option<Writing>,
    /// Clients blocked until their index is loaded.
    waiters: Vec<waiting::Waiter>,
    preloading: Option<preload::Preloading>,
    /// Which indexes each notification concerns.
    routes: routes::Routes,
    /// Keys filtered commands of this turn named, followed again when it ends.
    touched: Vec<touched::Touch>,
    /// Keys named by commands the server postponed, followed again until they have run.
    postponed: Vec<touched::Touch>,
    /// Whether the end of this turn will settle `touched`.
    settling: bool,
    postponed_timer: bool,
    /// Indexes dropped, freed a bounded piece at a time by the loading slices.
    released: Vec<Index<ScanCursor>>,
    /// The estimated bytes of `released`, not yet freed.
    releasing_bytes: usize,
    timer_armed: bool,
    /// The bytes all indexes may hold together (`crm.index-max-memory`), read when needed.
    max_memory: fn() -> usize,
    /// Whether queries may read indexes at all (`crm.index`): preloading waits for it.
    enabled: fn() -> bool,
    figures: Figures,
}

lazy_static::lazy_static! {
    static ref REGISTRY: Mutex<Registry> = Mutex::new(Registry {
        entries: HashMap::new(),
        resting: HashMap::new(),
        writing: None,
        waiters: Vec::new(),
        preloading: None,
        routes: routes::Routes::default(),
        touched: Vec::new(),
        postponed: Vec::new(),
        settling: false,
        postponed_timer: false,
        released: Vec::new(),
        releasing_bytes: 0,
        timer_armed: false,
        max_memory: || usize::MAX,
        enabled: || true,
        figures: Figures::default(),
    });
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
    registry.routes.clear();
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

/// [`with_registry`], or `None` when the registry is in use further up this thread's stack
/// (a callback the server ran from inside the module's own work).
fn try_with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> Option<T> {
    let mut registry = match REGISTRY.try_lock() {
        Ok(registry) => registry,
        Err(TryLockError::Poisoned(poisoned)) => recover(poisoned),
        Err(TryLockError::WouldBlock) => return None,
    };
    let out = f(&mut registry);
    registry.apply_pending();
    ACTIVE.store(!registry.entries.is_empty(), Ordering::Relaxed);
    Some(out)
}

impl Registry {
    fn drop_all(&mut self) {
        self.figures.dropped += self.entries.len() as u64;
        let keys: Vec<(i32, Bytes)> = self.entries.keys().cloned().collect();
        for key in keys {
            self.remove_entry(&key);
        }
        self.routes.clear();
        self.resting.clear();
    }

    /// Drops one index. Its memory is freed by the loading slices, a bounded piece at a
    /// time: a million meetings freed at once hold the server for tens of milliseconds.
    fn remove_entry(&mut self, key: &(i32, Bytes)) -> bool {
        let Some(entry) = self.entries.remove(key) else {
            return false;
        };
        self.releasing_bytes += entry.index.heap_bytes();
        self.released.push(entry.index);
        self.arm_soon();
        true
    }
}

/// The settings the indexes follow, read each time they are needed: the memory budget, and
/// whether queries may read indexes at all.
pub fn follow_settings(max_memory: fn() -> usize, enabled: fn() -> bool) {
    with_registry(|registry| {
        registry.max_memory = max_memory;
        registry.enabled = enabled;
    });
}

/// The module unloads: every index is freed now.
pub fn free_all() {
    with_registry(|registry| {
        registry.figures.dropped += registry.entries.len() as u64;
        // Nothing may stay allocated in the statics of an unloaded module.
        registry.entries = HashMap::new();
        registry.released = Vec::new();
        registry.releasing_bytes = 0;
        registry.resting = HashMap::new();
        registry.routes.clear();
        registry.touched = Vec::new();
        registry.postponed = Vec::new();
        registry.preloading = None;
    });
}

/// `crm.index no`: every index goes (and preloading ends at its next slice).
pub fn drop_all() {
    with_registry(|registry| {
        if !registry.entries.is_empty() {
            registry.drop_all();
        }
    });
}

/// A query the index did not answer was answered from the keyspace.
pub fn count_keyspace_answer() {
    with_registry(|registry| registry.figures.keyspace_answers += 1);
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
