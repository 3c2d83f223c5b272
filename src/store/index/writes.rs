//! CRM writes (CRM.MEETING.SET/DEL and CRM.REPAIR's mends) keep their installation's index
//! current directly: the write's effects are applied to the index, and the notifications
//! of its own effect commands are followed afterwards for every part but those the
//! effects updated. Exact even when templates render one key for two parts (field
//! `type:x` value `y` and field `type` value `x:y`).

use std::sync::atomic::Ordering;

use redis_module::Context;

use super::events::{follow, Event};
use super::{with_registry, ACTIVE};
use crate::core::index::follow::part_written;
use crate::core::types::Effect;
use crate::error::CrmError;
use crate::ffi::selected_db;

/// Runs a CRM write (`apply` changes the keyspace and returns the effects it applied), then
/// applies those effects to the installation's index.
pub fn write_through(
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
        let deferred = std::mem::take(&mut registry.deferred);
        let Some(entry) = registry.entries.get_mut(&key) else {
            return;
        };
        let (applied, updated) = match &outcome {
            Ok(effects) => (
                entry.index.apply_write(id, effects).is_ok(),
                effects.iter().filter_map(part_written).collect(),
            ),
            // Refused before the first change: nothing to follow.
            Err(error) => (!matches!(error, CrmError::Internal(_)), Vec::new()),
        };
        if !applied {
            // Whatever the write did is unknown: start this index again.
            registry.entries.remove(&key);
            return;
        }
        for changed in deferred {
            if follow(entry, &changed, Event::Other, &updated) {
                registry.figures.invalidations += 1;
            }
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
            registry.deferred.clear();
        });
    }
}
