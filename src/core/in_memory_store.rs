//! An in-memory store with the keyspace's shape, for unit tests and fuzz targets of the core.

use std::cell::RefCell;
use std::collections::HashMap;

use super::store::{IndexRow, IndexSource, MeetingRow, MeetingStore};
use super::types::{Bytes, SetRef};
use crate::error::CrmError;

#[derive(Debug, Default, Clone)]
pub struct InMemoryStore {
    /// `(installation, field, value)` to meeting ids.
    pub filter_sets: HashMap<(Bytes, Bytes, Bytes), Vec<Bytes>>,
    /// installation to meeting ids.
    pub meeting_sets: HashMap<Bytes, Vec<Bytes>>,
    /// user to client ids.
    pub user_clients: HashMap<Bytes, Vec<Bytes>>,
    /// meeting id to its hash fields.
    pub meetings: HashMap<Bytes, HashMap<Bytes, Bytes>>,
    /// sort field to (meeting id to score).
    pub sort_indexes: HashMap<Bytes, HashMap<Bytes, f64>>,
    /// Members an index scan returns per step; 0: all at once.
    pub scan_step: usize,
}

/// A scan's position: the last member returned. Members are scanned in byte order, so a
/// member present during the whole scan is returned once, as SSCAN promises; one added or
/// removed meanwhile may or may not be.
pub type InMemoryCursor = RefCell<Option<Bytes>>;

fn b(text: &str) -> Bytes {
    text.as_bytes().to_vec()
}

impl InMemoryStore {
    pub fn filter(&mut self, installation: &str, field: &str, value: &str, ids: &[&str]) {
        let key = (b(installation), b(field), b(value));
        self.filter_sets
            .insert(key, ids.iter().map(|id| b(id)).collect());
    }

    pub fn clients(&mut self, user: &str, clients: &[&str]) {
        self.user_clients
            .insert(b(user), clients.iter().map(|c| b(c)).collect());
    }

    pub fn meeting(&mut self, id: &str, fields: &[(&str, &str)]) {
        let hash = fields.iter().map(|(f, v)| (b(f), b(v))).collect();
        self.meetings.insert(b(id), hash);
    }

    pub fn score(&mut self, field: &str, id: &str, score: f64) {
        self.sort_indexes
            .entry(b(field))
            .or_default()
            .insert(b(id), score);
    }

    fn members(&self, set: SetRef<'_>) -> Option<&Vec<Bytes>> {
        match set {
            SetRef::Filter {
                installation,
                field,
                value,
            } => self
                .filter_sets
                .get(&(installation.to_vec(), field.to_vec(), value.to_vec())),
            SetRef::Meetings { installation } => self.meeting_sets.get(installation),
            SetRef::VisibleClients { user, .. } => self.user_clients.get(user),
        }
    }
}

impl MeetingStore for InMemoryStore {
    fn set_len(&self, set: SetRef<'_>) -> Result<usize, CrmError> {
        Ok(self.members(set).map_or(0, Vec::len))
    }

    fn set_members(&self, set: SetRef<'_>) -> Result<Vec<Bytes>, CrmError> {
        Ok(self.members(set).cloned().unwrap_or_default())
    }

    fn set_contains_each(&self, set: SetRef<'_>, ids: &[Bytes]) -> Result<Vec<bool>, CrmError> {
        let members = self.members(set);
        Ok(ids
            .iter()
            .map(|id| members.is_some_and(|m| m.contains(id)))
            .collect())
    }

    fn has_sort_index(&self, _installation: &[u8], field: &[u8]) -> Result<bool, CrmError> {
        Ok(self.sort_indexes.contains_key(field))
    }

    fn sort_scores(
        &self,
        _installation: &[u8],
        field: &[u8],
        ids: &[Bytes],
    ) -> Result<Vec<Option<f64>>, CrmError> {
        let index = self.sort_indexes.get(field);
        Ok(ids
            .iter()
            .map(|id| index.and_then(|scores| scores.get(id).copied()))
            .collect())
    }

    fn meeting_rows(
        &self,
        _installation: &[u8],
        ids: &[Bytes],
        sort_field: Option<&[u8]>,
    ) -> Result<Vec<Option<MeetingRow>>, CrmError> {
        Ok(ids
            .iter()
            .map(|id| {
                self.meetings.get(id).map(|hash| MeetingRow {
                    client: hash.get(b"clientid".as_slice()).cloned(),
                    sort_value: sort_field.and_then(|field| hash.get(field).cloned()),
                })
            })
            .collect())
    }

    fn fields(
        &self,
        _installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
    ) -> Result<Vec<Vec<Option<Bytes>>>, CrmError> {
        Ok(ids
            .iter()
            .map(|id| {
                let hash = self.meetings.get(id);
                fields
                    .iter()
                    .map(|field| hash.and_then(|hash| hash.get(*field).cloned()))
                    .collect()
            })
            .collect())
    }
}

impl InMemoryStore {
    /// The next members of `sorted` after the cursor; whether more remain.
    fn scan_next(&self, sorted: Vec<Bytes>, cursor: &InMemoryCursor, out: &mut Vec<Bytes>) -> bool {
        let mut last = cursor.borrow_mut();
        let rest: Vec<Bytes> = sorted
            .into_iter()
            .filter(|member| last.as_ref().is_none_or(|last| member > last))
            .collect();
        let take = match self.scan_step {
            0 => rest.len(),
            step => step.min(rest.len()),
        };
        out.extend(rest.iter().take(take).cloned());
        if let Some(member) = take.checked_sub(1).and_then(|at| rest.get(at)) {
            *last = Some(member.clone());
        }
        take < rest.len()
    }
}

impl IndexSource for InMemoryStore {
    type Cursor = InMemoryCursor;

    fn cursor(&self) -> Result<InMemoryCursor, CrmError> {
        Ok(RefCell::new(None))
    }

    fn index_rows(
        &self,
        installation: &[u8],
        ids: &[Bytes],
    ) -> Result<Vec<Option<IndexRow>>, CrmError> {
        let rows = self.meeting_rows(installation, ids, None)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.map(|row| IndexRow {
                    client: row.client,
                    expires: false,
                })
            })
            .collect())
    }

    fn scan_set(
        &self,
        set: SetRef<'_>,
        cursor: &InMemoryCursor,
        out: &mut Vec<Bytes>,
    ) -> Result<bool, CrmError> {
        let mut members = self.set_members(set)?;
        members.sort();
        members.dedup();
        Ok(self.scan_next(members, cursor, out))
    }
}
