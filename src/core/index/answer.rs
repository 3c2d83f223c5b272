//! Answering a query from a ready index: the plan, the matches (client security as bitmap
//! algebra), the page (a walk over score ranges or a heap), then the page checked against
//! the keyspace and its fields read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Instant;

use roaring::{MultiOps, RoaringBitmap};

use super::plan::{self, PlanKind};
use super::{order_key, Index, Loaded, Part, PartMap, SetName, SortData, NO_CLIENT};
use crate::core::dense::Chunked;
use crate::core::keyspace_path::{after_cursor, Cursor};
use crate::core::order::{compare_ids, Ranked};
use crate::core::page::{cut_page, Page};
use crate::core::query::{Query, Range};
use crate::core::store::MeetingStore;
use crate::core::trace::Trace;
use crate::core::types::{Bytes, Direction, CLIENT_FIELD};
use crate::error::{printable, CrmError};

/// Users whose visible meetings stay cached at once.
const MAX_VISIBLE: usize = 1024;
/// Visible meetings are cached from this union cost (meetings of the user's clients) on.
const VISIBLE_CACHE_FROM: u64 = 256;

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

impl<C> Index<C> {
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
        if !self.sorts.contains_key(&query.sort.field)
            || !store.has_sort_index(&self.installation, &query.sort.field)?
        {
            return Ok(Answer::Unsupported("the sort field has no sorted set"));
        }
        let cursor = after_cursor(store, query, true)?;
        let (Some(groups), Some(excluded), Some(ranges)) = (
            filter_groups(&self.sets, query),
            excluded(&self.sets, query),
            range_sorts(&self.sorts, query),
        ) else {
            return Ok(Answer::Unsupported("a set the query reads is not loaded"));
        };
        // What EXCLUDE and RANGE leave of `candidates`.
        let narrow = |mut candidates: RoaringBitmap| {
            for set in &excluded {
                candidates -= *set;
            }
            for (sort, range) in &ranges {
                candidates = in_range(sort, range, &candidates);
            }
            candidates
        };
        let Some(user) = self.users.get(&query.user) else {
            return Ok(Answer::Unsupported("the user's clients are not loaded"));
        };
        // The keyspace path reads every candidate's hash unless the user sees no client:
        // a broken one among them must give its error.
        if !user.data.is_empty()
            && !self.broken.is_empty()
            && !narrow(intersect(&groups)).is_disjoint(&self.broken)
        {
            return Ok(Answer::Unsupported("a candidate's hash cannot be read"));
        }
        // Client-first costs the union of the user's client bitmaps unless it is cached.
        let union_cost: u64 = match self.visible.contains_key(&query.user) {
            true => 0,
            false => user
                .data
                .iter()
                .filter_map(|c| self.client_meetings.get(c as usize))
                .map(|meetings| meetings.len() as u64)
                .sum(),
        };
        let candidates_estimate = groups
            .iter()
            .map(|group| group.iter().map(|set| set.len()).sum::<u64>())
            .min()
            .unwrap_or(0);
        let client_first = plan::client_first(forced, union_cost, candidates_estimate);
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
                &user.data,
                &self.client_meetings,
                union_cost,
                &mut self.counters.visible_built,
            );
            restrict(&visible, &groups)
        } else {
            let candidates = intersect(&groups);
            let clients = &user.data;
            let client_of = &self.client_of;
            RoaringBitmap::from_sorted_iter(candidates.iter().filter(|&o| {
                client_of
                    .get(o as usize)
                    .is_some_and(|&c| c != NO_CLIENT && clients.contains(c))
            }))
            .unwrap_or_default()
        };
        let matches = narrow(matches);
        let total = matches.len();
        let narrowed = match (query.excludes.is_empty(), query.ranges.is_empty()) {
            (true, true) => "",
            (false, true) => "; EXCLUDE sets removed",
            (true, false) => "; RANGE applied",
            (false, false) => "; EXCLUDE sets removed, RANGE applied",
        };
        let how = || {
            let how = if client_first {
                "the user's visible meetings intersected with the filters"
            } else {
                "the filters intersected, then each candidate's client checked"
            };
            format!("{how}{narrowed}")
        };
        let estimate = usize::try_from(candidates_estimate).unwrap_or(usize::MAX);
        trace.record("client security", how, estimate, total as usize, started);
        let Some(facets) = facet_counts(&self.sets, query, &matches) else {
            return Ok(Answer::Unsupported("a set the query reads is not loaded"));
        };

        let Some(sort) = self.sorts.get(&query.sort.field) else {
            return Ok(Answer::Unsupported("the sort field has no sorted set"));
        };
        let keep = query.offset.saturating_add(query.count);
        let walk = plan::walk_ranges(forced, sort.data.order.len() as u64, keep, total);
        let kind = plan::plan_kind(client_first, walk);
        if query.count == 0 || query.offset >= total {
            return Ok(Answer::Page(
                Page {
                    total,
                    meetings: Vec::new(),
                    facets,
                },
                kind,
            ));
        }
        let started = Instant::now();
        let direction = query.sort.direction;
        let page = if walk {
            self.walk(&sort.data, &matches, query, cursor.as_ref())
        } else {
            let cursor = cursor.as_ref().map(|cursor| cursor.ranked(direction));
            let ranked = matches.iter().map(|o| {
                let score = sort
                    .data
                    .scores
                    .get(o as usize)
                    .copied()
                    .filter(|s| !s.is_nan());
                Ranked::new(OrdinalId(self.id(o), o), score, direction)
            });
            let page = match &cursor {
                Some(cursor) => cut_page(ranked.filter(|ranked| ranked > cursor), 0, query.count),
                None => cut_page(ranked, query.offset, query.count),
            };
            page.into_iter().map(|ranked| ranked.id.1).collect()
        };
        let detail = || {
            let how = if walk { "score ranges walked" } else { "heap" };
            format!("{how}, by {}", printable(&query.sort.field))
        };
        trace.record("page", detail, page.len(), page.len(), started);

        self.read_page(store, query, &page, (total, facets), kind, trace)
    }

    /// One read of each page meeting's hash: its client, for the check, and the fields.
    fn read_page<S: MeetingStore>(
        &mut self,
        store: &S,
        query: &Query,
        page: &[u32],
        (total, facets): (u64, Vec<Vec<u64>>),
        kind: PlanKind,
        trace: &mut Trace,
    ) -> Result<Answer, CrmError> {
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
        if !self.page_is_current(store, query, page, live_clients)? {
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
                facets,
            },
            kind,
        ))
    }

    /// The page by walking the score ranges in order: the matches of each range are
    /// counted (ranges before the offset are skipped whole), then ordered by score and id;
    /// meetings without a score come last, by id. With AFTER's `cursor`, the ranges whose
    /// keys all come before the cursor's are skipped unread, and the page starts after it.
    fn walk(
        &self,
        sort: &SortData,
        matches: &RoaringBitmap,
        query: &Query,
        cursor: Option<&Cursor>,
    ) -> Vec<u32> {
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
        let score_of = |o: u32| sort.scores.get(o as usize).copied().filter(|s| !s.is_nan());
        let key_of = |o: u32| score_of(o).map_or(0, order_key);
        // AFTER: a meeting is kept when it ranks after the cursor.
        let ranked_cursor = cursor.map(|cursor| cursor.ranked(query.sort.direction));
        let after = |o: u32| {
            ranked_cursor.as_ref().is_none_or(|cursor| {
                Ranked::new(OrdinalId(self.id(o), o), score_of(o), query.sort.direction) > *cursor
            })
        };
        // The cursor's key; `None` inside: it has no score, so every range comes before it.
        let cursor_key = cursor.map(|cursor| cursor.value.map(order_key));
        for (low, end, range) in sort.order.in_order_with_keys(descending) {
            let before_cursor = cursor_key.is_some_and(|key| match key {
                None => true,
                Some(key) if descending => low > key,
                Some(key) => end.is_some_and(|end| end <= key),
            });
            if before_cursor {
                continue;
            }
            let found = range.intersection_len(matches);
            if found == 0 {
                continue;
            }
            if seen + found <= query.offset {
                seen += found;
                continue;
            }
            let members = (range & matches)
                .iter()
                .filter(|&o| after(o))
                .map(|o| (key_of(o), o))
                .collect();
            if emit(members, &mut seen, &mut page) {
                return page;
            }
        }
        // Every key the same: the meetings without a score, by id.
        let unscored = (matches - &sort.scored)
            .iter()
            .filter(|&o| after(o))
            .map(|o| (0, o))
            .collect();
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
    sets: &'a PartMap<SetName, Loaded<C, RoaringBitmap>>,
    query: &Query,
) -> Option<Vec<Vec<&'a RoaringBitmap>>> {
    if query.filters.is_empty() {
        return Some(vec![vec![&sets.get(&SetName::Meetings)?.data]]);
    }
    let mut groups = Vec::with_capacity(query.filters.len());
    for group in &query.filters {
        let mut members = Vec::with_capacity(group.values.len());
        for value in &group.values {
            let name = SetName::Value(group.field.clone(), value.clone());
            members.push(&sets.get(&name)?.data);
        }
        groups.push(members);
    }
    // Smallest first: every later intersection works on less.
    groups.sort_by_key(|group| group.iter().map(|set| set.len()).sum::<u64>());
    Some(groups)
}

/// The EXCLUDE sets' bitmaps (none without EXCLUDE), each subtracted as it is: a union
/// would copy them; `None` when one is not loaded.
fn excluded<'a, C>(
    sets: &'a PartMap<SetName, Loaded<C, RoaringBitmap>>,
    query: &Query,
) -> Option<Vec<&'a RoaringBitmap>> {
    query
        .excludes
        .iter()
        .flat_map(|group| {
            group
                .values
                .iter()
                .map(|value| SetName::Value(group.field.clone(), value.clone()))
        })
        .map(|name| Some(&sets.get(&name)?.data))
        .collect()
}

/// CRM.FACETS: for each FIELD, the matches in each value's set; `None` when one is not
/// loaded.
fn facet_counts<C>(
    sets: &PartMap<SetName, Loaded<C, RoaringBitmap>>,
    query: &Query,
    matches: &RoaringBitmap,
) -> Option<Vec<Vec<u64>>> {
    let mut counts = Vec::with_capacity(query.facets.len());
    for facet in &query.facets {
        let mut field_counts = Vec::with_capacity(facet.values.len());
        for value in &facet.values {
            let name = SetName::Value(facet.field.clone(), value.clone());
            field_counts.push(sets.get(&name)?.data.intersection_len(matches));
        }
        counts.push(field_counts);
    }
    Some(counts)
}

/// Each RANGE with its field's sort data; `None` when one is not loaded.
fn range_sorts<'a, C>(
    sorts: &'a PartMap<Bytes, Loaded<C, SortData>>,
    query: &'a Query,
) -> Option<Vec<(&'a SortData, &'a Range)>> {
    query
        .ranges
        .iter()
        .map(|range| Some((&sorts.get(&range.field)?.data, range)))
        .collect()
}

/// The meetings of `within` whose score lies in `range`, from the score ranges of the
/// sort's buckets, as order keys (every bound inclusive: an exclusive one moves to the next
/// key).
fn in_range(sort: &SortData, range: &Range, within: &RoaringBitmap) -> RoaringBitmap {
    let low = match range.min.exclusive {
        false => Some(order_key(range.min.score)),
        true => order_key(range.min.score).checked_add(1),
    };
    let high = match range.max.exclusive {
        false => Some(order_key(range.max.score)),
        true => order_key(range.max.score).checked_sub(1),
    };
    let (Some(low), Some(high)) = (low, high) else {
        return RoaringBitmap::new();
    };
    let key_of = |o: u32| sort.scores.get(o as usize).map_or(0, |&s| order_key(s));
    sort.order.in_range(low, high, key_of, within)
}

/// A user's visible meetings (the union of their clients' meetings). Cached when the union
/// costs `union_cost` of [`VISIBLE_CACHE_FROM`] or more (a small one is cheaper to make
/// again than to keep, in thousands of small installations); at most [`MAX_VISIBLE`] users
/// keep one (every client change updates each).
fn visible<'a>(
    cache: &'a mut HashMap<Bytes, RoaringBitmap>,
    user: &[u8],
    clients: &RoaringBitmap,
    client_meetings: &Chunked<Vec<u32>>,
    union_cost: u64,
    built: &mut u64,
) -> Cow<'a, RoaringBitmap> {
    if cache.contains_key(user) {
        static NONE: LazyLock<RoaringBitmap> = LazyLock::new(RoaringBitmap::new);
        return Cow::Borrowed(cache.get(user).unwrap_or(&NONE));
    }
    let mut union = RoaringBitmap::new();
    for meetings in clients
        .iter()
        .filter_map(|client| client_meetings.get(client as usize))
    {
        union.extend(meetings.iter().copied());
    }
    if union_cost < VISIBLE_CACHE_FROM {
        return Cow::Owned(union);
    }
    if cache.len() >= MAX_VISIBLE {
        let evicted = cache.keys().next().cloned();
        if let Some(evicted) = evicted {
            cache.remove(&evicted);
        }
    }
    *built += 1;
    Cow::Borrowed(cache.entry(user.to_vec()).or_insert(union))
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

impl Cursor {
    /// The cursor as a meeting of the index ranks (an ordinal no meeting has).
    fn ranked(&self, direction: Direction) -> Ranked<OrdinalId<'_>> {
        Ranked::new(OrdinalId(&self.id, u32::MAX), self.value, direction)
    }
}

impl AsRef<[u8]> for OrdinalId<'_> {
    fn as_ref(&self) -> &[u8] {
        self.0
    }
}
