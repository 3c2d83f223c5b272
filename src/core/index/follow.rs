//! Following changes: CRM writes applied directly, and what the glue reports (a part's key
//! or a meeting's hash changed behind the index's back).

use super::{order_key, set_ref, Index, Load, Part, SetName, SortData};
use crate::core::store::IndexSource;
use crate::core::types::{Bytes, Effect, SetRef};
use crate::error::CrmError;

impl<C> Index<C> {
    /// The part's key changed in a way the index cannot follow: read it again.
    pub fn mark_stale(&mut self, part: &Part) {
        let load = match part {
            Part::Set(name) => self.sets.get_mut(name).map(|p| &mut p.load),
            Part::Sort(field) => self.sorts.get_mut(field).map(|p| &mut p.load),
            Part::Clients(user) => {
                self.visible.remove(user);
                self.users.get_mut(user).map(|p| &mut p.load)
            }
        };
        if let Some(load) = load {
            if !matches!(load, Load::Stale) {
                self.counters.partial_rebuilds += 1;
            }
            *load = Load::Stale;
        }
    }

    /// The meeting's hash changed: its row is read again before the next answer.
    pub fn meeting_changed(&mut self, id: &[u8]) {
        if let Some(ordinal) = self.ordinals.get(id) {
            self.rows_pending.insert(ordinal);
        }
    }

    /// The meetings whose hash had a TTL when it was read: an expired hash is deleted only
    /// when touched, so they are checked before each answer.
    pub fn expiring(&self) -> Vec<Bytes> {
        self.expiring.iter().map(|o| self.id(o).to_vec()).collect()
    }

    pub fn expiring_count(&self) -> usize {
        self.expiring.len() as usize
    }

    /// Frees the cached visible meetings of every user (memory pressure).
    pub fn drop_visible_caches(&mut self) {
        self.visible.clear();
    }

    /// Applies a CRM write that has been applied to the keyspace: each part an effect names
    /// (see [`part_written`]) is updated; the meeting's row is read again (HSET merges into
    /// what is stored).
    pub fn apply_write(&mut self, id: &[u8], effects: &[Effect]) -> Result<(), CrmError> {
        let ordinal = self.ordinal(id)?;
        self.rows_pending.insert(ordinal);
        for effect in effects {
            let Some(part) = part_written(effect) else {
                continue;
            };
            match (part, effect) {
                (Part::Set(name), Effect::AddToValueSet { .. } | Effect::AddToMeetingsSet) => {
                    self.set_membership(&name, ordinal, true)
                }
                (Part::Set(name), _) => self.set_membership(&name, ordinal, false),
                (Part::Sort(field), Effect::SetSortScore { score, .. }) => {
                    self.sort_membership(&field, ordinal, Some(*score))
                }
                (Part::Sort(field), _) => self.sort_membership(&field, ordinal, None),
                (Part::Clients(_), _) => {}
            }
        }
        Ok(())
    }

    /// Members of a part's key changed (a command named them; it has run): each one is
    /// given what the key holds now. `ids` are meeting ids (a set or sort part) or client
    /// ids (a user's part). A part still scanning reads them again when its scan ends.
    pub fn members_changed<S: IndexSource>(
        &mut self,
        store: &S,
        part: &Part,
        ids: &[Bytes],
    ) -> Result<(), CrmError> {
        let installation = self.installation.clone();
        match part {
            Part::Set(name) => {
                let found = store.set_contains_each(set_ref(&installation, name), ids)?;
                for (id, member) in ids.iter().zip(found) {
                    // An id the index does not know and the key does not hold changes
                    // nothing: no ordinal is made for it.
                    if let Some(ordinal) = self.known_or_new(id, member)? {
                        self.set_membership(name, ordinal, member);
                    }
                }
            }
            Part::Sort(field) => {
                // Only the index's own meetings: a shared sorted set's others are not its.
                let (ordinals, ids): (Vec<u32>, Vec<Bytes>) = ids
                    .iter()
                    .filter_map(|id| Some((self.ordinals.get(id)?, id.clone())))
                    .unzip();
                let scores = store.sort_scores(&installation, field, &ids)?;
                for (ordinal, score) in ordinals.into_iter().zip(scores) {
                    self.sort_membership(field, ordinal, score);
                }
            }
            Part::Clients(user) => {
                let ready = self.users.get(user).is_some_and(|p| p.load.is_ready());
                if !ready {
                    // A scan of a user's set keeps no list of members changed meanwhile.
                    self.mark_stale(part);
                    return Ok(());
                }
                let set = SetRef::VisibleClients {
                    installation: &installation,
                    user,
                };
                let found = store.set_contains_each(set, ids)?;
                for (client, member) in ids.iter().zip(found) {
                    let ordinal = match member {
                        true => self.client_ordinal(client)?,
                        false => match self.clients.get(client) {
                            Some(ordinal) => ordinal,
                            None => continue,
                        },
                    };
                    if let Some(part) = self.users.get_mut(user) {
                        if member {
                            part.data.insert(ordinal);
                        } else {
                            part.data.remove(ordinal);
                        }
                    }
                }
                self.visible.remove(user);
            }
        }
        Ok(())
    }

    /// The ordinal of `id`, made when the key holds it (`present`); `None` for an id the
    /// index does not know and the key does not hold.
    fn known_or_new(&mut self, id: &[u8], present: bool) -> Result<Option<u32>, CrmError> {
        if present {
            self.ordinal(id).map(Some)
        } else {
            Ok(self.ordinals.get(id))
        }
    }

    fn set_membership(&mut self, name: &SetName, ordinal: u32, member: bool) {
        let Some(part) = self.sets.get_mut(name) else {
            return;
        };
        match &mut part.load {
            Load::Ready => {
                if member {
                    part.data.insert(ordinal);
                } else {
                    part.data.remove(ordinal);
                }
            }
            Load::Scanning(scan) => scan.touched.push(ordinal),
            Load::Stale => {}
        }
    }

    fn sort_membership(&mut self, field: &[u8], ordinal: u32, score: Option<f64>) {
        let Some(part) = self.sorts.get_mut(field) else {
            return;
        };
        match &mut part.load {
            Load::Ready => set_score(&mut part.data, ordinal, score),
            Load::Scanning(scan) => scan.touched.push(ordinal),
            Load::Stale => {}
        }
    }

    /// Moves a meeting to another client, in the client bitmaps and every cached set of
    /// visible meetings.
    pub(super) fn set_client(&mut self, ordinal: u32, client: u32) {
        let Some(slot) = self.client_of.get_mut(ordinal as usize) else {
            return;
        };
        let old = std::mem::replace(slot, client);
        if old == client {
            return;
        }
        if let Some(meetings) = self.client_meetings.get_mut(old as usize) {
            if let Ok(at) = meetings.binary_search(&ordinal) {
                meetings.remove(at);
                self.with_client -= 1;
            }
        }
        if let Some(meetings) = self.client_meetings.get_mut(client as usize) {
            if let Err(at) = meetings.binary_search(&ordinal) {
                meetings.insert(at, ordinal);
                self.with_client += 1;
            }
        }
        for (user, visible) in &mut self.visible {
            if let Some(user) = self.users.get(user) {
                if user.data.contains(client) {
                    visible.insert(ordinal);
                } else if user.data.contains(old) {
                    visible.remove(ordinal);
                }
            }
        }
    }
}

/// Sets or removes one meeting's score in a sort field's part.
pub(super) fn set_score(part: &mut SortData, ordinal: u32, score: Option<f64>) {
    let index = ordinal as usize;
    part.scores.grow_to(index + 1, f64::NAN);
    let Some(slot) = part.scores.get_mut(index) else {
        return;
    };
    let old = std::mem::replace(slot, score.unwrap_or(f64::NAN));
    if !old.is_nan() {
        part.order.remove(order_key(old), ordinal);
        part.scored.remove(ordinal);
    }
    if let Some(score) = score {
        let scores = &part.scores;
        let key_of = |o: u32| scores.get(o as usize).map_or(0, |&s| order_key(s));
        part.order.insert(order_key(score), ordinal, key_of);
        part.scored.insert(ordinal);
    }
}

/// The part an effect changes, which [`Index::apply_write`] updates directly; `None` for
/// the meeting's hash (its row is read again).
pub fn part_written(effect: &Effect) -> Option<Part> {
    match effect {
        Effect::AddToValueSet { field, value } | Effect::RemoveFromValueSet { field, value } => {
            Some(Part::Set(SetName::Value(field.clone(), value.clone())))
        }
        Effect::AddToMeetingsSet | Effect::RemoveFromMeetingsSet => {
            Some(Part::Set(SetName::Meetings))
        }
        Effect::SetSortScore { field, .. } | Effect::RemoveSortScore { field } => {
            Some(Part::Sort(field.clone()))
        }
        Effect::WriteHash(_) | Effect::DeleteHash => None,
    }
}
