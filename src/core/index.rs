//! The in-memory index of one installation, a cache in front of the keyspace that is never
//! used stale. Meeting ids become dense ordinals; each set a query reads (a value set, the
//! installation's set) is a compressed bitmap of ordinals; each meeting's client is an
//! ordinal with a bitmap of meetings per client; each sort field keeps its scores with an
//! ordered walk; each querying user keeps its clients and, once computed, the meetings
//! they make visible.
//!
//! Every part is loaded from an [`IndexSource`] in resumable steps under a deadline. The
//! glue marks a part stale when its key changes behind the index's back (keyspace
//! notifications) and a meeting row stale when its hash changes; CRM writes are applied
//! directly. A query is answered from the index only when every part it reads is loaded
//! and no meeting row waits to be read; the planner then picks the cheapest way through
//! the bitmaps, and the page is checked against the keyspace before it is returned.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Instant;

use roaring::{MultiOps, RoaringBitmap};

use super::buckets::Buckets;
use super::dense::{bitmap_bytes, Chunked, Ordinals};
use super::execute::{Page, Trace};
use super::order::{compare_ids, Ranked};
use super::page::cut_page;
use super::query::{Bytes, Direction, Query};
use super::store::{IndexRow, IndexSource, MeetingStore, SetRef};
use super::write::{Effect, CLIENT_FIELD};
use crate::error::{printable, CrmError};

/// The client ordinal of a meeting without a hash or without a client.
const NO_CLIENT: u32 = u32::MAX;
/// Meeting rows read per store call while loading.
const ROW_BATCH: usize = 128;
/// Users whose visible meetings stay cached at once.
const MAX_VISIBLE: usize = 1024;
/// A client bitmap's own bytes: the struct and one container's header.
const CLIENT_BITMAP_HEADER: usize = 64;
/// What intersecting one score range costs, in heap steps (one score lookup each).
const WALK_RANGE_COST: u64 = 16;

/// A set of the installation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SetName {
    /// The installation's set of all its meetings.
    Meetings,
    /// The set of meetings whose `field` holds `value`.
    Value(Bytes, Bytes),
}

/// One loadable part of the index, named by what the glue watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    Set(SetName),
    /// The sorted set of a sort field.
    Sort(Bytes),
    /// The set of clients a user may see.
    Clients(Bytes),
}

/// How a query is answered from the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanKind {
    /// The filter bitmaps intersected, then each candidate's client checked; page by heap.
    FilterFirst,
    /// The user's visible meetings (union of their clients' bitmaps, cached) intersected
    /// with the filter bitmaps; page by heap.
    ClientFirst,
    /// As client-first for the total, then a walk in sort order that stops once the page
    /// is full.
    SortWalk,
}

impl PlanKind {
    pub const ALL: [PlanKind; 3] = [
        PlanKind::FilterFirst,
        PlanKind::ClientFirst,
        PlanKind::SortWalk,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlanKind::FilterFirst => "filter-first",
            PlanKind::ClientFirst => "client-first",
            PlanKind::SortWalk => "sort-walk",
        }
    }
}

/// The `crm.index-plan` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanSetting {
    /// The planner picks from the cardinalities.
    Auto,
    Forced(PlanKind),
    /// Every query takes the keyspace path.
    Keyspace,
}

pub fn parse_plan_setting(text: &str) -> Result<PlanSetting, String> {
    match text.to_ascii_lowercase().as_str() {
        "auto" => Ok(PlanSetting::Auto),
        "keyspace" => Ok(PlanSetting::Keyspace),
        name => PlanKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .map(PlanSetting::Forced)
            .ok_or_else(|| {
                "must be auto, filter-first, client-first, sort-walk or keyspace".to_string()
            }),
    }
}

/// The parts a query reads.
pub fn parts_of(query: &Query) -> Vec<Part> {
    let mut parts: Vec<Part> = query
        .filters
        .iter()
        .flat_map(|group| {
            group
                .values
                .iter()
                .map(|value| Part::Set(SetName::Value(group.field.clone(), value.clone())))
        })
        .collect();
    if parts.is_empty() {
        parts.push(Part::Set(SetName::Meetings));
    }
    parts.push(Part::Sort(query.sort.field.clone()));
    parts.push(Part::Clients(query.user.clone()));
    parts
}

/// What [`Index::execute`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Page(Page, PlanKind),
    /// The index cannot answer this query (the reason); the keyspace path must.
    Unsupported(&'static str),
    /// The page check found a meeting the index had wrong; it is marked for reading again
    /// and the query must be answered another way this time.
    Changed,
}

enum Load<C> {
    /// To be read again from the start.
    Stale,
    /// Being read: the scan's cursor, and the meetings a CRM write changed in the part
    /// meanwhile (a scan may or may not see such a change), checked once the scan ends.
    Scanning {
        cursor: C,
        touched: Vec<u32>,
    },
    Ready,
}

impl<C> Load<C> {
    fn is_ready(&self) -> bool {
        matches!(self, Load::Ready)
    }
}

struct SetPart<C> {
    load: Load<C>,
    members: RoaringBitmap,
}

struct SortPart<C> {
    load: Load<C>,
    /// Whether the sorted set exists (without it the keyspace path sorts by hash field).
    exists: bool,
    /// Members of the sorted set that name no meeting (they still make it exist).
    foreign: u64,
    /// Score per ordinal; NaN where the meeting has none (scores are never NaN).
    scores: Chunked<f64>,
    /// The meetings with a score by score range, for walking in score order both ways.
    order: Buckets,
    scored: RoaringBitmap,
}

struct UserPart<C> {
    load: Load<C>,
    /// Client ordinals.
    clients: RoaringBitmap,
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
    /// The meetings of each client.
    client_meetings: Chunked<RoaringBitmap>,
    /// Meetings with a client (the members of all client bitmaps).
    with_client: u64,
    /// Ordinals whose hash must be read (new meetings, changed hashes).
    rows_pending: RoaringBitmap,
    /// Ordinals whose hash could not be read (a key of another type): a query with one of
    /// them among its candidates takes the keyspace path, which reports the error.
    broken: RoaringBitmap,
    /// Ordinals whose hash has a TTL: it may expire unannounced (see [`Index::expiring`]).
    expiring: RoaringBitmap,
    sets: HashMap<SetName, SetPart<C>>,
    sorts: HashMap<Bytes, SortPart<C>>,
    users: HashMap<Bytes, UserPart<C>>,
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
            sets: HashMap::new(),
            sorts: HashMap::new(),
            users: HashMap::new(),
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
            let new = match &part {
                Part::Set(name) => !self.sets.contains_key(name),
                Part::Sort(field) => !self.sorts.contains_key(field),
                Part::Clients(user) => !self.users.contains_key(user),
            };
            if !new {
                continue;
            }
            match &part {
                Part::Set(name) => {
                    self.sets.insert(
                        name.clone(),
                        SetPart {
                            load: Load::Stale,
                            members: RoaringBitmap::new(),
                        },
                    );
                }
                Part::Sort(field) => {
                    self.sorts.insert(
                        field.clone(),
                        SortPart {
                            load: Load::Stale,
                            exists: false,
                            foreign: 0,
                            scores: Chunked::default(),
                            order: Buckets::default(),
                            scored: RoaringBitmap::new(),
                        },
                    );
                }
                Part::Clients(user) => {
                    self.users.insert(
                        user.clone(),
                        UserPart {
                            load: Load::Stale,
                            clients: RoaringBitmap::new(),
                        },
                    );
                }
            }
            added.push(part.clone());
        }
        added
    }

    /// Whether every part a query reads is loaded and every meeting row is current.
    pub fn is_ready(&self, parts: &[Part]) -> bool {
        self.rows_pending.is_empty()
            && parts.iter().all(|part| match part {
                Part::Set(name) => self.sets.get(name).is_some_and(|p| p.load.is_ready()),
                Part::Sort(field) => self.sorts.get(field).is_some_and(|p| p.load.is_ready()),
                Part::Clients(user) => self.users.get(user).is_some_and(|p| p.load.is_ready()),
            })
    }

    /// Whether anything waits to be loaded.
    pub fn has_work(&self) -> bool {
        !self.rows_pending.is_empty()
            || self.sets.values().any(|p| !p.load.is_ready())
            || self.sorts.values().any(|p| !p.load.is_ready())
            || self.users.values().any(|p| !p.load.is_ready())
    }

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

    /// Applies a CRM write that has been applied to the keyspace.
    pub fn apply_write(&mut self, id: &[u8], effects: &[Effect]) -> Result<(), CrmError> {
        let ordinal = self.ordinal(id)?;
        self.rows_pending.insert(ordinal);
        for effect in effects {
            match effect {
                Effect::AddToValueSet { field, value } => self.set_membership(
                    &SetName::Value(field.clone(), value.clone()),
                    ordinal,
                    true,
                ),
                Effect::RemoveFromValueSet { field, value } => self.set_membership(
                    &SetName::Value(field.clone(), value.clone()),
                    ordinal,
                    false,
                ),
                Effect::AddToMeetingsSet => self.set_membership(&SetName::Meetings, ordinal, true),
                Effect::RemoveFromMeetingsSet => {
                    self.set_membership(&SetName::Meetings, ordinal, false)
                }
                Effect::SetSortScore { field, score } => {
                    self.sort_membership(field, ordinal, Some(*score))
                }
                Effect::RemoveSortScore { field } => self.sort_membership(field, ordinal, None),
                // The row is read again (pending above): HSET merges into what is stored.
                Effect::WriteHash(_) | Effect::DeleteHash => {}
            }
        }
        Ok(())
    }

    fn set_membership(&mut self, name: &SetName, ordinal: u32, member: bool) {
        let Some(part) = self.sets.get_mut(name) else {
            return;
        };
        match &mut part.load {
            Load::Ready => {
                if member {
                    part.members.insert(ordinal);
                } else {
                    part.members.remove(ordinal);
                }
            }
            Load::Scanning { touched, .. } => touched.push(ordinal),
            Load::Stale => {}
        }
    }

    fn sort_membership(&mut self, field: &[u8], ordinal: u32, score: Option<f64>) {
        let Some(part) = self.sorts.get_mut(field) else {
            return;
        };
        match &mut part.load {
            Load::Ready => {
                set_score(part, ordinal, score);
                // Redis deletes a sorted set with its last member.
                part.exists = part.foreign > 0 || !part.scored.is_empty();
            }
            Load::Scanning { touched, .. } => touched.push(ordinal),
            Load::Stale => {}
        }
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
        }
        Ok(ordinal)
    }

    fn client_ordinal(&mut self, client: &[u8]) -> Result<u32, CrmError> {
        let (ordinal, new) = self
            .clients
            .insert(client, NO_CLIENT)
            .ok_or_else(|| CrmError::Internal("the index is full".into()))?;
        if new {
            self.client_meetings.push(RoaringBitmap::new());
        }
        Ok(ordinal)
    }

    fn id(&self, ordinal: u32) -> &[u8] {
        self.ordinals.id(ordinal)
    }

    /// Moves a meeting to another client, in the client bitmaps and every cached set of
    /// visible meetings.
    fn set_client(&mut self, ordinal: u32, client: u32) {
        let Some(slot) = self.client_of.get_mut(ordinal as usize) else {
            return;
        };
        let old = std::mem::replace(slot, client);
        if old == client {
            return;
        }
        if let Some(meetings) = self.client_meetings.get_mut(old as usize) {
            meetings.remove(ordinal);
            self.with_client -= 1;
        }
        if let Some(meetings) = self.client_meetings.get_mut(client as usize) {
            meetings.insert(ordinal);
            self.with_client += 1;
        }
        for (user, visible) in &mut self.visible {
            if let Some(user) = self.users.get(user) {
                if user.clients.contains(client) {
                    visible.insert(ordinal);
                } else if user.clients.contains(old) {
                    visible.remove(ordinal);
                }
            }
        }
    }

    /// Loads what waits (parts first: they hand out the ordinals whose rows are then
    /// read) until `deadline`; `Ok(true)` when nothing waits any more. A part that cannot
    /// be loaded (its key holds another type) is forgotten: the queries that read it take
    /// the keyspace path, which reports the error, and register it again.
    pub fn refresh<S: IndexSource<Cursor = C>>(
        &mut self,
        store: &S,
        deadline: Instant,
    ) -> Result<bool, CrmError> {
        let installation = self.installation.clone();
        // Each waiting part is taken out of its map while it loads (loading hands out
        // ordinals, which needs the whole index) and put back unless it failed.
        macro_rules! load_waiting {
            ($map:ident, $load:ident) => {
                let waiting: Vec<_> = self
                    .$map
                    .iter()
                    .filter(|(_, part)| !part.load.is_ready())
                    .map(|(name, _)| name.clone())
                    .collect();
                for name in waiting {
                    if let Some(mut part) = self.$map.remove(&name) {
                        if let Ok(done) =
                            self.$load(store, &installation, &name, &mut part, deadline)
                        {
                            self.$map.insert(name, part);
                            if !done {
                                return Ok(false);
                            }
                        }
                    }
                }
            };
        }
        load_waiting!(sets, load_set);
        load_waiting!(sorts, load_sort);
        load_waiting!(users, load_user);
        while !self.rows_pending.is_empty() {
            if Instant::now() >= deadline {
                return Ok(false);
            }
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
        }
        Ok(true)
    }

    fn load_set<S: IndexSource<Cursor = C>>(
        &mut self,
        store: &S,
        installation: &[u8],
        name: &SetName,
        part: &mut SetPart<C>,
        deadline: Instant,
    ) -> Result<bool, CrmError> {
        let set = match name {
            SetName::Meetings => SetRef::Meetings { installation },
            SetName::Value(field, value) => SetRef::Filter {
                installation,
                field,
                value,
            },
        };
        let mut batch = Vec::new();
        loop {
            match &mut part.load {
                Load::Ready => return Ok(true),
                Load::Stale => {
                    part.members.clear();
                    part.load = Load::Scanning {
                        cursor: store.cursor()?,
                        touched: Vec::new(),
                    };
                }
                Load::Scanning { cursor, touched } => {
                    batch.clear();
                    let more = store.scan_set(set, cursor, &mut batch)?;
                    for id in &batch {
                        part.members.insert(self.ordinal(id)?);
                    }
                    if !more {
                        let ids: Vec<Bytes> =
                            touched.iter().map(|&o| self.id(o).to_vec()).collect();
                        let found = store.set_contains_each(set, &ids)?;
                        for (&ordinal, member) in touched.iter().zip(found) {
                            if member {
                                part.members.insert(ordinal);
                            } else {
                                part.members.remove(ordinal);
                            }
                        }
                        part.load = Load::Ready;
                    } else if Instant::now() >= deadline {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn load_sort<S: IndexSource<Cursor = C>>(
        &mut self,
        store: &S,
        installation: &[u8],
        field: &[u8],
        part: &mut SortPart<C>,
        deadline: Instant,
    ) -> Result<bool, CrmError> {
        let mut batch = Vec::new();
        loop {
            match &mut part.load {
                Load::Ready => return Ok(true),
                Load::Stale => {
                    part.exists = store.has_sort_index(installation, field)?;
                    part.foreign = 0;
                    part.scores.clear();
                    part.order.clear();
                    part.scored.clear();
                    part.load = Load::Scanning {
                        cursor: store.cursor()?,
                        touched: Vec::new(),
                    };
                }
                Load::Scanning { cursor, touched } => {
                    batch.clear();
                    let more = store.scan_sort(installation, field, cursor, &mut batch)?;
                    let touched = std::mem::take(touched);
                    for (id, score) in &batch {
                        match id {
                            Some(id) => {
                                let ordinal = self.ordinal(id)?;
                                set_score(part, ordinal, Some(*score));
                            }
                            None => part.foreign += 1,
                        }
                    }
                    if !more {
                        let ids: Vec<Bytes> =
                            touched.iter().map(|&o| self.id(o).to_vec()).collect();
                        let scores = store.sort_scores(installation, field, &ids)?;
                        for (&ordinal, score) in touched.iter().zip(scores) {
                            set_score(part, ordinal, score);
                        }
                        part.load = Load::Ready;
                    } else {
                        if let Load::Scanning { touched: kept, .. } = &mut part.load {
                            *kept = touched;
                        }
                        if Instant::now() >= deadline {
                            return Ok(false);
                        }
                    }
                }
            }
        }
    }

    fn load_user<S: IndexSource<Cursor = C>>(
        &mut self,
        store: &S,
        installation: &[u8],
        user: &[u8],
        part: &mut UserPart<C>,
        deadline: Instant,
    ) -> Result<bool, CrmError> {
        let set = SetRef::VisibleClients { installation, user };
        let mut batch = Vec::new();
        loop {
            match &mut part.load {
                Load::Ready => return Ok(true),
                Load::Stale => {
                    part.clients.clear();
                    self.visible.remove(user);
                    part.load = Load::Scanning {
                        cursor: store.cursor()?,
                        touched: Vec::new(),
                    };
                }
                Load::Scanning { cursor, .. } => {
                    batch.clear();
                    let more = store.scan_set(set, cursor, &mut batch)?;
                    for client in &batch {
                        part.clients.insert(self.client_ordinal(client)?);
                    }
                    if !more {
                        part.load = Load::Ready;
                    } else if Instant::now() >= deadline {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// An estimate of the heap memory the index holds, in bytes.
    pub fn memory_bytes(&self) -> usize {
        let bitmap = bitmap_bytes;
        let ids = self.ordinals.bytes();
        // Client bitmaps are sparse (two bytes a meeting) and too many to walk each time.
        let clients = self.client_of.bytes()
            + self.clients.bytes()
            + self.client_meetings.bytes()
            + self.client_meetings.len() * CLIENT_BITMAP_HEADER
            + usize::try_from(self.with_client).unwrap_or(usize::MAX) * 2;
        let sets: usize = self.sets.values().map(|p| bitmap(&p.members)).sum();
        // A B-tree entry is 12 bytes in nodes that are about two thirds full.
        let sorts: usize = self
            .sorts
            .values()
            .map(|p| p.scores.bytes() + p.order.bytes() + bitmap(&p.scored))
            .sum();
        let users: usize = self
            .users
            .iter()
            .map(|(user, p)| user.len() + bitmap(&p.clients))
            .sum::<usize>()
            + self.visible.values().map(bitmap).sum::<usize>();
        ids + clients + sets + sorts + users + bitmap(&self.rows_pending)
    }

    /// Answers `query` from the index (call only when [`Index::is_ready`]). `forced` picks
    /// the plan instead of the planner. The page's meetings are checked against the store
    /// (their client, and that the user sees it) before their fields are read from it.
    pub fn execute<S: MeetingStore>(
        &mut self,
        store: &S,
        query: &Query,
        forced: Option<PlanKind>,
        trace: &mut Trace,
    ) -> Result<Answer, CrmError> {
        let started = Instant::now();
        match self.sorts.get(&query.sort.field) {
            Some(sort) if sort.exists => {}
            _ => return Ok(Answer::Unsupported("the sort field has no sorted set")),
        }
        let Some(groups) = filter_groups(&self.sets, query) else {
            return Ok(Answer::Unsupported("a set the query reads is not loaded"));
        };
        let Some(user) = self.users.get(&query.user) else {
            return Ok(Answer::Unsupported("the user's clients are not loaded"));
        };
        // The keyspace path reads every candidate's hash unless the user sees no client:
        // a broken one among them must give its error.
        if !user.clients.is_empty()
            && !self.broken.is_empty()
            && !intersect(&groups).is_disjoint(&self.broken)
        {
            return Ok(Answer::Unsupported("a candidate's hash cannot be read"));
        }
        // Client-first costs the union of the user's client bitmaps unless it is cached (a
        // cached union serves every later query of the user, so it is worth building when
        // it costs a few times the candidates); filter-first costs a check per candidate.
        let union_cost: u64 = match self.visible.contains_key(&query.user) {
            true => 0,
            false => user
                .clients
                .iter()
                .filter_map(|c| self.client_meetings.get(c as usize))
                .map(RoaringBitmap::len)
                .sum(),
        };
        let candidates_estimate = groups
            .iter()
            .map(|group| group.iter().map(|set| set.len()).sum::<u64>())
            .min()
            .unwrap_or(0);
        let client_first = match forced {
            Some(kind) => kind != PlanKind::FilterFirst,
            None => union_cost <= candidates_estimate.saturating_mul(4),
        };
        let detail = || {
            format!(
                "index ({}): about {candidates_estimate} candidates, {union_cost} meetings \
                 to union for the user's clients; {}",
                match forced {
                    Some(_) => "plan forced by crm.index-plan",
                    None => "planner",
                },
                if client_first {
                    "visible meetings first"
                } else {
                    "checking each candidate's client is cheaper"
                }
            )
        };
        trace.record("plan", detail, 0, 0, started);

        let started = Instant::now();
        let matches = if client_first {
            let visible = visible(
                &mut self.visible,
                &query.user,
                &user.clients,
                &self.client_meetings,
                &mut self.counters.visible_built,
            );
            restrict(visible, &groups)
        } else {
            let candidates = intersect(&groups);
            let clients = &user.clients;
            let client_of = &self.client_of;
            RoaringBitmap::from_sorted_iter(candidates.iter().filter(|&o| {
                client_of
                    .get(o as usize)
                    .is_some_and(|&c| c != NO_CLIENT && clients.contains(c))
            }))
            .unwrap_or_default()
        };
        let total = matches.len();
        let how = if client_first {
            "the user's visible meetings intersected with the filters"
        } else {
            "the filters intersected, then each candidate's client checked"
        };
        let estimate = usize::try_from(candidates_estimate).unwrap_or(usize::MAX);
        trace.record(
            "client security",
            || how.into(),
            estimate,
            total as usize,
            started,
        );

        let Some(sort) = self.sorts.get(&query.sort.field) else {
            return Ok(Answer::Unsupported("the sort field has no sorted set"));
        };
        // Walking the score ranges costs a bitmap intersection per range until the page is
        // full; a heap costs a score lookup per match.
        let keep = query.offset.saturating_add(query.count);
        let ranges = sort.order.len() as u64;
        let ranges_needed = (ranges.saturating_mul(keep) / total.max(1)).clamp(1, ranges.max(1));
        let walk = match forced {
            Some(kind) => kind == PlanKind::SortWalk,
            None => ranges_needed.saturating_mul(WALK_RANGE_COST) < total,
        };
        let kind = match (walk, client_first) {
            (true, _) => PlanKind::SortWalk,
            (false, true) => PlanKind::ClientFirst,
            (false, false) => PlanKind::FilterFirst,
        };
        if query.count == 0 || query.offset >= total {
            return Ok(Answer::Page(
                Page {
                    total,
                    meetings: Vec::new(),
                },
                kind,
            ));
        }
        let started = Instant::now();
        let page = if walk {
            self.walk(sort, &matches, query)
        } else {
            let direction = query.sort.direction;
            let ranked = matches.iter().map(|o| {
                let score = sort.scores.get(o as usize).copied().filter(|s| !s.is_nan());
                Ranked::new(OrdinalId(self.id(o), o), score, direction)
            });
            cut_page(ranked, query.offset, query.count)
                .into_iter()
                .map(|ranked| ranked.id.1)
                .collect()
        };
        let detail = || {
            let how = if walk { "score ranges walked" } else { "heap" };
            format!("{how}, by {}", printable(&query.sort.field))
        };
        trace.record("page", detail, page.len(), page.len(), started);

        // One read of each page meeting's hash: its client, for the check, and the fields.
        let started = Instant::now();
        let ids: Vec<Bytes> = page.iter().map(|&o| self.id(o).to_vec()).collect();
        let returned = query.returned_fields();
        let fields: Vec<&[u8]> = std::iter::once(CLIENT_FIELD)
            .chain(returned.iter().copied())
            .collect();
        let mut rows = store.fields(&self.installation, &ids, &fields)?;
        let live_clients: Vec<Option<Bytes>> = rows
            .iter_mut()
            .map(|row| if row.is_empty() { None } else { row.remove(0) })
            .collect();
        if !self.page_is_current(store, query, &page, live_clients)? {
            return Ok(Answer::Changed);
        }
        let names = || {
            let names: Vec<String> = returned.iter().map(|field| printable(field)).collect();
            format!("{}; client of each meeting checked", names.join(" "))
        };
        trace.record("fields", names, ids.len(), rows.len(), started);
        Ok(Answer::Page(
            Page {
                total,
                meetings: ids.into_iter().zip(rows).collect(),
            },
            kind,
        ))
    }

    /// The page by walking the score ranges in order: the matches of each range are
    /// counted (ranges before the offset are skipped whole), then ordered by score and id;
    /// meetings without a score come last, by id.
    fn walk(&self, sort: &SortPart<C>, matches: &RoaringBitmap, query: &Query) -> Vec<u32> {
        let keep = query.offset.saturating_add(query.count);
        let descending = query.sort.direction == Direction::Desc;
        let mut page = Vec::new();
        let mut seen = 0u64;
        // Orders one range's matches and takes what falls in the page; true once full.
        let emit = |mut members: Vec<(u64, u32)>, seen: &mut u64, page: &mut Vec<u32>| {
            let order = |a: &(u64, u32), b: &(u64, u32)| {
                let by_key = if descending {
                    b.0.cmp(&a.0)
                } else {
                    a.0.cmp(&b.0)
                };
                by_key.then_with(|| compare_ids(self.id(a.1), self.id(b.1)))
            };
            // Only the first `need` count (a range of one score is never split, and the
            // meetings without a score form one group): select them, sort only those.
            let need = usize::try_from(keep.saturating_sub(*seen)).unwrap_or(usize::MAX);
            if need > 0 && members.len() > need {
                members.select_nth_unstable_by(need - 1, order);
                members.truncate(need);
            }
            members.sort_by(order);
            for (_, ordinal) in members {
                if *seen >= keep {
                    break;
                }
                if *seen >= query.offset {
                    page.push(ordinal);
                }
                *seen += 1;
            }
            *seen >= keep
        };
        let key_of = |o: u32| sort.scores.get(o as usize).map_or(0, |&s| order_key(s));
        for range in sort.order.in_order(descending) {
            let found = range.intersection_len(matches);
            if found == 0 {
                continue;
            }
            if seen + found <= query.offset {
                seen += found;
                continue;
            }
            let members = (range & matches).iter().map(|o| (key_of(o), o)).collect();
            if emit(members, &mut seen, &mut page) {
                return page;
            }
        }
        // Every key the same: the meetings without a score, by id.
        let unscored = (matches - &sort.scored).iter().map(|o| (0, o)).collect();
        emit(unscored, &mut seen, &mut page);
        page
    }

    /// Checks the page against the keyspace: each meeting's hash, as just read, must name
    /// the client the index holds, and the user's set must still hold that client. A
    /// difference marks what to read again.
    fn page_is_current<S: MeetingStore>(
        &mut self,
        store: &S,
        query: &Query,
        page: &[u32],
        live_clients: Vec<Option<Bytes>>,
    ) -> Result<bool, CrmError> {
        let mut clients = Vec::with_capacity(live_clients.len());
        let mut current = true;
        for (&ordinal, live) in page.iter().zip(live_clients) {
            let held = self
                .client_of
                .get(ordinal as usize)
                .filter(|&&c| c != NO_CLIENT)
                .map(|&c| self.clients.id(c));
            if live.is_none() || held != live.as_deref() {
                self.rows_pending.insert(ordinal);
                current = false;
            }
            clients.push(live.unwrap_or_default());
        }
        if !current {
            return Ok(false);
        }
        let seen = store.set_contains_each(query.visible_clients(), &clients)?;
        if seen.iter().all(|&visible| visible) {
            return Ok(true);
        }
        self.mark_stale(&Part::Clients(query.user.clone()));
        Ok(false)
    }
}

/// The bitmaps of each FILTER group's values (the installation's set alone without
/// FILTER), smallest group first; `None` when one is not loaded.
fn filter_groups<'a, C>(
    sets: &'a HashMap<SetName, SetPart<C>>,
    query: &Query,
) -> Option<Vec<Vec<&'a RoaringBitmap>>> {
    if query.filters.is_empty() {
        return Some(vec![vec![&sets.get(&SetName::Meetings)?.members]]);
    }
    let mut groups = Vec::with_capacity(query.filters.len());
    for group in &query.filters {
        let mut members = Vec::with_capacity(group.values.len());
        for value in &group.values {
            let name = SetName::Value(group.field.clone(), value.clone());
            members.push(&sets.get(&name)?.members);
        }
        groups.push(members);
    }
    // Smallest first: every later intersection works on less.
    groups.sort_by_key(|group| group.iter().map(|set| set.len()).sum::<u64>());
    Some(groups)
}

/// A user's visible meetings (the union of their clients' meetings), computed and cached
/// when missing. At most [`MAX_VISIBLE`] users keep one (every client change updates each).
fn visible<'a>(
    cache: &'a mut HashMap<Bytes, RoaringBitmap>,
    user: &[u8],
    clients: &RoaringBitmap,
    client_meetings: &Chunked<RoaringBitmap>,
    built: &mut u64,
) -> &'a RoaringBitmap {
    if !cache.contains_key(user) {
        if cache.len() >= MAX_VISIBLE {
            let evicted = cache.keys().next().cloned();
            if let Some(evicted) = evicted {
                cache.remove(&evicted);
            }
        }
        *built += 1;
        let union = clients
            .iter()
            .filter_map(|client| client_meetings.get(client as usize))
            .union();
        cache.insert(user.to_vec(), union);
    }
    static NONE: LazyLock<RoaringBitmap> = LazyLock::new(RoaringBitmap::new);
    cache.get(user).unwrap_or(&NONE)
}

/// The meetings in every group (in one of each group's sets).
fn intersect(groups: &[Vec<&RoaringBitmap>]) -> RoaringBitmap {
    match groups.split_first() {
        Some((first, rest)) => match first.as_slice() {
            [only] => restrict(only, rest),
            sets => restrict(&sets.iter().copied().union(), rest),
        },
        None => RoaringBitmap::new(),
    }
}

/// `start` narrowed to the meetings in every group; `start` itself is only read (it may be
/// a cached bitmap).
fn restrict(start: &RoaringBitmap, groups: &[Vec<&RoaringBitmap>]) -> RoaringBitmap {
    let mut narrowed: Option<RoaringBitmap> = None;
    for group in groups {
        let current = narrowed.as_ref().unwrap_or(start);
        if current.is_empty() {
            break;
        }
        narrowed = Some(match group.as_slice() {
            [set] => current & *set,
            sets => sets.iter().map(|set| current & *set).union(),
        });
    }
    narrowed.unwrap_or_else(|| start.clone())
}

/// A meeting's id with its ordinal, ordered by the id.
#[derive(Debug, Clone, Copy)]
struct OrdinalId<'a>(&'a [u8], u32);

impl AsRef<[u8]> for OrdinalId<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}

fn set_score<C>(part: &mut SortPart<C>, ordinal: u32, score: Option<f64>) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::execute::execute;
    use crate::core::memory::{MemoryCursor, MemoryStore};

    type TestIndex = Index<MemoryCursor>;
    use crate::core::query::parse_query;

    /// A small deterministic generator (xorshift), so every failure replays.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
        fn text(&mut self, prefix: &str, n: u64) -> String {
            format!("{prefix}{}", self.below(n))
        }
    }

    const TYPES: [&str; 3] = ["email", "sms", "call"];
    const STATUSES: [&str; 2] = ["open", "close"];

    fn random_store(rng: &mut Rng, meetings: u64) -> MemoryStore {
        let mut store = MemoryStore::default();
        for id in 0..meetings {
            let id = if rng.below(10) == 0 {
                format!("m{id}")
            } else {
                id.to_string()
            };
            write_meeting(&mut store, rng, &id);
        }
        for user in 0..6 {
            let clients: Vec<String> = (0..rng.below(12)).map(|_| rng.text("", 20)).collect();
            let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
            store.clients(&user.to_string(), &clients);
        }
        store
    }

    /// Writes a meeting as the raw keyspace would hold it: maybe no hash, maybe no client,
    /// maybe no date, in some of the value sets.
    fn write_meeting(store: &mut MemoryStore, rng: &mut Rng, id: &str) {
        let id_bytes = id.as_bytes().to_vec();
        for set in store
            .filter_sets
            .values_mut()
            .chain(store.meeting_sets.values_mut())
        {
            set.retain(|member| *member != id_bytes);
        }
        if rng.below(10) > 0 {
            store
                .meeting_sets
                .entry(b"10".to_vec())
                .or_default()
                .push(id_bytes.clone());
        }
        match rng.below(8) {
            0 => {
                store.meetings.remove(&id_bytes);
            }
            1 => store.meeting(id, &[("details", "{}")]),
            _ => {
                let client = rng.text("", 20);
                store.meeting(id, &[("clientid", &client), ("details", id)]);
            }
        }
        let dates = store.sort_indexes.entry(b"date".to_vec()).or_default();
        if rng.below(6) == 0 {
            dates.remove(&id_bytes);
        } else {
            // Few distinct dates, so ties are common.
            dates.insert(id_bytes.clone(), (rng.below(40) as f64) - 5.0);
        }
        for (field, values) in [("type", &TYPES[..]), ("status", &STATUSES[..])] {
            if rng.below(10) > 0 {
                let value = values[rng.below(values.len() as u64) as usize];
                let key = (
                    b"10".to_vec(),
                    field.as_bytes().to_vec(),
                    value.as_bytes().to_vec(),
                );
                store
                    .filter_sets
                    .entry(key)
                    .or_default()
                    .push(id_bytes.clone());
            }
        }
    }

    fn random_query(rng: &mut Rng) -> Query {
        let mut words = vec!["10".to_string(), rng.text("", 6)];
        for _ in 0..rng.below(3) {
            let (field, values) = if rng.below(2) == 0 {
                ("type", &TYPES[..])
            } else {
                ("status", &STATUSES[..])
            };
            words.extend([
                "FILTER".into(),
                field.into(),
                values[rng.below(values.len() as u64) as usize].into(),
            ]);
        }
        words.extend(["SORTBY".into(), "date".into()]);
        if rng.below(2) == 0 {
            words.push("DESC".into());
        }
        words.extend([
            "LIMIT".into(),
            rng.below(30).to_string(),
            rng.below(12).to_string(),
        ]);
        let args: Vec<&[u8]> = words.iter().map(String::as_bytes).collect();
        parse_query(&args, 1000).unwrap()
    }

    fn loaded(index: &mut TestIndex, store: &MemoryStore, query: &Query) {
        let parts = parts_of(query);
        index.register(&parts);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(index.refresh(store, deadline).unwrap());
        assert!(index.is_ready(&parts));
    }

    /// The index's answer under every plan equals the keyspace path's.
    fn assert_same(index: &mut TestIndex, store: &MemoryStore, query: &Query, step: usize) {
        loaded(index, store, query);
        let expected = execute(store, query).unwrap();
        for forced in [
            None,
            Some(PlanKind::FilterFirst),
            Some(PlanKind::ClientFirst),
            Some(PlanKind::SortWalk),
        ] {
            match index
                .execute(store, query, forced, &mut Trace::default())
                .unwrap()
            {
                Answer::Page(page, kind) => {
                    assert_eq!(page, expected, "step {step}, {query:?}, plan {kind:?}");
                    if let Some(forced) = forced {
                        assert_eq!(kind, forced);
                    }
                }
                other => panic!("step {step}: {other:?}"),
            }
        }
    }

    /// One change to the store, reported to the index as the glue would: a raw write
    /// (`raw_percent` of the time: every key it may have touched is marked stale), a CRM
    /// write or delete (its effects applied), a user's clients changed (marked stale).
    fn random_change(
        store: &mut MemoryStore,
        index: &mut TestIndex,
        rng: &mut Rng,
        raw_percent: u64,
    ) {
        let id = if rng.below(5) == 0 {
            rng.text("new", 1000)
        } else {
            rng.below(80).to_string()
        };
        let kind = if rng.below(100) < raw_percent {
            0
        } else {
            1 + rng.below(3)
        };
        match kind {
            // A raw write: the glue reports every key it touched.
            0 => {
                write_meeting(store, rng, &id);
                index.meeting_changed(id.as_bytes());
                for (_, field, value) in store.filter_sets.keys() {
                    index.mark_stale(&Part::Set(SetName::Value(field.clone(), value.clone())));
                }
                index.mark_stale(&Part::Set(SetName::Meetings));
                index.mark_stale(&Part::Sort(b"date".to_vec()));
            }
            // A CRM write: the effects, applied directly.
            1 => {
                let client = rng.text("", 20);
                store.meeting(&id, &[("clientid", &client), ("details", "{}")]);
                let value = TYPES[rng.below(3) as usize];
                let key = (b"10".to_vec(), b"type".to_vec(), value.as_bytes().to_vec());
                store
                    .filter_sets
                    .entry(key)
                    .or_default()
                    .push(id.as_bytes().to_vec());
                let score = rng.below(40) as f64;
                store.score("date", &id, score);
                let effects = [
                    Effect::WriteHash(vec![]),
                    Effect::AddToValueSet {
                        field: b"type".to_vec(),
                        value: value.as_bytes().to_vec(),
                    },
                    Effect::SetSortScore {
                        field: b"date".to_vec(),
                        score,
                    },
                ];
                index.apply_write(id.as_bytes(), &effects).unwrap();
            }
            // A user's clients change.
            2 => {
                let user = rng.text("", 6);
                let client = rng.text("", 20);
                store
                    .user_clients
                    .entry(user.as_bytes().to_vec())
                    .or_default()
                    .push(client.into_bytes());
                index.mark_stale(&Part::Clients(user.into_bytes()));
            }
            // A CRM delete.
            _ => {
                let id_bytes = id.as_bytes().to_vec();
                store.meetings.remove(&id_bytes);
                let mut effects = vec![Effect::DeleteHash];
                for ((_, field, value), set) in &mut store.filter_sets {
                    if set.contains(&id_bytes) {
                        set.retain(|member| *member != id_bytes);
                        effects.push(Effect::RemoveFromValueSet {
                            field: field.clone(),
                            value: value.clone(),
                        });
                    }
                }
                if let Some(dates) = store.sort_indexes.get_mut(b"date".as_slice()) {
                    dates.remove(&id_bytes);
                }
                effects.push(Effect::RemoveSortScore {
                    field: b"date".to_vec(),
                });
                index.apply_write(&id_bytes, &effects).unwrap();
            }
        }
    }

    #[test]
    fn every_plan_answers_as_the_keyspace_path() {
        for seed in 1..=20 {
            let mut rng = Rng(seed * 7919);
            let store = random_store(&mut rng, 60 + seed * 10);
            let mut index = Index::new(b"10".to_vec());
            for step in 0..40 {
                let query = random_query(&mut rng);
                assert_same(&mut index, &store, &query, step);
            }
        }
    }

    #[test]
    fn changes_are_followed_when_reported() {
        for seed in 1..=10 {
            let mut rng = Rng(seed * 104_729);
            let mut store = random_store(&mut rng, 80);
            let mut index = Index::new(b"10".to_vec());
            let queries: Vec<Query> = (0..6).map(|_| random_query(&mut rng)).collect();
            for query in &queries {
                loaded(&mut index, &store, query);
            }
            for step in 0..300 {
                random_change(&mut store, &mut index, &mut rng, 25);
                for query in &queries {
                    assert_same(&mut index, &store, query, step);
                }
            }
        }
    }

    #[test]
    fn changes_during_a_sliced_load_are_kept() {
        for seed in 1..=12 {
            let mut rng = Rng(seed * 31_337);
            let mut store = random_store(&mut rng, 120);
            store.scan_step = 3;
            let mut index = Index::new(b"10".to_vec());
            let queries: Vec<Query> = (0..5).map(|_| random_query(&mut rng)).collect();
            for query in &queries {
                index.register(&parts_of(query));
            }
            // The deadline has passed: each refresh takes one scan step, then a change (CRM
            // writes only in the first half: a raw write restarts the scans it touches).
            for step in 0..300 {
                let _ = index.refresh(&store, Instant::now()).unwrap();
                let raw_percent = if step < 150 { 0 } else { 3 };
                random_change(&mut store, &mut index, &mut rng, raw_percent);
            }
            for query in &queries {
                assert_same(&mut index, &store, query, 300);
            }
        }
    }

    #[test]
    fn a_row_changed_unreported_fails_the_page_check() {
        let mut rng = Rng(42);
        let mut store = random_store(&mut rng, 50);
        store.clients(
            "9",
            &(0..20)
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        );
        let args: Vec<&[u8]> = vec![b"10", b"9", b"LIMIT", b"0", b"5"];
        let query = parse_query(&args, 1000).unwrap();
        let mut index = Index::new(b"10".to_vec());
        loaded(&mut index, &store, &query);
        let Answer::Page(page, _) = index
            .execute(&store, &query, None, &mut Trace::default())
            .unwrap()
        else {
            panic!("no page");
        };
        // The first meeting's client moves to one the user cannot see, unreported.
        let (first, _) = &page.meetings[0];
        store
            .meetings
            .get_mut(first)
            .unwrap()
            .insert(b"clientid".to_vec(), b"nobody".to_vec());
        let answer = index
            .execute(&store, &query, None, &mut Trace::default())
            .unwrap();
        assert_eq!(answer, Answer::Changed);
        assert_same(&mut index, &store, &query, 0);
    }

    #[test]
    fn order_keys_order_like_floats() {
        let values = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -0.0,
            0.0,
            1e-300,
            3.0,
            f64::INFINITY,
        ];
        for pair in values.windows(2) {
            assert!(order_key(pair[0]) <= order_key(pair[1]), "{pair:?}");
        }
        assert_eq!(order_key(-0.0), order_key(0.0));
    }
}
