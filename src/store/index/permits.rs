//! Restricted users: the index holds every meeting's client, so a user whose ACL limits
//! the keys it reads is answered from it only once it is known to read the hash of every
//! meeting the index holds (the keyspace path reads the hash of each candidate, and a
//! denied one gives NOPERM: such a user keeps the keyspace path, which names the key).
//! The keys a query names are checked on every query, as the keyspace path checks them.
//!
//! Proven at once where the user's key patterns cover the meeting key's text before
//! `<id>` (`~meeting:*`, `%R~{10}:*`); otherwise each hash's name is checked
//! (`RM_ACLCheckKeyPermissions`) in bounded slices, once per user, index and ACL change,
//! and then for each meeting the index learns of.

use std::time::{Duration, Instant};

use redis_module::{Context, ContextFlags};

use super::answer::Route;
use super::loading::QUERY_BUDGET;
use super::{Entry, Registry};
use crate::core::types::Bytes;
use crate::error::CrmError;
use crate::ffi::string::ModuleString;
use crate::ffi::user::{ModuleUser, Need};
use crate::store::access::{acl_generation, ReadPatterns, Reader};

/// Meeting hashes checked between two looks at the clock.
const CHECKS_PER_LOOK: u32 = 256;
/// The most a woken client's run spends checking (the loading slices did the rest;
/// hundreds of woken clients may run back to back).
const RESUMED_CHECKS: Duration = Duration::from_micros(100);

/// How far one user's permission over an index's meeting hashes is known.
#[derive(Debug, Default)]
pub(super) struct Permit {
    /// The ACL generation the checks were made under.
    generation: u64,
    /// Ordinals below it were checked and may be read.
    checked: u32,
    denied: bool,
}

/// Whether a user may read every meeting hash of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permission {
    Granted,
    /// Some meeting's hash is denied: the keyspace path answers (with its NOPERM).
    Denied,
    /// Not all checked yet (until the deadline).
    Checking,
}

impl Entry {
    /// `None` when the caller may read the index (no user, or one that may read every
    /// meeting hash); otherwise the route its query takes: the keyspace path (a hash is
    /// denied, or inside MULTI/EXEC without a proof) or, while the check goes on, the
    /// wait for it (`Route::Loading`). `may_load`: the query may check for up to 2 ms.
    pub(super) fn route_for(
        &mut self,
        ctx: &Context,
        reader: &Reader,
        may_load: bool,
    ) -> Result<Option<Route>, CrmError> {
        let Reader::User { name, patterns } = reader else {
            return Ok(None);
        };
        let permission = if ctx.get_flags().contains(ContextFlags::MULTI) {
            // An ACL command earlier in the same transaction is not seen: only what the
            // patterns prove holds here.
            if !self.proven(patterns) {
                return Ok(Some(Route::Keyspace(
                    "inside MULTI/EXEC a restricted user's meeting hashes are checked key by key",
                )));
            }
            Permission::Granted
        } else {
            let budget = if may_load {
                QUERY_BUDGET
            } else {
                RESUMED_CHECKS
            };
            self.permission(name, patterns, Instant::now() + budget)?
        };
        Ok(match permission {
            Permission::Granted => None,
            Permission::Denied => Some(Route::Keyspace(
                "the user's ACL denies the hash of a meeting the index holds",
            )),
            Permission::Checking => Some(Route::Loading),
        })
    }

    /// What `user` (with `patterns`) may read of the index's meeting hashes, checking until
    /// `deadline` what is not known yet.
    fn permission(
        &mut self,
        user: &[u8],
        patterns: &ReadPatterns,
        deadline: Instant,
    ) -> Result<Permission, CrmError> {
        if self.proven(patterns) {
            return Ok(Permission::Granted);
        }
        let Some((before, after)) = &self.meeting_key else {
            return Ok(Permission::Denied);
        };
        let generation = acl_generation();
        let permit = self.permits.entry(user.to_vec()).or_default();
        if permit.generation != generation {
            *permit = Permit {
                generation,
                ..Permit::default()
            };
        }
        let known = u32::try_from(self.index.meetings()).unwrap_or(u32::MAX);
        if permit.denied || permit.checked >= known {
            return Ok(settled(permit));
        }
        let Some(handle) = ModuleUser::find(user)? else {
            permit.denied = true;
            return Ok(Permission::Denied);
        };
        let mut key = Vec::new();
        while permit.checked < known {
            let ordinal = permit.checked;
            key.clear();
            key.extend_from_slice(before);
            key.extend_from_slice(self.index.id(ordinal));
            key.extend_from_slice(after);
            if !handle.may(&ModuleString::new(&key)?, Need::Read)? {
                permit.denied = true;
                return Ok(Permission::Denied);
            }
            permit.checked += 1;
            if permit.checked.is_multiple_of(CHECKS_PER_LOOK) && Instant::now() >= deadline {
                break;
            }
        }
        Ok(if permit.checked >= known {
            Permission::Granted
        } else {
            Permission::Checking
        })
    }

    /// Whether `patterns` prove at once that every meeting hash may be read.
    fn proven(&self, patterns: &ReadPatterns) -> bool {
        self.meeting_key
            .as_ref()
            .is_some_and(|(before, _)| patterns.cover_prefix(before))
    }

    /// Whether `user`'s reads of the meeting hashes are still being checked; starts the
    /// check (the loading slices go on with it) when none is under way.
    pub(super) fn checking(&mut self, user: &[u8], patterns: &ReadPatterns) -> bool {
        matches!(
            self.permission(user, patterns, Instant::now()),
            Ok(Permission::Checking)
        )
    }

    /// The users whose checks began under the current ACL and are not done.
    fn users_checking(&self) -> impl Iterator<Item = &Bytes> {
        let generation = acl_generation();
        self.permits
            .iter()
            .filter(move |(_, permit)| permit.generation == generation && self.unsettled(permit))
            .map(|(user, _)| user)
    }

    fn unsettled(&self, permit: &Permit) -> bool {
        let known = u32::try_from(self.index.meetings()).unwrap_or(u32::MAX);
        !permit.denied && permit.checked < known
    }
}

impl Registry {
    /// Goes on checking, until `deadline`, the meeting hashes of users whose check a query
    /// began (a blocked client waits for it; a script's query finds it done next time).
    pub(super) fn check_permits(&mut self, deadline: Instant) {
        for entry in self.entries.values_mut() {
            let users: Vec<Bytes> = entry.users_checking().cloned().collect();
            for user in users {
                if Instant::now() >= deadline {
                    return;
                }
                // An error (no memory for a key name) leaves the check to the next query.
                let _ = entry.permission(&user, &ReadPatterns::default(), deadline);
            }
        }
    }

    /// Whether a check is under way.
    pub(super) fn permits_pending(&self) -> bool {
        self.entries
            .values()
            .any(|entry| entry.users_checking().next().is_some())
    }
}

fn settled(permit: &Permit) -> Permission {
    if permit.denied {
        Permission::Denied
    } else {
        Permission::Granted
    }
}
