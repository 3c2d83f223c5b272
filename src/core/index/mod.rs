//! The in-memory index of one installation, a cache in front of the keyspace that is never
//! used stale. Meeting ids become dense ordinals; each set a query reads (a value set, the
//! installation's set) is a compressed bitmap of ordinals; each meeting's client is an
//! ordinal with a bitmap of meetings per client; each sort field keeps its scores with an
//! ordered walk; each querying user keeps its clients and, once computed, the meetings
//! they make visible.
//!
//! - `load.rs`: every part is loaded from an [`IndexSource`] in resumable steps under a
//!   deadline, by one loader for every kind of part.
//! - `follow.rs`: the glue marks a part stale when its key changes behind the index's back
//!   and a meeting row stale when its hash changes; CRM writes are applied directly.
//! - `plan.rs`: the plan kinds and the choice between them from cardinalities.
//! - `answer.rs`: a query is answered only when every part it reads is loaded and no row
//!   waits to be read; the page is checked against the keyspace before it is returned.

pub mod answer;
pub mod follow;
mod load;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use litemap::LiteMap;
use roaring::RoaringBitmap;

use super::buckets::Buckets;
use super::dense::{bitmap_bytes, shrink_bitmap, Chunked, Ordinals};
use super::query::{FilterGroup, Query};
use super::types::{Bytes, SetRef};
use crate::error::CrmError;

/// The client ordinal of a meeting without a hash or without a client.
const NO_CLIENT: u32 = u32::MAX;
/// Indexes up to this many meetings are shrunk once built (a millisecond at most).
const SHRINK_UP_TO: usize = 1 << 15;
/// Indexes up to this many meetings are shrunk again after every later load (parts and
/// meetings added since grew their vectors): each shrink copies every bitmap, a few
/// microseconds at this size.
const SHRINK_AGAIN_UP_TO: usize = 1 << 12;
/// A client's list of meetings: its allocation's overhead, estimated.
const CLIENT_LIST_OVERHEAD: usize = 16;

/// A set of the installation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetName {
    /// The installation's set of all its meetings.
    Meetings,
    /// The set of meetings whose `field` holds `value`.
    Value(Bytes, Bytes),
}

/// One loadable part of the index, named by what the glue watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Set(SetName),
    /// The sorted set of a sort field.
    Sort(Bytes),
    /// The set of clients a user may see.
    Clients(Bytes),
}

/// The set a [`SetName`] stands for in an installation.
pub(super) fn set_ref<'a>(installation: &'a [u8], name: &'a SetName) -> SetRef<'a> {
    match name {
        SetName::Meetings => SetRef::Meetings { installation },
        SetName::Value(field, value) => SetRef::Filter {
            installation,
            field,
            value,
        },
    }
}

/// The parts a query reads.
pub fn parts_of(query: &Query) -> Vec<Part> {
    let value_sets = |groups: &[FilterGroup]| -> Vec<Part> {
        groups
            .iter()
            .flat_map(|group| {
                group
                    .values
                    .iter()
                    .map(|value| Part::Set(SetName::Value(group.field.clone(), value.clone())))
            })
            .collect()
    };
    // In the keyspace path's order: FILTER sets, EXCLUDE sets, the installation's set
    // (without FILTER), the sort, the RANGE sorts, the FIELD sets of CRM.FACETS, the user's
    // clients.
    let mut parts = value_sets(&query.filters);
    parts.extend(value_sets(&query.excludes));
    if query.filters.is_empty() {
        parts.push(Part::Set(SetName::Meetings));
    }
    parts.push(Part::Sort(query.sort.field.clone()));
    for range in &query.ranges {
        let part = Part::Sort(range.field.clone());
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    parts.extend(value_sets(&query.facets));
    parts.push(Part::Clients(query.user.clone()));
    parts
}

enum Load<C> {
    /// To be read again from the start.
    Stale,
    /// Being read (boxed: thousands of small indexes have every part loaded, and a part's
    /// size is paid once per part).
    Scanning(Box<Scan<C>>),
    Ready,
}

/// A scan under way: its cursor, and the meetings a CRM write changed in the part
/// meanwhile (a scan may or may not see such a change), checked once the scan ends.
struct Scan<C> {
    cursor: C,
    touched: Vec<u32>,
}

impl<C> Load<C> {
    fn is_ready(&self) -> bool {
        matches!(self, Load::Ready)
    }
}

/// An index's parts of one kind by name: sorted vectors, which hold just their entries
/// (a hash map's empty buckets and control bytes cost more than the few parts of each of
/// thousands of small installations).
type PartMap<K, V> = LiteMap<K, V>;

/// A part: how far it is loaded, and what it holds.
struct Loaded<C, D> {
    load: Load<C>,
    data: D,
}

impl<C> Loaded<C, SortData> {
    /// Loaded, with every known meeting's score read.
    fn is_sorted(&self) -> bool {
        self.load.is_ready() && self.data.pending.is_empty()
    }
}

impl<C, D: Default> Default for Loaded<C, D> {
    fn default() -> Self {
        Loaded {
            load: Load::Stale,
            data: D::default(),
        }
    }
}

/// A sort field's part. The sorted set is never walked: it may hold the meetings of many
/// installations (`meeting_date` in the seed's schema), so each of the index's own
/// meetings has its score read (ZSCORE), and the index's size follows its installation's.
/// Whether the sorted set exists is asked at each answer.
#[derive(Default)]
struct SortData {
    /// Ordinals whose score is still to be read.
    pending: RoaringBitmap,
    /// Score per ordinal; NaN where the meeting has none (scores are never NaN).
    scores: Chunked<f64>,
    /// The meetings with a score by score range, for walking in score order both ways.
    order: Buckets,
    scored: RoaringBitmap,
}

/// Figures for INFO.
#[derive(Debug, Clone, Copy, Default)]
pub struct IndexCounters {
    /// Parts read again after a change made them stale.
    pub partial_rebuilds: u64,
    /// Users' visible meetings computed (a union of their clients' bitmaps).
    pub visible_built: u64,
}

pub struct Index<C> {
    installation: Bytes,
    ordinals: Ordinals,
    client_of: Chunked<u32>,
    /// Client ids and their ordinals.
    clients: Ordinals,
    /// The meetings of each client, as sorted ordinals: a client's few meetings lie in
    /// different 65,536-ordinal blocks, so a bitmap would cost a container (about 40
    /// bytes) per meeting, a list 4 bytes.
    client_meetings: Chunked<Vec<u32>>,
    /// Meetings with a client (the members of all client bitmaps).
    with_client: u64,
    /// Ordinals whose hash must be read (new meetings, changed hashes).
    rows_pending: RoaringBitmap,
    /// Ordinals whose hash could not be read (a key of another type): a query with one of
    /// them among its candidates takes the keyspace path, which reports the error.
    broken: RoaringBitmap,
    /// Ordinals whose hash has a TTL: it may expire unannounced (see [`Index::expiring`]).
    expiring: RoaringBitmap,
    /// Each set's members.
    sets: PartMap<SetName, Loaded<C, RoaringBitmap>>,
    sorts: PartMap<Bytes, Loaded<C, SortData>>,
    /// Each user's client ordinals.
    users: PartMap<Bytes, Loaded<C, RoaringBitmap>>,
    /// The meetings each user's clients make visible, once a plan needed them; kept current
    /// on every client change, dropped when the user's set changes.
    visible: HashMap<Bytes, RoaringBitmap>,
    pub counters: IndexCounters,
}

/// A total order of f64 scores as integers; `-0` is `0`, as the keyspace path compares.
fn order_key(score: f64) -> u64 {
    let score = if score == 0.0 { 0.0 } else { score };
    let bits = score.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

impl<C> Index<C> {
    pub fn new(installation: Bytes) -> Self {
        Index {
            installation,
            ordinals: Ordinals::default(),
            client_of: Chunked::default(),
            clients: Ordinals::default(),
            client_meetings: Chunked::default(),
            with_client: 0,
            rows_pending: RoaringBitmap::new(),
            broken: RoaringBitmap::new(),
            expiring: RoaringBitmap::new(),
            sets: PartMap::new(),
            sorts: PartMap::new(),
            users: PartMap::new(),
            visible: HashMap::new(),
            counters: IndexCounters::default(),
        }
    }

    pub fn installation(&self) -> &[u8] {
        &self.installation
    }

    /// Meetings the index knows (ordinals handed out).
    pub fn meetings(&self) -> usize {
        self.ordinals.len()
    }

    /// Adds the parts a query reads (see [`parts_of`]); returns those that were new (their
    /// keys are to be watched from now on).
    pub fn register(&mut self, parts: &[Part]) -> Vec<Part> {
        let mut added = Vec::new();
        for part in parts {
            let new = match part {
                Part::Set(name) => insert_new(&mut self.sets, name),
                Part::Sort(field) => insert_new(&mut self.sorts, field),
                Part::Clients(user) => insert_new(&mut self.users, user),
            };
            if new {
                added.push(part.clone());
            }
        }
        added
    }

    /// Whether the index has `part` (loaded or not).
    pub fn has_part(&self, part: &Part) -> bool {
        match part {
            Part::Set(name) => self.sets.contains_key(name),
            Part::Sort(field) => self.sorts.contains_key(field),
            Part::Clients(user) => self.users.contains_key(user),
        }
    }

    /// Whether every part a query reads is loaded and every meeting row is current.
    pub fn is_ready(&self, parts: &[Part]) -> bool {
        self.rows_pending.is_empty()
            && parts.iter().all(|part| match part {
                Part::Set(name) => self.sets.get(name).is_some_and(|p| p.load.is_ready()),
                Part::Sort(field) => self
                    .sorts
                    .get(field)
                    .is_some_and(Loaded::<C, SortData>::is_sorted),
                Part::Clients(user) => self.users.get(user).is_some_and(|p| p.load.is_ready()),
            })
    }

    /// Gives back the room its vectors, tables and bitmaps grew into, after a load (the
    /// `first` once built): thousands of small installations would otherwise hold half
    /// as much again as their data. Only below [`SHRINK_UP_TO`] meetings after the first
    /// load, [`SHRINK_AGAIN_UP_TO`] after later ones (rehashing and copying a million
    /// ids would hold the server).
    pub fn shrink_to_fit(&mut self, first: bool) {
        let limit = if first {
            SHRINK_UP_TO
        } else {
            SHRINK_AGAIN_UP_TO
        };
        if self.ordinals.len() > limit {
            return;
        }
        self.ordinals.shrink_to_fit();
        self.clients.shrink_to_fit();
        self.client_of.shrink_to_fit();
        self.client_meetings.shrink_to_fit();
        self.client_meetings.iter_mut().for_each(Vec::shrink_to_fit);
        for (_, sort) in self.sorts.iter_mut() {
            sort.data.scores.shrink_to_fit();
            sort.data.order.shrink_to_fit();
            shrink_bitmap(&mut sort.data.pending);
            shrink_bitmap(&mut sort.data.scored);
        }
        let sets = self.sets.iter_mut().map(|(_, part)| &mut part.data);
        let users = self.users.iter_mut().map(|(_, part)| &mut part.data);
        let own = [&mut self.rows_pending, &mut self.broken, &mut self.expiring];
        own.into_iter()
            .chain(sets)
            .chain(users)
            .for_each(shrink_bitmap);
        shrink_parts(&mut self.sets);
        shrink_parts(&mut self.sorts);
        shrink_parts(&mut self.users);
    }

    /// Frees a bounded piece of a dropped index (a million meetings freed at once hold the
    /// server for tens of milliseconds); `false` once nothing is left.
    pub fn free_some(&mut self) -> bool {
        /// Ids or bitmaps freed per call: about a millisecond.
        const PIECE: usize = 8192;
        fn drop_last<K: Clone + Ord, V>(map: &mut PartMap<K, V>) -> bool {
            let key = map.last().map(|(key, _)| key.clone());
            key.is_some_and(|key| map.remove(&key).is_some())
        }
        let visible = self.visible.keys().next().cloned();
        self.ordinals.drop_some(PIECE)
            || self.clients.drop_some(PIECE)
            || self.client_meetings.drop_some(PIECE)
            || self.client_of.drop_some(usize::MAX)
            || drop_last(&mut self.sets)
            || drop_last(&mut self.sorts)
            || drop_last(&mut self.users)
            || visible.is_some_and(|user| self.visible.remove(&user).is_some())
    }

    /// How far loading is, for a client told to retry: meetings whose row is read, of
    /// those known so far, and the parts still loading.
    pub fn progress(&self) -> String {
        let pending = self.rows_pending.len();
        let known = self.ordinals.len() as u64;
        let parts = self.parts_loading();
        format!(
            "{} of {known} meetings read, {parts} keys still loading",
            known.saturating_sub(pending)
        )
    }

    /// Whether anything waits to be loaded.
    pub fn has_work(&self) -> bool {
        !self.rows_pending.is_empty() || self.parts_loading() > 0
    }

    /// Parts not loaded yet, of every kind.
    fn parts_loading(&self) -> usize {
        self.sets.values().filter(|p| !p.load.is_ready()).count()
            + self.sorts.values().filter(|p| !p.is_sorted()).count()
            + self.users.values().filter(|p| !p.load.is_ready()).count()
    }

    /// An estimate of the heap memory the index holds, in bytes.
    pub fn heap_bytes(&self) -> usize {
        let bitmap = bitmap_bytes;
        let ids = self.ordinals.bytes();
        // Client lists are too many to walk each time: four bytes a meeting, and overhead.
        let clients = self.client_of.bytes()
            + self.clients.bytes()
            + self.client_meetings.bytes()
            + self.client_meetings.len() * CLIENT_LIST_OVERHEAD
            + usize::try_from(self.with_client).unwrap_or(usize::MAX) * 4;
        let sets: usize = self.sets.values().map(|p| bitmap(&p.data)).sum();
        let sorts: usize = self
            .sorts
            .values()
            .map(|p| p.data.scores.bytes() + p.data.order.bytes() + bitmap(&p.data.scored))
            .sum();
        let users: usize = self
            .users
            .iter()
            .map(|(user, p)| user.len() + bitmap(&p.data))
            .sum::<usize>()
            + self.visible.values().map(bitmap).sum::<usize>();
        ids + clients + sets + sorts + users + bitmap(&self.rows_pending)
    }

    /// The ordinal of `id`, handed out (with its row to be read) when new.
    fn ordinal(&mut self, id: &[u8]) -> Result<u32, CrmError> {
        let (ordinal, new) = self
            .ordinals
            .insert(id, NO_CLIENT)
            .ok_or_else(|| CrmError::Internal("the index is full".into()))?;
        if new {
            self.client_of.push(NO_CLIENT);
            self.rows_pending.insert(ordinal);
            for (_, sort) in self.sorts.iter_mut() {
                sort.data.pending.insert(ordinal);
            }
        }
        Ok(ordinal)
    }

    fn client_ordinal(&mut self, client: &[u8]) -> Result<u32, CrmError> {
        let (ordinal, new) = self
            .clients
            .insert(client, NO_CLIENT)
            .ok_or_else(|| CrmError::Internal("the index is full".into()))?;
        if new {
            self.client_meetings.push(Vec::new());
        }
        Ok(ordinal)
    }

    /// The meeting id of an ordinal (empty when there is no such ordinal).
    pub fn id(&self, ordinal: u32) -> &[u8] {
        self.ordinals.id(ordinal)
    }
}

/// Adds a part named `name`, stale, unless there is one; whether it was added.
fn insert_new<K: Clone + Ord, C, D: Default>(
    parts: &mut PartMap<K, Loaded<C, D>>,
    name: &K,
) -> bool {
    parts.try_insert(name.clone(), Loaded::default()).is_none()
}

/// Gives back the room a part map grew into.
fn shrink_parts<K, V>(parts: &mut PartMap<K, V>) {
    let mut entries = std::mem::replace(parts, PartMap::new()).into_tuple_vec();
    entries.shrink_to_fit();
    *parts = PartMap::from_sorted_store_unchecked(entries);
}
