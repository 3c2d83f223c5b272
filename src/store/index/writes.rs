//! CRM writes (CRM.MEETING.SET/DEL and CRM.REPAIR's mends) keep their installation's index
//! current directly: the write's effects are applied to the index, and the notifications
//! of its own effect commands are skipped for that index.

use std::sync::atomic::Ordering;

use redis_module::Context;

use super::{with_registry, ACTIVE};
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
