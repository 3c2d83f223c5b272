//! Clients waiting for an index: a query whose parts are still loading blocks its client
//! (the server serves everyone else meanwhile) and runs again as soon as the loading
//! slices made its parts ready, or answers `LOADING ...` past its timeout.

use std::time::{Duration, Instant};

use redis_module::Context;

use super::{with_registry, Registry};
use crate::core::index::{parts_of, Part};
use crate::core::query::Query;
use crate::core::types::Bytes;
use crate::error::CrmError;
use crate::ffi::block::{self, Blocked};
use crate::ffi::selected_db;
use crate::store::access::{reader, ReadPatterns, Reader};

/// A blocked client and what it waits for.
pub(super) struct Waiter {
    key: (i32, Bytes),
    parts: Vec<Part>,
    /// The calling user and its read patterns: once the parts are loaded, the client waits
    /// until the user's reads of the meeting hashes are known too.
    user: Option<(Bytes, ReadPatterns)>,
    /// Past it the client is answered `LOADING ...` (`crm.index-wait-ms`).
    until: Instant,
    /// Dropping it wakes the client.
    client: Blocked,
}

/// Blocks the caller until the index has every part `query` reads (and, for a restricted
/// user, knows whether it may read every meeting hash), for at most `timeout`.
pub fn wait(ctx: &Context, query: &Query, timeout: Duration) -> Result<(), CrmError> {
    let key = (selected_db(ctx)?, query.installation.clone());
    let until = Instant::now() + timeout;
    let user = match reader(ctx)? {
        Reader::Everything => None,
        Reader::User { name, patterns } => Some((name, patterns)),
    };
    let client = block::block(ctx)?;
    with_registry(|registry| {
        registry.figures.waits += 1;
        registry.waiters.push(Waiter {
            key,
            parts: parts_of(query),
            user,
            until,
            client,
        });
        registry.arm_timer(ctx);
    });
    Ok(())
}

/// The answer of a client whose wait passed its timeout: the loading progress, to retry.
pub fn timed_out(ctx: &Context, installation: &[u8]) -> CrmError {
    let key = selected_db(ctx).ok().map(|db| (db, installation.to_vec()));
    with_registry(|registry| registry.loading_error(key.as_ref(), installation))
}

/// The error of a query that may not wait (inside MULTI/EXEC or a script) while its
/// installation's index loads.
pub fn loading_error(ctx: &Context, installation: &[u8]) -> CrmError {
    let key = selected_db(ctx).ok().map(|db| (db, installation.to_vec()));
    with_registry(|registry| {
        registry.figures.loading_errors += 1;
        registry.loading_error(key.as_ref(), installation)
    })
}

impl Registry {
    fn loading_error(&self, key: Option<&(i32, Bytes)>, installation: &[u8]) -> CrmError {
        let progress = key
            .and_then(|key| self.entries.get(key))
            .map_or_else(|| "starting".to_string(), |entry| entry.index.progress());
        CrmError::Loading {
            installation: installation.to_vec(),
            progress,
        }
    }

    pub(super) fn has_waiters(&self, key: &(i32, Bytes)) -> bool {
        self.waiters.iter().any(|waiter| &waiter.key == key)
    }

    /// Wakes the clients whose parts are ready, or whose index is gone or has nothing left
    /// to load (their query runs again and finds its own way). Called by the loading
    /// slices only: a woken client runs when this turn of the event loop ends, and no other
    /// client's command (a write making a part stale again) comes in between.
    pub(super) fn wake_ready(&mut self) {
        // Those past their timeout are answered `LOADING ...` (see `ffi::block`).
        let now = Instant::now();
        let (late, waiting): (Vec<Waiter>, Vec<Waiter>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|waiter| waiter.until <= now);
        self.figures.wait_timeouts += late.len() as u64;
        late.into_iter().for_each(|waiter| waiter.client.time_out());
        self.waiters = waiting;
        let entries = &mut self.entries;
        self.waiters.retain(|waiter| {
            let Some(entry) = entries.get_mut(&waiter.key) else {
                return false;
            };
            if !entry.index.is_ready(&waiter.parts) {
                return entry.index.has_work();
            }
            waiter
                .user
                .as_ref()
                .is_some_and(|(user, patterns)| entry.checking(user, patterns))
        });
    }
}
