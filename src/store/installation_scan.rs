//! Finding every meeting id an installation's keys mention, in resumable steps: first the
//! keyspace (for the value sets of each filter field, and the meeting hashes or sort
//! indexes when their names carry the installation), then the members of each set found.
//! Each step does a bounded amount of work, so the caller can hand the server back
//! between steps.

use std::collections::HashMap;
use std::time::Instant;

use redis_module::Context;

use super::keys::{KeyTemplates, Placeholder};
use super::redis_key::{scan_keyspace_step, ReadKey, ScanCursor};
use crate::core::query::Bytes;
use crate::core::write::Schema;
use crate::error::{CrmError, KeyKind};

/// Where an id was found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub in_meetings_set: bool,
    /// `(filter field index, value)` of each value set listing it.
    pub listed: Vec<(usize, Bytes)>,
}

#[derive(Debug, Clone)]
enum Source {
    MeetingsSet,
    ValueSet(usize, Bytes),
    /// A per-installation sort index; its members are ids through `crm.sort-member`.
    SortIndex,
}

enum Phase {
    Keyspace(ScanCursor),
    Members(Option<(Bytes, Source, ScanCursor)>),
    Done,
}

pub struct InstallationScan {
    installation: Bytes,
    keys: KeyTemplates,
    schema: Schema,
    phase: Phase,
    /// Keys still to read members from.
    pending: Vec<(Bytes, Source)>,
    /// Every id found, in the order found, and where; `index` finds an id's entry.
    listings: Vec<(Bytes, Listing)>,
    index: HashMap<Bytes, usize>,
}

impl InstallationScan {
    pub fn new(installation: Bytes, keys: KeyTemplates, schema: Schema) -> Result<Self, CrmError> {
        let installation_slot = |slot| match slot {
            Placeholder::Installation => installation.as_slice(),
            _ => b"",
        };
        let mut pending = vec![(keys.meetings.render(installation_slot), Source::MeetingsSet)];
        if keys.sort.has(Placeholder::Installation) {
            for field in &schema.sort_fields {
                let key = keys.sort.render(|slot| match slot {
                    Placeholder::Installation => installation.as_slice(),
                    Placeholder::Field => field,
                    _ => b"",
                });
                pending.push((key, Source::SortIndex));
            }
        }
        Ok(InstallationScan {
            installation,
            keys,
            schema,
            phase: Phase::Keyspace(ScanCursor::new()?),
            pending,
            listings: Vec::new(),
            index: HashMap::new(),
        })
    }

    /// Works until `deadline` or until done; `Ok(true)` when done.
    pub fn step(&mut self, ctx: &Context, deadline: Instant) -> Result<bool, CrmError> {
        let mut found = Vec::new();
        loop {
            match &mut self.phase {
                Phase::Done => return Ok(true),
                Phase::Keyspace(cursor) => {
                    found.clear();
                    let more = scan_keyspace_step(ctx, cursor, &mut found)?;
                    for key in found.drain(..) {
                        self.classify(key);
                    }
                    if !more {
                        self.phase = Phase::Members(None);
                    }
                }
                Phase::Members(current) => {
                    let Some((key, source, cursor)) = current else {
                        match self.pending.pop() {
                            Some((key, source)) => {
                                *current = Some((key, source, ScanCursor::new()?))
                            }
                            None => self.phase = Phase::Done,
                        }
                        continue;
                    };
                    let handle = ReadKey::open(ctx, key)?;
                    let kind = match source {
                        Source::SortIndex => KeyKind::SortedSet,
                        _ => KeyKind::Set,
                    };
                    handle.expect(kind)?;
                    found.clear();
                    let more = handle.scan_step(cursor, &mut found)?;
                    let source = source.clone();
                    if !more {
                        *current = None;
                    }
                    for member in std::mem::take(&mut found) {
                        self.record(member, &source);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    /// The ids found, in the order found, with where each was listed. (Not sorted: a
    /// sort of a million ids would hold the server in one step.)
    pub fn into_listings(self) -> Vec<(Bytes, Listing)> {
        self.listings
    }

    /// The entry of `id`, added when new. (`None` cannot happen: positions come from
    /// pushes; the Option only spares an index that could panic.)
    fn entry(&mut self, id: Bytes) -> Option<&mut Listing> {
        let position = match self.index.get(&id) {
            Some(&position) => position,
            None => {
                self.index.insert(id.clone(), self.listings.len());
                self.listings.push((id, Listing::default()));
                self.listings.len() - 1
            }
        };
        self.listings.get_mut(position).map(|(_, listing)| listing)
    }

    /// Queues a key of the keyspace when it is one of the installation's value sets, or
    /// records the id when it is one of its meeting hashes.
    fn classify(&mut self, key: Bytes) {
        let installation = self.installation.as_slice();
        for (index, field) in self.schema.filter_fields.iter().enumerate() {
            let known = |slot| match slot {
                Placeholder::Installation => installation,
                Placeholder::Field => field.as_slice(),
                _ => b"",
            };
            if let Some(value) = self.keys.filter.capture(&key, Placeholder::Value, known) {
                self.pending.push((key, Source::ValueSet(index, value)));
                return;
            }
        }
        if self.keys.meeting.has(Placeholder::Installation) {
            let known = |slot| match slot {
                Placeholder::Installation => installation,
                _ => b"",
            };
            if let Some(id) = self.keys.meeting.capture(&key, Placeholder::Id, known) {
                self.entry(id);
            }
        }
    }

    fn record(&mut self, member: Bytes, source: &Source) {
        match source {
            Source::MeetingsSet => {
                if let Some(listing) = self.entry(member) {
                    listing.in_meetings_set = true;
                }
            }
            Source::ValueSet(index, value) => {
                if let Some(listing) = self.entry(member) {
                    listing.listed.push((*index, value.clone()));
                }
            }
            Source::SortIndex => {
                let installation = self.installation.as_slice();
                let known = |slot| match slot {
                    Placeholder::Installation => installation,
                    _ => b"",
                };
                if let Some(id) = self
                    .keys
                    .sort_member
                    .capture(&member, Placeholder::Id, known)
                {
                    self.entry(id);
                }
            }
        }
    }
}
