//! What the core needs from storage, in the core's own terms. `store::keyspace` implements it
//! on the Redis keyspace; `core::memory` implements it in memory for unit tests. Calls take
//! whole batches of ids, so that an implementation can keep its keys open across a batch.

use super::types::{Bytes, Effect, SetRef};
use crate::error::CrmError;

/// The hash fields of one meeting that decide whether and where it is shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeetingRow {
    pub client: Option<Bytes>,
    /// The sort field read from the hash, when the query sorts by a hash field.
    pub sort_value: Option<Bytes>,
}

/// What the index keeps of a meeting's hash.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IndexRow {
    pub client: Option<Bytes>,
    /// Whether the hash or one of its fields has a TTL (the index then checks it before
    /// each answer).
    pub expires: bool,
}

pub trait MeetingStore {
    /// Number of members; 0 when the set does not exist.
    fn set_len(&self, set: SetRef<'_>) -> Result<usize, CrmError>;

    /// The members, possibly with repeats (a scan may return an element twice).
    fn set_members(&self, set: SetRef<'_>) -> Result<Vec<Bytes>, CrmError>;

    /// For each id, whether it is a member.
    fn set_contains_each(&self, set: SetRef<'_>, ids: &[Bytes]) -> Result<Vec<bool>, CrmError>;

    /// Whether the sort field has a sorted set (`false` when there is no such key).
    fn has_sort_index(&self, installation: &[u8], field: &[u8]) -> Result<bool, CrmError>;

    /// Each id's score in the sort field's sorted set.
    fn sort_scores(
        &self,
        installation: &[u8],
        field: &[u8],
        ids: &[Bytes],
    ) -> Result<Vec<Option<f64>>, CrmError>;

    /// Each meeting's row; `None` where the meeting has no hash. `sort_field`, when given,
    /// is read from the hash too.
    fn meeting_rows(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        sort_field: Option<&[u8]>,
    ) -> Result<Vec<Option<MeetingRow>>, CrmError>;

    /// The values of `fields` of each meeting (all `None` where it has no hash).
    fn fields(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
    ) -> Result<Vec<Vec<Option<Bytes>>>, CrmError>;
}

/// What the write commands need on top of reading.
pub trait MeetingWriter {
    /// Each meeting's `fields` as stored, in order; `None` where it has no hash.
    fn stored_fields(
        &self,
        installation: &[u8],
        ids: &[Bytes],
        fields: &[&[u8]],
    ) -> Result<Vec<Option<Vec<Option<Bytes>>>>, CrmError>;

    /// Applies the effects of writes to meetings of one installation (each meeting once), as
    /// one step. Every key they touch is checked first, so a key of the wrong type fails the
    /// writes before anything changes.
    fn apply(&self, installation: &[u8], writes: &[(&[u8], &[Effect])]) -> Result<(), CrmError>;
}

/// What the in-memory index reads on top of a query's reads: sets and sort ZSETs in
/// resumable steps, so that loading a big one never holds the server for long.
pub trait IndexSource: MeetingStore {
    /// Where a scan stopped; a scan restarted from a fresh cursor reads everything again.
    type Cursor;

    fn cursor(&self) -> Result<Self::Cursor, CrmError>;

    /// Each meeting's row for the index; `None` where the meeting has no hash.
    fn index_rows(
        &self,
        installation: &[u8],
        ids: &[Bytes],
    ) -> Result<Vec<Option<IndexRow>>, CrmError>;

    /// Appends some members of the set to `out`; `false` once the scan is complete.
    fn scan_set(
        &self,
        set: SetRef<'_>,
        cursor: &Self::Cursor,
        out: &mut Vec<Bytes>,
    ) -> Result<bool, CrmError>;
}
