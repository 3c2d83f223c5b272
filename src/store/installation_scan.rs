//! Walking every meeting id an installation's keys mention, in bounded steps and bounded
//! memory. First the keyspace is scanned for the installation's value sets; then the
//! members of each source (its installation set, each value set, each per-installation
//! sort ZSET, and its meeting hashes when their names carry the installation) are read in
//! batches. An id is handed out once: from the first source that lists it, with every set
//! that lists it. Nothing grows with the installation but the list of value sets.

use std::time::Instant;

use redis_module::Context;

use super::access::Need;
use super::keys::{KeyRole, KeyTemplates, Placeholder};
use super::keyspace::KeyspaceStore;
use crate::core::store::MeetingStore;
use crate::core::types::{Bytes, SetRef};
use crate::core::write::Schema;
use crate::error::{CrmError, KeyKind};
use crate::ffi::key::{scan_keyspace_step, ScanCursor};

/// Ids handed out together; big enough that the membership checks (one SMISMEMBER per
/// set and batch) cost little per id, small enough that a batch takes well under 1 ms.
const BATCH: usize = 128;

/// Where an id was found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub in_meetings_set: bool,
    /// `(filter field index, value)` of each value set listing it.
    pub listed: Vec<(usize, Bytes)>,
}

/// A set of the installation: its installation set, or the set of one field value.
#[derive(Debug, Clone, PartialEq)]
enum Set {
    Meetings,
    Value(usize, Bytes),
}

enum Phase {
    /// Scanning the keyspace for value sets.
    Discover(ScanCursor),
    /// Reading source `source` (sets first, then sort ZSETs).
    Members {
        source: usize,
        cursor: ScanCursor,
    },
    /// Scanning the keyspace for meeting hashes named with the installation.
    Hashes(ScanCursor),
    Done,
}

pub struct InstallationScan {
    installation: Bytes,
    keys: KeyTemplates,
    schema: Schema,
    /// The installation set first, then every value set found.
    sets: Vec<Set>,
    /// Sort fields whose ZSET is per installation (their members are this installation's).
    sort_fields: Vec<Bytes>,
    /// What the caller must be allowed on every set found: a repair writes them.
    need: Need,
    phase: Phase,
}

impl InstallationScan {
    pub fn new(
        installation: Bytes,
        keys: KeyTemplates,
        schema: Schema,
        need: Need,
    ) -> Result<Self, CrmError> {
        let sort_fields = if keys.sort.has(Placeholder::Installation) {
            schema.sort_fields.clone()
        } else {
            Vec::new()
        };
        Ok(InstallationScan {
            installation,
            keys,
            schema,
            sets: vec![Set::Meetings],
            sort_fields,
            need,
            phase: Phase::Discover(ScanCursor::new()?),
        })
    }

    /// The next ids, each with its listing: `Some` (maybe empty, when the step only moved
    /// the scan on) until the walk is done, then `None`. Returns by `deadline` or after
    /// one bounded unit of work past it.
    pub fn next_batch(
        &mut self,
        ctx: &Context,
        store: &KeyspaceStore<'_>,
        deadline: Instant,
    ) -> Result<Option<Vec<(Bytes, Listing)>>, CrmError> {
        // The phase is taken out and put back (or moved on), so that the cursor it owns
        // can be used while `self` is read. An error ends the walk.
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Done => Ok(None),
            Phase::Discover(cursor) => {
                let mut names = Vec::new();
                let mut more = true;
                while more && Instant::now() < deadline {
                    more = scan_keyspace_step(ctx, &cursor, &mut names)?;
                }
                for name in names {
                    // A scan may return a key twice.
                    if let Some(set) = self.value_set(&name) {
                        if !self.sets.contains(&set) {
                            // Checked when found, so a repair the caller may not finish
                            // fails before its first write.
                            store.check_set(self.set_ref(&set), self.need)?;
                            self.sets.push(set);
                        }
                    }
                }
                self.phase = if more {
                    Phase::Discover(cursor)
                } else {
                    Phase::Members {
                        source: 0,
                        cursor: ScanCursor::new()?,
                    }
                };
                Ok(Some(Vec::new()))
            }
            Phase::Members { source, cursor } => {
                let mut members = Vec::new();
                let role = match self.sets.get(source) {
                    Some(Set::Meetings) => KeyRole::Meetings,
                    Some(Set::Value(..)) => KeyRole::Filter,
                    None => KeyRole::Sort,
                };
                let key = store.open(&self.source_key(source), role)?;
                key.exists_as(if source < self.sets.len() {
                    KeyKind::Set
                } else {
                    KeyKind::SortedSet
                })?;
                let mut more = true;
                while more && members.len() < BATCH && Instant::now() < deadline {
                    more = key.scan_step(&cursor, &mut members)?;
                }
                drop(key);
                self.phase = if more {
                    Phase::Members { source, cursor }
                } else if source + 1 < self.sets.len() + self.sort_fields.len() {
                    Phase::Members {
                        source: source + 1,
                        cursor: ScanCursor::new()?,
                    }
                } else if self.keys.meeting.has(Placeholder::Installation) {
                    Phase::Hashes(ScanCursor::new()?)
                } else {
                    Phase::Done
                };
                let ids = if source < self.sets.len() {
                    members
                } else {
                    members
                        .iter()
                        .filter_map(|member| self.member_id(member))
                        .collect()
                };
                self.listings(store, ids, source).map(Some)
            }
            Phase::Hashes(cursor) => {
                let mut names = Vec::new();
                let mut more = true;
                while more && names.len() < BATCH && Instant::now() < deadline {
                    more = scan_keyspace_step(ctx, &cursor, &mut names)?;
                }
                if more {
                    self.phase = Phase::Hashes(cursor);
                }
                let ids = names.iter().filter_map(|name| self.hash_id(name)).collect();
                let every_source = self.sets.len() + self.sort_fields.len();
                self.listings(store, ids, every_source).map(Some)
            }
        }
    }

    /// The listing of each id that no source before `source` lists.
    fn listings(
        &self,
        store: &KeyspaceStore<'_>,
        mut ids: Vec<Bytes>,
        source: usize,
    ) -> Result<Vec<(Bytes, Listing)>, CrmError> {
        ids.sort_unstable();
        ids.dedup();
        let installation = self.installation.as_slice();
        // Drop ids an earlier sort ZSET lists: they were handed out with it.
        for (index, field) in self.sort_fields.iter().enumerate() {
            if self.sets.len() + index >= source || ids.is_empty() {
                break;
            }
            let scores = store.sort_scores(installation, field, &ids)?;
            let mut scores = scores.into_iter();
            ids.retain(|_| scores.next().flatten().is_none());
        }
        let mut listings: Vec<(Bytes, Listing)> =
            ids.into_iter().map(|id| (id, Listing::default())).collect();
        for (index, set) in self.sets.iter().enumerate() {
            if listings.is_empty() {
                break;
            }
            let ids: Vec<Bytes> = listings.iter().map(|(id, _)| id.clone()).collect();
            let found = if index == source {
                vec![true; ids.len()]
            } else {
                store.set_contains_each(self.set_ref(set), &ids)?
            };
            let mut keep = Vec::with_capacity(listings.len());
            for ((id, mut listing), member) in listings.into_iter().zip(found) {
                if member && index < source {
                    continue; // handed out with an earlier set
                }
                if member {
                    match set {
                        Set::Meetings => listing.in_meetings_set = true,
                        Set::Value(field, value) => listing.listed.push((*field, value.clone())),
                    }
                }
                keep.push((id, listing));
            }
            listings = keep;
        }
        Ok(listings)
    }

    fn set_ref<'s>(&'s self, set: &'s Set) -> SetRef<'s> {
        match set {
            Set::Meetings => SetRef::Meetings {
                installation: &self.installation,
            },
            Set::Value(field, value) => SetRef::Filter {
                installation: &self.installation,
                field: self
                    .schema
                    .filter_fields
                    .get(*field)
                    .map_or(&[][..], Vec::as_slice),
                value,
            },
        }
    }

    /// The key of source `source`: a set, or a per-installation sort ZSET.
    fn source_key(&self, source: usize) -> Bytes {
        let installation = self.installation.as_slice();
        if let Some(set) = self.sets.get(source) {
            let set = self.set_ref(set);
            return match set {
                SetRef::Meetings { .. } => self.keys.meetings.render(|_| installation),
                SetRef::Filter { field, value, .. } => self.keys.filter.render(|slot| match slot {
                    Placeholder::Field => field,
                    Placeholder::Value => value,
                    _ => installation,
                }),
                SetRef::VisibleClients { .. } => Vec::new(),
            };
        }
        let field = source
            .checked_sub(self.sets.len())
            .and_then(|index| self.sort_fields.get(index))
            .map_or(&[][..], Vec::as_slice);
        self.keys.sort.render(|slot| match slot {
            Placeholder::Field => field,
            _ => installation,
        })
    }

    /// The value set a key of the keyspace is, if it is one of this installation's.
    fn value_set(&self, key: &[u8]) -> Option<Set> {
        let installation = self.installation.as_slice();
        self.schema
            .filter_fields
            .iter()
            .enumerate()
            .find_map(|(index, field)| {
                let known = |slot| match slot {
                    Placeholder::Field => field.as_slice(),
                    _ => installation,
                };
                let value = self.keys.filter.capture(key, Placeholder::Value, known)?;
                Some(Set::Value(index, value))
            })
    }

    fn member_id(&self, member: &[u8]) -> Option<Bytes> {
        let installation = self.installation.as_slice();
        self.keys
            .sort_member
            .capture(member, Placeholder::Id, |_| installation)
    }

    fn hash_id(&self, key: &[u8]) -> Option<Bytes> {
        let installation = self.installation.as_slice();
        self.keys
            .meeting
            .capture(key, Placeholder::Id, |_| installation)
    }
}
