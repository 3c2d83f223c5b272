//! CRM writes (CRM.MEETING.SET/DEL and CRM.REPAIR's mends) keep their installation's index
//! current directly: the write's effects are applied to the index, and the notifications
//! of its own effect commands are followed afterwards for every part but the ones the
//! write updated itself. A part counts as updated only when it is the one part the write's
//! effects name under its key: templates may render one key for two parts (field `type:x`
//! value `y` and field `type` value `x:y`), and then the key's state is the sum of both
//! effects, which only a read gives.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use redis_module::Context;

use super::events::{follow, Event};
use super::{touched, with_registry, Writing, ACTIVE};
use crate::core::index::follow::part_written;
use crate::core::index::Part;
use crate::core::types::{Bytes, Effect};
use crate::error::CrmError;
use crate::ffi::selected_db;
use crate::store::keyspace::KeyspaceStore;

/// Runs a CRM write of the meetings `ids` through `store` (`apply` changes the keyspace and
/// returns the effects it applied to each, in the order of `ids`), then applies those
/// effects to the installation's index.
pub fn write_through(
    ctx: &Context,
    store: &KeyspaceStore,
    installation: &[u8],
    ids: &[&[u8]],
    apply: impl FnOnce() -> Result<Vec<Vec<Effect>>, CrmError>,
) -> Result<(), CrmError> {
    if !ACTIVE.load(Ordering::Relaxed) {
        return apply().map(drop);
    }
    let key = (selected_db(ctx)?, installation.to_vec());
    with_registry(|registry| {
        registry.writing = Some(Writing {
            key: key.clone(),
            deferred: Vec::new(),
        })
    });
    // Should `apply` panic, the guard drops this installation's index: what the write did
    // is unknown, and its own notifications were held back.
    let guard = WriteGuard;
    let outcome = apply();
    std::mem::forget(guard);
    with_registry(|registry| {
        let deferred = registry
            .writing
            .take()
            .map(|writing| writing.deferred)
            .unwrap_or_default();
        if touched::hashes_followed() {
            // No hash notification tells the other indexes that name this hash.
            let mut meeting_key = Vec::new();
            for id in ids {
                meeting_key.clear();
                store.meeting_key(installation, id, &mut meeting_key);
                registry.mark_everywhere(&meeting_key, Event::Other);
            }
        }
        let Some(entry) = registry.entries.get_mut(&key) else {
            return;
        };
        let applied = match &outcome {
            // Effects named in other templates than the index's (a CONFIG SET while a
            // CRM.REPAIR runs) cannot be applied to it.
            Ok(_) if !entry.templates.same_as(store.templates()) => false,
            Ok(written) => ids
                .iter()
                .zip(written)
                .all(|(id, effects)| entry.index.apply_write(id, effects).is_ok()),
            // Refused before the first change: nothing to follow.
            Err(error) => !matches!(error, CrmError::Internal(_)),
        };
        if !applied {
            // Whatever the write did is unknown to the index: start it again.
            registry.remove_entry(&key);
            return;
        }
        let updated = match &outcome {
            Ok(written) => sole_parts_by_key(store, installation, written.iter().flatten()),
            Err(_) => HashMap::new(),
        };
        for changed in deferred {
            let skip = updated.get(&changed).map_or(&[][..], std::slice::from_ref);
            let parts = registry.routes.parts(key.0, &changed, installation);
            if follow(entry, &parts, &changed, Event::Other, skip) {
                registry.figures.invalidations += 1;
            }
        }
    });
    outcome.map(drop)
}

/// For each key the effects change, the part they change there, when it is only one.
fn sole_parts_by_key<'e>(
    store: &KeyspaceStore,
    installation: &[u8],
    effects: impl Iterator<Item = &'e Effect>,
) -> HashMap<Bytes, Part> {
    let mut by_key: HashMap<Bytes, Vec<Part>> = HashMap::new();
    for part in effects.filter_map(part_written) {
        let (key, _) = store.part_key(installation, &part);
        let parts = by_key.entry(key).or_default();
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    by_key
        .into_iter()
        .filter_map(|(key, mut parts)| match parts.len() {
            1 => parts.pop().map(|part| (key, part)),
            _ => None,
        })
        .collect()
}

struct WriteGuard;

impl Drop for WriteGuard {
    fn drop(&mut self) {
        with_registry(|registry| {
            if let Some(writing) = registry.writing.take() {
                registry.remove_entry(&writing.key);
            }
        });
    }
}
