//! Keys with a TTL: the server deletes an expired key only when it is touched or sampled,
//! so the keys an index depends on that carry a TTL are touched before each answer (on a
//! replica, which never deletes them itself, an expired key reads as missing). Hashes
//! with field TTLs have their rows read again before each answer: an expired field reads
//! as missing whether or not the server has deleted it yet.

use super::{Entry, Registry};
use crate::core::types::Bytes;
use crate::error::CrmError;
use crate::ffi::key::ReadKey;
use crate::ffi::string::ModuleString;
use crate::store::keyspace::KeyspaceStore;
use redis_module::Context;

impl Registry {
    /// Opens every key with a TTL the index `key` depends on: on a primary an expired one
    /// is deleted now, on a replica it reads as missing; either way what it feeds is read
    /// again. A key whose TTL was removed is no longer followed. Returns how many keys and
    /// hashes with a TTL the index follows.
    pub(super) fn touch_volatile(
        &mut self,
        ctx: &Context,
        store: &KeyspaceStore,
        key: &(i32, Bytes),
    ) -> Result<usize, CrmError> {
        let Some(entry) = self.entries.get_mut(key) else {
            return Ok(0);
        };
        let gone = touch(ctx, store, entry)?;
        for name in gone {
            for part in self.routes.parts(key.0, &name, &key.1) {
                entry.index.mark_stale(&part);
            }
        }
        Ok(entry.volatile.len() + entry.index.expiring_count() + entry.field_volatile.len())
    }
}

/// Opens the entry's keys and hashes with a TTL (see [`Registry::touch_volatile`]); returns
/// the keys found missing.
fn touch(ctx: &Context, store: &KeyspaceStore, entry: &mut Entry) -> Result<Vec<Bytes>, CrmError> {
    let mut gone = Vec::new();
    let mut unfollowed = Vec::new();
    for key in &entry.volatile {
        let opened = ReadKey::open(ctx, &ModuleString::new(key)?, key)?;
        if opened.is_missing() {
            gone.push(key.clone());
        } else if !opened.has_expire()? {
            unfollowed.push(key.clone());
        }
    }
    for key in gone.iter().chain(&unfollowed) {
        entry.volatile.remove(key);
    }
    for id in &entry.field_volatile {
        entry.index.meeting_changed(id);
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
    Ok(gone)
}

/// Follows the TTL of the keys of newly registered parts (a TTL set later is announced).
pub(super) fn watch_ttl(ctx: &Context, entry: &mut Entry, key: &[u8]) -> Result<(), CrmError> {
    if ReadKey::open(ctx, &ModuleString::new(key)?, key)?.has_expire()? {
        entry.volatile.insert(key.to_vec());
    }
    Ok(())
}
