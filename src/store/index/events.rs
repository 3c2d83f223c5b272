//! What the server tells the indexes: key-space notifications (every key; every class but
//! those the command filter stands in for, see `touched.rs`) and the events that replace a
//! database's data.
//!
//! A change to a key a part was loaded from marks that part stale; a change to a meeting's
//! hash marks its row stale (a key may be both: templates may render one name twice). A
//! CRM write updates its index directly: its own effect notifications are held until it
//! ends, then followed except for the parts the write updated (see `writes.rs`). Other
//! commands that add or remove named members are followed member by member when the
//! command filter noted them (see `members.rs`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, TryLockError};

use redis_module::{Context, NotifyEvent};

use super::{members, touched};
use super::{recover, with_registry, Entry, Registry, ACTIVE, REGISTRY};
use crate::core::index::Part;
use crate::core::types::Bytes;
use crate::ffi::selected_db;
use crate::store::access::KeyGuard;
use crate::store::keys::strip;
use crate::store::keyspace::KeyspaceStore;

/// Notifications that arrived while the registry was in use (a key expiring as the index
/// reads it); applied when it is released.
static PENDING: std::sync::Mutex<Vec<(i32, Bytes, Event)>> = std::sync::Mutex::new(Vec::new());
/// Whether `PENDING` may hold anything (checked after every notification).
static HAS_PENDING: AtomicBool = AtomicBool::new(false);

/// The database of a pending change a filtered command announced (see `touched.rs`): it
/// does not know the client's, so every database's indexes follow it.
const FILTERED_COMMAND: i32 = i32::MIN;

/// A filtered command's change to `key`, made while the registry was in use further up
/// this thread's stack: followed when it is released.
pub(super) fn defer_touch(key: Bytes, event: Event) {
    PENDING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((FILTERED_COMMAND, key, event));
    HAS_PENDING.store(true, Ordering::Relaxed);
}

/// What a notification means to an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// HSET, which a CRM write runs for one of its effects (the write updates the index).
    Effect,
    /// A command that adds or removes named members (SADD, SREM, ZADD, ZINCRBY, ZREM);
    /// a CRM write runs the first four of them too.
    Members,
    /// A hash field got a TTL (HEXPIRE): the meeting's row is read again before each
    /// answer from now on (where the server cannot tell a row read about field TTLs).
    FieldExpire,
    /// The key is gone (deleted, expired, evicted, renamed or moved away).
    Gone,
    /// Anything else (including a deletion or expiry a write's own command caused).
    Other,
}

impl Event {
    fn of(name: &str) -> Event {
        match name {
            "sadd" | "srem" | "zadd" | "zrem" | "zincr" => Event::Members,
            "hset" => Event::Effect,
            "hexpire" => Event::FieldExpire,
            "del" | "expired" | "evicted" | "rename_from" | "move_from" => Event::Gone,
            _ => Event::Other,
        }
    }
}

/// The notification classes to subscribe to: all of them but those the command filter
/// stands in for on this server (see `touched.rs`).
pub fn classes() -> NotifyEvent {
    NotifyEvent::ALL.difference(touched::choose())
}

/// The keyspace notification handler: the classes of [`classes`], for every key.
pub fn on_key_event(ctx: &Context, event: &str, key: &[u8]) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let db = selected_db(ctx).unwrap_or(-1);
        let event = Event::of(event);
        match REGISTRY.try_lock() {
            Ok(mut registry) => {
                registry.key_changed(Some(ctx), db, key, event);
                registry.apply_pending();
            }
            // The registry is in use further up this thread's stack: apply it afterwards.
            Err(TryLockError::WouldBlock) => {
                PENDING
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((db, key.to_vec(), event));
                HAS_PENDING.store(true, Ordering::Relaxed);
            }
            Err(TryLockError::Poisoned(poisoned)) => {
                let mut registry = recover(poisoned);
                registry.key_changed(Some(ctx), db, key, event);
                registry.apply_pending();
            }
        }
    }));
}

/// Flush, SWAPDB, loading: the data under every index is replaced.
pub fn on_data_replaced() {
    with_registry(Registry::drop_all);
}

impl Registry {
    pub(super) fn apply_pending(&mut self) {
        if !HAS_PENDING.swap(false, Ordering::Relaxed) {
            return;
        }
        let events = std::mem::take(&mut *PENDING.lock().unwrap_or_else(PoisonError::into_inner));
        for (db, key, event) in events {
            match db {
                FILTERED_COMMAND => self.touch(key, event, None),
                _ => self.key_changed(None, db, &key, event),
            }
        }
    }

    /// Follows a notification; with a context, a command's noted members are read back.
    pub(super) fn key_changed(&mut self, ctx: Option<&Context>, db: i32, key: &[u8], event: Event) {
        let noted = members::take(key).filter(|_| event == Event::Members);
        let concerned = self.concerned(db, key);
        for (installation, mut parts) in concerned {
            let index_key = (db, installation);
            let Some(entry) = self.entries.get_mut(&index_key) else {
                continue;
            };
            parts.retain(|part| entry.index.has_part(part));
            let writing = match &mut self.writing {
                Some(writing)
                    if matches!(event, Event::Effect | Event::Members)
                        && writing.key == index_key =>
                {
                    Some(writing)
                }
                _ => None,
            };
            if let Some(writing) = writing {
                // Followed when the write ends, knowing which parts it updated.
                if !writing.deferred.iter().any(|known| known == key) {
                    writing.deferred.push(key.to_vec());
                }
                continue;
            }
            let updated = match (ctx, &noted) {
                (Some(ctx), Some(members)) => follow_members(ctx, entry, &parts, members),
                _ => Vec::new(),
            };
            self.figures.member_updates += updated.len() as u64;
            if follow(entry, &parts, key, event, &updated) {
                self.figures.invalidations += 1;
            }
        }
    }

    /// The installations a change to `key` concerns, each with the parts its index loaded
    /// from the key (none when the key is only a meeting's hash there).
    fn concerned(&self, db: i32, key: &[u8]) -> Vec<(Bytes, Vec<Part>)> {
        let reading = self.routes.readers(db, key).iter();
        let naming = self.routes.meeting_of(db, key);
        let mut named: Vec<(&Bytes, Option<&Part>)> = reading
            .map(|(installation, part)| (installation, Some(part)))
            .chain(
                naming
                    .into_iter()
                    .map(|(installation, _)| (installation, None)),
            )
            .collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let mut concerned: Vec<(Bytes, Vec<Part>)> = Vec::new();
        for (installation, part) in named {
            match concerned.last_mut() {
                Some((last, parts)) if last == installation => parts.extend(part.cloned()),
                _ => concerned.push((installation.clone(), part.into_iter().cloned().collect())),
            }
        }
        concerned
    }
}

/// Gives each part loaded from `key` what the key now holds for `members` (named by the
/// command that changed it); returns the parts so updated.
fn follow_members(
    ctx: &Context,
    entry: &mut Entry,
    parts: &[Part],
    members: &[Bytes],
) -> Vec<Part> {
    if parts.is_empty() {
        return Vec::new();
    }
    let Ok(guard) = KeyGuard::new(ctx, None, entry.index.installation()) else {
        return Vec::new();
    };
    let store = KeyspaceStore::new(ctx, entry.templates.clone(), guard);
    let mut updated = Vec::new();
    for part in parts {
        let ids: Option<Vec<Bytes>> = match part {
            // A sort member names its meeting in the sort-member template.
            Part::Sort(_) => members
                .iter()
                .map(|member| {
                    let (before, after) = &entry.sort_member;
                    strip(member, before, after).map(<[u8]>::to_vec)
                })
                .collect(),
            Part::Set(_) | Part::Clients(_) => Some(members.to_vec()),
        };
        let Some(ids) = ids else {
            continue;
        };
        if entry.index.members_changed(&store, part, &ids).is_ok() {
            updated.push(part.clone());
        }
    }
    updated
}

/// What a change to `key` means to one index: every part loaded from it (of `parts`, the
/// routes' record, which may name parts of an earlier index of the installation) but those
/// in `updated` (a CRM write updated them itself) is read again, and so is the row of the
/// meeting whose hash it names. Returns whether anything was marked.
pub(super) fn follow(
    entry: &mut Entry,
    parts: &[Part],
    key: &[u8],
    event: Event,
    updated: &[Part],
) -> bool {
    let mut marked = false;
    let loaded: Vec<&Part> = parts.iter().filter(|p| entry.index.has_part(p)).collect();
    if !loaded.is_empty() {
        // Whatever replaced the key (RENAME, RESTORE, COPY, EXPIRE...) may have given it a
        // TTL: the next query looks.
        entry.volatile.insert(key.to_vec());
        for part in loaded.into_iter().filter(|part| !updated.contains(part)) {
            entry.index.mark_stale(part);
            marked = true;
        }
    }
    let id = entry
        .meeting_key
        .as_ref()
        .and_then(|(before, after)| strip(key, before, after));
    if let Some(id) = id {
        match event {
            Event::FieldExpire => {
                entry.field_volatile.insert(id.to_vec());
            }
            Event::Gone => {
                entry.field_volatile.remove(id);
            }
            _ => {}
        }
        // A new TTL is seen when the row is read again.
        entry.index.meeting_changed(id);
        marked = true;
    }
    marked
}
