//! Loading in bounded slices: a query loads for at most [`QUERY_BUDGET`] itself, then timer
//! slices of at most [`SLICE`] each load what waits, every index in turn, on the main
//! thread. Memory is measured as indexes grow and kept within the budget.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use redis_module::Context;

use super::{with_registry, Registry};
use crate::core::index::Index;
use crate::core::types::Bytes;
use crate::ffi::alloc::held_bytes;
use crate::ffi::hooks::run_soon;
use crate::ffi::{select_db, selected_db};
use crate::store::access::KeyGuard;
use crate::store::keyspace::KeyspaceStore;

/// The most a query spends loading before it takes the keyspace path instead.
pub(super) const QUERY_BUDGET: Duration = Duration::from_millis(2);
/// The most one timer slice of loading holds the server.
const SLICE: Duration = Duration::from_millis(3);
/// How long an installation whose index failed (it ran out of ordinals) waits before its
/// index is built again.
const FAILURE_REST: Duration = Duration::from_secs(1);
/// How long an installation over `crm.index-max-memory` waits before it is tried again.
pub(super) const MEMORY_REST: Duration = Duration::from_secs(60);

impl Registry {
    /// Makes sure a loading slice comes: at the next turn of the event loop (after the
    /// clients that are ready are served), or after a millisecond where the server cannot.
    pub(super) fn arm_timer(&mut self, ctx: &Context) {
        self.arm_soon();
        if !self.timer_armed {
            ctx.create_timer(Duration::from_millis(1), |ctx, ()| build_slice(ctx), ());
            self.timer_armed = true;
        }
    }

    /// [`Registry::arm_timer`] where no context is at hand; where the server cannot, the
    /// next query arms it.
    pub(super) fn arm_soon(&mut self) {
        if !self.timer_armed {
            self.timer_armed = run_soon(build_slice);
        }
    }

    pub(super) fn hold(&mut self, since: Instant) {
        let held = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.figures.longest_hold_us = self.figures.longest_hold_us.max(held);
    }

    /// Loads what waits in one entry until `deadline`; drops the entry when its memory
    /// passes the budget or its rows cannot be read, forgets a part that cannot be loaded.
    pub(super) fn refresh(
        &mut self,
        key: &(i32, Bytes),
        store: &KeyspaceStore,
        deadline: Instant,
    ) -> bool {
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
                self.remove_entry(key);
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
        if done {
            entry.index.shrink_to_fit(!entry.built);
        }
        if done && !entry.built {
            entry.built = true;
            self.figures.builds += 1;
            self.figures.last_build_ms =
                u64::try_from(entry.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
        self.check_memory(key);
        done
    }

    /// Keeps the indexes within the memory budget (`crm.index-max-memory`): first the
    /// cached visible meetings go, then this installation's index.
    pub(super) fn check_memory(&mut self, key: &(i32, Bytes)) {
        let budget = (self.max_memory)();
        if self.memory() <= budget {
            return;
        }
        for entry in self.entries.values_mut() {
            entry.index.drop_visible_caches();
        }
        if self.memory() > budget && self.remove_entry(key) {
            self.resting.insert(
                key.clone(),
                (Instant::now() + MEMORY_REST, "over crm.index-max-memory"),
            );
        }
    }

    /// Frees dropped indexes, a piece at a time, until `deadline`.
    fn free_released(&mut self, deadline: Instant) {
        while Instant::now() < deadline {
            let Some(index) = self.released.last_mut() else {
                break;
            };
            if !index.free_some() {
                self.released.pop();
            }
        }
        self.releasing_bytes = self.released.iter().map(Index::heap_bytes).sum();
    }

    /// The bytes the indexes hold: what the module's allocator counts (as `used_memory`
    /// does), less the dropped indexes not yet freed; an estimate where that allocator is
    /// not installed.
    pub(super) fn memory(&self) -> usize {
        match held_bytes() {
            0 => self
                .entries
                .values()
                .map(|entry| entry.index.heap_bytes())
                .sum(),
            held => held.saturating_sub(self.releasing_bytes),
        }
    }
}

/// One slice of loading for every index with work, then the next slice if work remains
/// or clients wait.
pub fn build_slice(ctx: &Context) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let started = Instant::now();
        let deadline = started + SLICE;
        let original_db = selected_db(ctx).unwrap_or(0);
        with_registry(|registry| {
            registry.timer_armed = false;
            let mut waiting: Vec<(i32, Bytes)> = registry
                .entries
                .iter()
                .filter(|(_, entry)| entry.index.has_work())
                .map(|(key, _)| key.clone())
                .collect();
            // Indexes clients wait for first (a preload of others must not delay them).
            waiting.sort_by_key(|key| !registry.has_waiters(key));
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
            registry.check_permits(deadline);
            // Preloading gets the time left, after the indexes that have work.
            if registry.preloading.is_some() && Instant::now() < deadline {
                // A failed step ends preloading; queries still build their indexes.
                let _ = registry.preload_step(ctx, deadline);
            }
            registry.free_released(deadline);
            registry.hold(started);
            registry.wake_ready();
            let work = registry
                .entries
                .values()
                .any(|entry| entry.index.has_work());
            if work
                || registry.permits_pending()
                || !registry.waiters.is_empty()
                || registry.preloading.is_some()
                || !registry.released.is_empty()
            {
                registry.arm_timer(ctx);
            }
        });
        let _ = select_db(ctx, original_db);
    }));
}
