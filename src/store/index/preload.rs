//! `crm.index-preload`: indexes built after a load (and when the setting changes) without
//! waiting for a query, so that the first queries after a restart, a failover or a full
//! sync find them ready or nearly. A preloaded index holds its default sort (or, without
//! that sorted set, the installation's set of meetings), and so every meeting's row;
//! filter values and users load with the first query that names them.
//!
//! `all` finds the installations in database 0 by scanning the keyspace for their sets of
//! meetings (`crm.meetings-key`), a batch of keys per loading slice.

use std::time::Instant;

use redis_module::Context;

use super::{with_registry, Registry};
use crate::core::index::{Part, SetName};
use crate::core::query::DEFAULT_SORT_FIELD;
use crate::core::types::Bytes;
use crate::error::CrmError;
use crate::ffi::key::{scan_keyspace_step, ScanCursor};
use crate::ffi::select_db;
use crate::store::access::KeyGuard;
use crate::store::keys::{strip, KeyTemplates, Placeholder};
use crate::store::keyspace::KeyspaceStore;

/// The database preloaded indexes are built in.
const PRELOAD_DB: i32 = 0;
/// Installations registered per slice at most.
const PER_SLICE: usize = 64;

/// Which installations to preload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preload {
    /// Every installation with a set of meetings in database 0.
    All,
    /// These (none when empty).
    Installations(Vec<Bytes>),
}

/// Preloading under way, with the templates in force when it started.
pub(super) struct Preloading {
    templates: KeyTemplates,
    step: Step,
}

enum Step {
    /// Installations named, to be registered.
    Named(Vec<Bytes>),
    /// Scanning the keyspace for sets of meetings.
    Discovering(ScanCursor),
}

/// Starts preloading `preload` (after a load, or a change of the setting); an empty list
/// ends a preloading under way.
pub fn start(preload: Preload, templates: KeyTemplates) {
    let step = match preload {
        Preload::Installations(names) if names.is_empty() => None,
        Preload::Installations(names) => Some(Step::Named(names)),
        Preload::All => ScanCursor::new().ok().map(Step::Discovering),
    };
    let preloading = step.map(|step| Preloading { templates, step });
    with_registry(|registry| {
        registry.preloading = preloading;
        if registry.preloading.is_some() {
            registry.arm_soon();
        }
    });
}

impl Registry {
    /// One step of preloading, inside a loading slice: registers named installations, or
    /// scans a batch of keys for more, until `deadline`.
    pub(super) fn preload_step(
        &mut self,
        ctx: &Context,
        deadline: Instant,
    ) -> Result<(), CrmError> {
        let Some(Preloading { templates, step }) = self.preloading.take() else {
            return Ok(());
        };
        // `crm.index no` ends it: the one check, wherever the preload started and however
        // the setting changed (a module argument at load runs no callback).
        if !(self.enabled)() {
            return Ok(());
        }
        select_db(ctx, PRELOAD_DB)?;
        let mut found = Vec::new();
        match step {
            Step::Named(mut names) => {
                let rest = names.split_off(names.len().min(PER_SLICE));
                found = names;
                if !rest.is_empty() {
                    self.preloading = Some(Preloading {
                        templates: templates.clone(),
                        step: Step::Named(rest),
                    });
                }
            }
            Step::Discovering(cursor) => {
                let around = templates
                    .meetings
                    .around(Placeholder::Installation, |_| b"");
                let mut keys = Vec::new();
                let mut more = true;
                // A few installations a slice: each is registered (its keys opened) below.
                while more && found.len() < PER_SLICE && Instant::now() < deadline {
                    keys.clear();
                    more = scan_keyspace_step(ctx, &cursor, &mut keys)?;
                    if let Some((before, after)) = &around {
                        found.extend(
                            keys.iter()
                                .filter_map(|key| strip(key, before, after))
                                .map(<[u8]>::to_vec),
                        );
                    }
                }
                if more {
                    self.preloading = Some(Preloading {
                        templates: templates.clone(),
                        step: Step::Discovering(cursor),
                    });
                }
            }
        }
        for installation in found {
            let key = (PRELOAD_DB, installation);
            let Ok(guard) = KeyGuard::new(ctx, None, &key.1) else {
                continue;
            };
            let store = KeyspaceStore::new(ctx, templates.clone(), guard);
            // The installation's set names its meetings (each row is then read), and the
            // default sort's scores are read for them.
            let parts = [
                Part::Set(SetName::Meetings),
                Part::Sort(DEFAULT_SORT_FIELD.to_vec()),
            ];
            if self.entry_for(&key, &store)?.is_some() {
                self.register(ctx, &store, &key, &parts)?;
            }
        }
        Ok(())
    }
}
