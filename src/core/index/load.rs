//! Loading: every part in resumable scan steps under a deadline, then the rows of the
//! meetings the parts handed out. One loader serves every kind of part; a [`PartKind`]
//! says what is particular to each (where its members come from and what they become).

use std::time::{Duration, Instant};

use roaring::RoaringBitmap;

use super::follow::set_score;
use super::{set_ref, Index, Load, Loaded, PartMap, Scan, SetName, SortData, NO_CLIENT};
use crate::core::store::{IndexRow, IndexSource};
use crate::core::types::{Bytes, SetRef};
use crate::error::CrmError;

/// Meeting rows read per store call while loading.
const ROW_BATCH: usize = 128;

/// A deadline that also stops before a step that would likely pass it: the next step is
/// taken to cost as much as the longest one so far (a step reads a batch of members or
/// rows, up to a millisecond for a sorted set's), so a slice ends near its deadline, not
/// a step after it.
struct Pace {
    deadline: Instant,
    longest_step: Duration,
}

impl Pace {
    fn new(deadline: Instant) -> Self {
        Pace {
            deadline,
            longest_step: Duration::ZERO,
        }
    }

    /// Whether a step fits before the deadline.
    fn has_room(&self) -> bool {
        Instant::now() + self.longest_step < self.deadline
    }

    /// Records a step that began at `began`; whether another one fits.
    fn stepped(&mut self, began: Instant) -> bool {
        self.longest_step = self.longest_step.max(began.elapsed());
        self.has_room()
    }
}

/// What is particular to one kind of part while it loads.
trait PartKind<S: IndexSource> {
    type Name: Clone + Ord;
    type Data;
    /// What one scan step yields.
    type Item;

    fn parts(
        index: &mut Index<S::Cursor>,
    ) -> &mut PartMap<Self::Name, Loaded<S::Cursor, Self::Data>>;

    /// Forgets what was loaded, before a scan from the start.
    fn restart(
        index: &mut Index<S::Cursor>,
        store: &S,
        name: &Self::Name,
        data: &mut Self::Data,
    ) -> Result<(), CrmError>;

    /// Appends some members to `out`; `false` once the scan is complete.
    fn scan(
        store: &S,
        installation: &[u8],
        name: &Self::Name,
        cursor: &S::Cursor,
        out: &mut Vec<Self::Item>,
    ) -> Result<bool, CrmError>;

    fn absorb(
        index: &mut Index<S::Cursor>,
        data: &mut Self::Data,
        items: &[Self::Item],
    ) -> Result<(), CrmError>;

    /// Reads again the meetings a CRM write changed during the scan (it may or may not
    /// have seen the change).
    fn settle(
        index: &Index<S::Cursor>,
        store: &S,
        name: &Self::Name,
        data: &mut Self::Data,
        touched: &[u32],
    ) -> Result<(), CrmError>;
}

/// A value set or the installation's set: its members as ordinals.
struct Sets;
/// A sort field's sorted set: each member's score.
struct Sorts;
/// A user's clients set: client ordinals.
struct Users;

impl<S: IndexSource> PartKind<S> for Sets {
    type Name = SetName;
    type Data = RoaringBitmap;
    type Item = Bytes;

    fn parts(
        index: &mut Index<S::Cursor>,
    ) -> &mut PartMap<SetName, Loaded<S::Cursor, RoaringBitmap>> {
        &mut index.sets
    }

    fn restart(
        _: &mut Index<S::Cursor>,
        _: &S,
        _: &SetName,
        members: &mut RoaringBitmap,
    ) -> Result<(), CrmError> {
        members.clear();
        Ok(())
    }

    fn scan(
        store: &S,
        installation: &[u8],
        name: &SetName,
        cursor: &S::Cursor,
        out: &mut Vec<Bytes>,
    ) -> Result<bool, CrmError> {
        store.scan_set(set_ref(installation, name), cursor, out)
    }

    fn absorb(
        index: &mut Index<S::Cursor>,
        members: &mut RoaringBitmap,
        ids: &[Bytes],
    ) -> Result<(), CrmError> {
        for id in ids {
            members.insert(index.ordinal(id)?);
        }
        Ok(())
    }

    fn settle(
        index: &Index<S::Cursor>,
        store: &S,
        name: &SetName,
        members: &mut RoaringBitmap,
        touched: &[u32],
    ) -> Result<(), CrmError> {
        let ids: Vec<Bytes> = touched.iter().map(|&o| index.id(o).to_vec()).collect();
        let found = store.set_contains_each(set_ref(&index.installation, name), &ids)?;
        for (&ordinal, member) in touched.iter().zip(found) {
            if member {
                members.insert(ordinal);
            } else {
                members.remove(ordinal);
            }
        }
        Ok(())
    }
}

impl<S: IndexSource> PartKind<S> for Sorts {
    type Name = Bytes;
    type Data = SortData;
    type Item = ();

    fn parts(index: &mut Index<S::Cursor>) -> &mut PartMap<Bytes, Loaded<S::Cursor, SortData>> {
        &mut index.sorts
    }

    /// Every known meeting's score is to be read (see [`Index::read_scores`]).
    fn restart(
        index: &mut Index<S::Cursor>,
        _: &S,
        _: &Bytes,
        data: &mut SortData,
    ) -> Result<(), CrmError> {
        let mut pending = RoaringBitmap::new();
        pending.insert_range(0..u32::try_from(index.meetings()).unwrap_or(u32::MAX));
        *data = SortData {
            pending,
            ..SortData::default()
        };
        Ok(())
    }

    /// Nothing to walk: the scores are read by ordinal.
    fn scan(_: &S, _: &[u8], _: &Bytes, _: &S::Cursor, _: &mut Vec<()>) -> Result<bool, CrmError> {
        Ok(false)
    }

    fn absorb(_: &mut Index<S::Cursor>, _: &mut SortData, _: &[()]) -> Result<(), CrmError> {
        Ok(())
    }

    fn settle(
        index: &Index<S::Cursor>,
        store: &S,
        field: &Bytes,
        data: &mut SortData,
        touched: &[u32],
    ) -> Result<(), CrmError> {
        let ids: Vec<Bytes> = touched.iter().map(|&o| index.id(o).to_vec()).collect();
        let scores = store.sort_scores(&index.installation, field, &ids)?;
        for (&ordinal, score) in touched.iter().zip(scores) {
            set_score(data, ordinal, score);
        }
        Ok(())
    }
}

impl<S: IndexSource> PartKind<S> for Users {
    type Name = Bytes;
    type Data = RoaringBitmap;
    type Item = Bytes;

    fn parts(
        index: &mut Index<S::Cursor>,
    ) -> &mut PartMap<Bytes, Loaded<S::Cursor, RoaringBitmap>> {
        &mut index.users
    }

    fn restart(
        index: &mut Index<S::Cursor>,
        _: &S,
        user: &Bytes,
        clients: &mut RoaringBitmap,
    ) -> Result<(), CrmError> {
        clients.clear();
        index.visible.remove(user);
        Ok(())
    }

    fn scan(
        store: &S,
        installation: &[u8],
        user: &Bytes,
        cursor: &S::Cursor,
        out: &mut Vec<Bytes>,
    ) -> Result<bool, CrmError> {
        store.scan_set(SetRef::VisibleClients { installation, user }, cursor, out)
    }

    fn absorb(
        index: &mut Index<S::Cursor>,
        clients: &mut RoaringBitmap,
        ids: &[Bytes],
    ) -> Result<(), CrmError> {
        for client in ids {
            clients.insert(index.client_ordinal(client)?);
        }
        Ok(())
    }

    /// CRM writes never change a user's clients.
    fn settle(
        _: &Index<S::Cursor>,
        _: &S,
        _: &Bytes,
        _: &mut RoaringBitmap,
        _: &[u32],
    ) -> Result<(), CrmError> {
        Ok(())
    }
}

impl<C> Index<C> {
    /// Loads what waits (parts first: they hand out the ordinals whose rows are then
    /// read) until `deadline`; `Ok(true)` when nothing waits any more. A part that cannot
    /// be loaded (its key holds another type) is forgotten: the queries that read it take
    /// the keyspace path, which reports the error, and register it again.
    pub fn refresh<S: IndexSource<Cursor = C>>(
        &mut self,
        store: &S,
        deadline: Instant,
    ) -> Result<bool, CrmError> {
        let mut pace = Pace::new(deadline);
        let parts_done = self.load_waiting::<S, Sets>(store, &mut pace)?
            && self.load_waiting::<S, Sorts>(store, &mut pace)?
            && self.load_waiting::<S, Users>(store, &mut pace)?;
        if !parts_done {
            return Ok(false);
        }
        Ok(self.read_scores(store, &mut pace) && self.read_rows(store, &mut pace)?)
    }

    /// Reads the scores that wait, a batch of ZSCOREs at a time, while a batch fits; a
    /// sort part whose key cannot be read (another type) is forgotten.
    fn read_scores<S: IndexSource<Cursor = C>>(&mut self, store: &S, pace: &mut Pace) -> bool {
        let fields: Vec<Bytes> = self
            .sorts
            .iter()
            .filter(|(_, part)| part.load.is_ready() && !part.data.pending.is_empty())
            .map(|(field, _)| field.clone())
            .collect();
        for field in fields {
            while let Some(part) = self.sorts.get(&field) {
                let ordinals: Vec<u32> = part.data.pending.iter().take(ROW_BATCH).collect();
                if ordinals.is_empty() {
                    break;
                }
                if !pace.has_room() {
                    return false;
                }
                let began = Instant::now();
                let ids: Vec<Bytes> = ordinals.iter().map(|&o| self.id(o).to_vec()).collect();
                let scores = store.sort_scores(&self.installation, &field, &ids);
                let (Ok(scores), Some(part)) = (scores, self.sorts.get_mut(&field)) else {
                    self.sorts.remove(&field);
                    break;
                };
                for (ordinal, score) in ordinals.into_iter().zip(scores) {
                    set_score(&mut part.data, ordinal, score);
                    part.data.pending.remove(ordinal);
                }
                pace.stepped(began);
            }
        }
        true
    }

    /// Loads the waiting parts of one kind; `Ok(false)` when the deadline came first. Each
    /// is taken out of its map while it loads (loading hands out ordinals, which needs the
    /// whole index) and put back unless it failed.
    fn load_waiting<S: IndexSource<Cursor = C>, K: PartKind<S>>(
        &mut self,
        store: &S,
        pace: &mut Pace,
    ) -> Result<bool, CrmError> {
        let waiting: Vec<K::Name> = K::parts(self)
            .iter()
            .filter(|(_, part)| !part.load.is_ready())
            .map(|(name, _)| name.clone())
            .collect();
        for (n, name) in waiting.into_iter().enumerate() {
            // Many small parts (a script changing thousands of users' sets) are paced too.
            if n > 0 && !pace.has_room() {
                return Ok(false);
            }
            let Some(mut part) = K::parts(self).remove(&name) else {
                continue;
            };
            if let Ok(done) = self.load_part::<S, K>(store, &name, &mut part, pace) {
                K::parts(self).insert(name, part);
                if !done {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Scans one part until it is ready (`Ok(true)`) or no step fits before the deadline.
    fn load_part<S: IndexSource<Cursor = C>, K: PartKind<S>>(
        &mut self,
        store: &S,
        name: &K::Name,
        part: &mut Loaded<C, K::Data>,
        pace: &mut Pace,
    ) -> Result<bool, CrmError> {
        let installation = self.installation.clone();
        let mut batch = Vec::new();
        loop {
            match &mut part.load {
                Load::Ready => return Ok(true),
                Load::Stale => {
                    K::restart(self, store, name, &mut part.data)?;
                    part.load = Load::Scanning(Box::new(Scan {
                        cursor: store.cursor()?,
                        touched: Vec::new(),
                    }));
                }
                Load::Scanning(scan) => {
                    let Scan { cursor, touched } = &mut **scan;
                    let began = Instant::now();
                    batch.clear();
                    let more = K::scan(store, &installation, name, cursor, &mut batch)?;
                    K::absorb(self, &mut part.data, &batch)?;
                    if !more {
                        K::settle(self, store, name, &mut part.data, touched)?;
                        part.load = Load::Ready;
                    } else if !pace.stepped(began) {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Reads the rows (each meeting's client) that wait, in batches, while a batch fits.
    fn read_rows<S: IndexSource<Cursor = C>>(
        &mut self,
        store: &S,
        pace: &mut Pace,
    ) -> Result<bool, CrmError> {
        let installation = self.installation.clone();
        while !self.rows_pending.is_empty() {
            if !pace.has_room() {
                return Ok(false);
            }
            let began = Instant::now();
            let ordinals: Vec<u32> = self.rows_pending.iter().take(ROW_BATCH).collect();
            let ids: Vec<Bytes> = ordinals.iter().map(|&o| self.id(o).to_vec()).collect();
            // A batch fails as a whole on one key of the wrong type: read that batch one by
            // one, so that only the broken meeting is marked.
            let rows: Vec<Result<Option<IndexRow>, CrmError>> =
                match store.index_rows(&installation, &ids) {
                    Ok(rows) => rows.into_iter().map(Ok).collect(),
                    Err(_) => ids
                        .iter()
                        .map(|id| {
                            let row = store.index_rows(&installation, std::slice::from_ref(id));
                            row.map(|rows| rows.into_iter().next().flatten())
                        })
                        .collect(),
                };
            for (ordinal, row) in ordinals.into_iter().zip(rows) {
                let client = match row {
                    Ok(row) => {
                        self.broken.remove(ordinal);
                        if row.as_ref().is_some_and(|row| row.expires) {
                            self.expiring.insert(ordinal);
                        } else {
                            self.expiring.remove(ordinal);
                        }
                        match row.and_then(|row| row.client) {
                            Some(client) => self.client_ordinal(&client)?,
                            None => NO_CLIENT,
                        }
                    }
                    Err(_) => {
                        self.broken.insert(ordinal);
                        NO_CLIENT
                    }
                };
                self.set_client(ordinal, client);
                self.rows_pending.remove(ordinal);
            }
            pace.stepped(began);
        }
        Ok(true)
    }
}
