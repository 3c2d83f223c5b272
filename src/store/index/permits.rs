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

use std::time::Instant;

use super::Entry;
use crate::error::CrmError;
use crate::ffi::string::ModuleString;
use crate::ffi::user::{ModuleUser, Need};
use crate::store::access::{acl_generation, ReadPatterns};

/// Meeting hashes checked between two looks at the clock.
const CHECKS_PER_LOOK: u32 = 256;

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
pub enum Permission {
    Granted,
    /// Some meeting's hash is denied: the keyspace path answers (with its NOPERM).
    Denied,
    /// Not all checked yet (until the deadline).
    Checking,
}

impl Entry {
    /// What `user` (with `patterns`) may read of the index's meeting hashes, checking until
    /// `deadline` what is not known yet.
    pub(super) fn permission(
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
    pub(super) fn proven(&self, patterns: &ReadPatterns) -> bool {
        self.meeting_key
            .as_ref()
            .is_some_and(|(before, _)| patterns.cover_prefix(before))
    }

    /// Whether `user`'s permission is known (granted or denied) under the current ACL.
    pub(super) fn permission_settled(&self, user: &[u8]) -> bool {
        let known = u32::try_from(self.index.meetings()).unwrap_or(u32::MAX);
        self.permits.get(user).is_some_and(|permit| {
            permit.generation == acl_generation() && (permit.denied || permit.checked >= known)
        })
    }
}

fn settled(permit: &Permit) -> Permission {
    if permit.denied {
        Permission::Denied
    } else {
        Permission::Granted
    }
}
