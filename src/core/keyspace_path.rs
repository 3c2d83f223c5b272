//! The keyspace path: a query answered by reading the store's sets directly, the fallback
//! when the index cannot answer and the oracle the index is tested against. First the
//! size of every set the query names (so a key of the wrong type is reported whatever the
//! data, and the smallest FILTER group leads), then candidates from the filter sets,
//! client security, sort values, one page and its fields, each step recorded in a
//! [`Trace`].

use std::collections::HashSet;
use std::time::Instant;

use super::order::Ranked;
use super::page::{cut_page, Page};
use super::query::{FilterGroup, Query};
use super::store::MeetingStore;
use super::trace::Trace;
use super::types::{Bytes, SetRef};
use super::values::hash_sort_value;
use crate::error::{printable, CrmError};

/// One FILTER field with the size of each of its value sets.
#[derive(Debug, Clone)]
struct SizedGroup<'q> {
    field: &'q [u8],
    values: Vec<(&'q [u8], usize)>,
}

impl SizedGroup<'_> {
    /// An upper bound of the group's union.
    fn estimate(&self) -> usize {
        self.values.iter().map(|(_, len)| len).sum()
    }
}

#[derive(Debug, Clone)]
struct SetSizes<'q> {
    /// FILTER groups, smallest first: the first one gives the candidates, the others are
    /// checked against them. Empty when the query has no FILTER (candidates: all meetings).
    groups: Vec<SizedGroup<'q>>,
    /// EXCLUDE groups: a candidate in any of their sets is dropped.
    excludes: Vec<SizedGroup<'q>>,
    /// CRM.FACETS's FIELDs, each value with its set's size.
    facets: Vec<SizedGroup<'q>>,
    /// Whether the sort field has a sorted set; otherwise the hash field is the sort value.
    sort_index: bool,
    /// Nothing can match: the user sees no client, or a FILTER field has no member at all.
    empty: bool,
    /// The members of the user's clients set and of the installation's set (read only
    /// without FILTER).
    clients: usize,
    meetings: usize,
}

/// The cost of `query` on the keyspace path, known before any meeting is read: the
/// meeting hashes it reads at most (its smallest FILTER group, or the installation's
/// set), plus a tenth of its clients (a hash takes 1 to 3 µs to read, a client 0.1 µs).
pub fn estimated_reads<S: MeetingStore>(store: &S, query: &Query) -> Result<usize, CrmError> {
    let sizes = measure(store, query)?;
    if sizes.empty {
        return Ok(0);
    }
    let hashes = sizes
        .groups
        .first()
        .map_or(sizes.meetings, SizedGroup::estimate);
    Ok(hashes.saturating_add(sizes.clients / 10))
}

fn measure<'q, S: MeetingStore>(store: &S, query: &'q Query) -> Result<SetSizes<'q>, CrmError> {
    let installation = query.installation.as_slice();
    let clients = store.set_len(query.visible_clients())?;
    let mut groups = sized_groups(store, installation, &query.filters)?;
    let excludes = sized_groups(store, installation, &query.excludes)?;
    let meetings = if groups.is_empty() {
        store.set_len(SetRef::Meetings { installation })?
    } else {
        0
    };
    let sort_index = store.has_sort_index(installation, &query.sort.field)?;
    // A RANGE field without its sorted set: no meeting has a value, none is in range.
    let mut unranged = false;
    for range in &query.ranges {
        unranged |= !store.has_sort_index(installation, &range.field)?;
    }
    let facets = sized_groups(store, installation, &query.facets)?;
    groups.sort_by_key(SizedGroup::estimate);
    let empty = clients == 0
        || unranged
        || groups.iter().any(|group| group.estimate() == 0)
        || (groups.is_empty() && meetings == 0);
    Ok(SetSizes {
        groups,
        excludes,
        facets,
        sort_index,
        empty,
        clients,
        meetings,
    })
}

/// Each group with the size of each of its value sets, in the query's order.
fn sized_groups<'q, S: MeetingStore>(
    store: &S,
    installation: &'q [u8],
    groups: &'q [FilterGroup],
) -> Result<Vec<SizedGroup<'q>>, CrmError> {
    let mut sized = Vec::with_capacity(groups.len());
    for group in groups {
        let mut values = Vec::with_capacity(group.values.len());
        for value in &group.values {
            let set = SetRef::Filter {
                installation,
                field: &group.field,
                value,
            };
            values.push((value.as_slice(), store.set_len(set)?));
        }
        sized.push(SizedGroup {
            field: &group.field,
            values,
        });
    }
    Ok(sized)
}

pub fn execute<S: MeetingStore>(store: &S, query: &Query) -> Result<Page, CrmError> {
    execute_traced(store, query, &mut Trace::default())
}

pub fn execute_traced<S: MeetingStore>(
    store: &S,
    query: &Query,
    trace: &mut Trace,
) -> Result<Page, CrmError> {
    let started = Instant::now();
    let sizes = measure(store, query)?;
    let groups = sizes.groups.len();
    trace.record("plan", || describe(query, &sizes), groups, groups, started);
    let cursor = after_cursor(store, query, sizes.sort_index)?;
    if sizes.empty {
        return Ok(Page::nothing(query));
    }
    let installation = query.installation.as_slice();
    let candidates = candidates(store, query, &sizes, trace)?;
    let candidates = keep_by_groups(
        store,
        installation,
        &sizes.excludes,
        candidates,
        Keep::InNone,
        trace,
    )?;
    let candidates = keep_in_ranges(store, query, candidates, trace)?;
    if candidates.is_empty() {
        return Ok(Page::nothing(query));
    }

    // Client security: a meeting is visible only if its hash names a client the user sees.
    let started = Instant::now();
    let clients: HashSet<Bytes> = store
        .set_members(query.visible_clients())?
        .into_iter()
        .collect();
    let hash_sort_field = (!sizes.sort_index).then_some(query.sort.field.as_slice());
    let rows = store.meeting_rows(installation, &candidates, hash_sort_field)?;
    let considered = candidates.len();
    let mut visible = Vec::new();
    let mut hash_values = Vec::new();
    for (id, row) in candidates.into_iter().zip(rows) {
        let Some(row) = row else { continue };
        if row
            .client
            .as_ref()
            .is_some_and(|client| clients.contains(client))
        {
            visible.push(id);
            hash_values.push(row.sort_value);
        }
    }
    let detail = || {
        format!(
            "{} visible clients, {considered} meeting hashes read",
            clients.len()
        )
    };
    trace.record(
        "client security",
        detail,
        considered,
        visible.len(),
        started,
    );
    let facets = count_facets(store, query, &sizes.facets, &visible, trace)?;
    let total = visible.len() as u64;
    if query.count == 0 || query.offset >= total {
        return Ok(Page {
            total,
            meetings: Vec::new(),
            facets,
        });
    }

    let started = Instant::now();
    let values: Vec<Option<f64>> = if sizes.sort_index {
        store.sort_scores(installation, &query.sort.field, &visible)?
    } else {
        hash_values
            .iter()
            .map(|raw| raw.as_deref().and_then(hash_sort_value))
            .collect()
    };
    let with_value = values.iter().filter(|value| value.is_some()).count();
    let source = if sizes.sort_index {
        "sorted set"
    } else {
        "hash field"
    };
    let detail = || format!("{} from its {source}", printable(&query.sort.field));
    trace.record("sort values", detail, visible.len(), with_value, started);

    let started = Instant::now();
    let keep = query.offset.saturating_add(query.count);
    let direction = query.sort.direction;
    let ranked = visible
        .into_iter()
        .zip(values)
        .map(|(id, value)| Ranked::new(id, value, direction));
    let page = match cursor {
        Some(cursor) => {
            let cursor = Ranked::new(cursor.id, cursor.value, direction);
            cut_page(ranked.filter(|ranked| *ranked > cursor), 0, query.count)
        }
        None => cut_page(ranked, query.offset, query.count),
    };
    let page_ids: Vec<Bytes> = page.into_iter().map(|ranked| ranked.id).collect();
    let expected = usize::try_from(query.count.min(total - query.offset)).unwrap_or(usize::MAX);
    trace.record(
        "page",
        || format!("heap of {keep}"),
        expected,
        page_ids.len(),
        started,
    );

    let started = Instant::now();
    let fields = query.returned_fields();
    let values = store.fields(installation, &page_ids, &fields)?;
    let names = || {
        let names: Vec<String> = fields.iter().map(|field| printable(field)).collect();
        names.join(" ")
    };
    trace.record("fields", names, page_ids.len(), values.len(), started);
    Ok(Page {
        total,
        meetings: page_ids.into_iter().zip(values).collect(),
        facets,
    })
}

/// AFTER's meeting: its id and its current sort value (from the sort field's sorted set
/// when `sort_index`, else from its hash field), where it ranks in the query's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Cursor {
    pub id: Bytes,
    pub value: Option<f64>,
}

/// The meeting AFTER names (`None` without AFTER); an error when it has no hash: a deleted
/// cursor must not silently jump to the end.
pub fn after_cursor<S: MeetingStore>(
    store: &S,
    query: &Query,
    sort_index: bool,
) -> Result<Option<Cursor>, CrmError> {
    let Some(id) = &query.after else {
        return Ok(None);
    };
    let installation = query.installation.as_slice();
    let ids = [id.clone()];
    let hash_field = (!sort_index).then_some(query.sort.field.as_slice());
    let row = store.meeting_rows(installation, &ids, hash_field)?;
    let Some(row) = row.into_iter().next().flatten() else {
        return Err(CrmError::BadArgument(format!(
            "AFTER: meeting '{}' does not exist",
            printable(id)
        )));
    };
    let value = if sort_index {
        let scores = store.sort_scores(installation, &query.sort.field, &ids)?;
        scores.into_iter().next().flatten()
    } else {
        row.sort_value.as_deref().and_then(hash_sort_value)
    };
    Ok(Some(Cursor {
        id: id.clone(),
        value,
    }))
}

fn describe(query: &Query, sizes: &SetSizes<'_>) -> String {
    let listed = |groups: &[SizedGroup<'_>]| -> String {
        let groups: Vec<String> = groups
            .iter()
            .map(|group| format!("{} (~{})", printable(group.field), group.estimate()))
            .collect();
        groups.join(", ")
    };
    let mut order = if sizes.groups.is_empty() {
        "all meetings of the installation".to_string()
    } else {
        format!("FILTER groups smallest first: {}", listed(&sizes.groups))
    };
    if !sizes.excludes.is_empty() {
        order.push_str(&format!("; EXCLUDE {}", listed(&sizes.excludes)));
    }
    let sort = if sizes.sort_index {
        "sorted set"
    } else {
        "hash field"
    };
    format!(
        "{order}; sort by {} from its {sort}{}",
        printable(&query.sort.field),
        if sizes.empty {
            "; nothing can match"
        } else {
            ""
        }
    )
}

/// Distinct ids that pass every FILTER (or all the installation's meetings without FILTER).
/// The smallest group is read whole; each other group is checked against the survivors,
/// reading a value set whole when it is smaller than the survivors and probing otherwise.
fn candidates<S: MeetingStore>(
    store: &S,
    query: &Query,
    sizes: &SetSizes<'_>,
    trace: &mut Trace,
) -> Result<Vec<Bytes>, CrmError> {
    let installation = query.installation.as_slice();
    let started = Instant::now();
    let Some((first, others)) = sizes.groups.split_first() else {
        let all = distinct(store.set_members(SetRef::Meetings { installation })?);
        let estimate = all.len();
        trace.record(
            "candidates",
            || "the installation's set".into(),
            estimate,
            all.len(),
            started,
        );
        return Ok(all);
    };
    let mut survivors = Vec::with_capacity(first.estimate());
    for &(value, len) in &first.values {
        if len > 0 {
            survivors.extend(store.set_members(filter_set(installation, first, value))?);
        }
    }
    let survivors = distinct(survivors);
    let detail = || format!("read {} whole", printable(first.field));
    trace.record(
        "candidates",
        detail,
        first.estimate(),
        survivors.len(),
        started,
    );
    keep_by_groups(store, installation, others, survivors, Keep::InEach, trace)
}

/// Which survivors [`keep_by_groups`] keeps.
#[derive(Clone, Copy, PartialEq)]
enum Keep {
    /// Those in one of each group's sets (FILTER).
    InEach,
    /// Those in none of the groups' sets (EXCLUDE).
    InNone,
}

/// The survivors each group keeps, one group after another, each recorded as a step.
fn keep_by_groups<S: MeetingStore>(
    store: &S,
    installation: &[u8],
    groups: &[SizedGroup<'_>],
    mut survivors: Vec<Bytes>,
    keep: Keep,
    trace: &mut Trace,
) -> Result<Vec<Bytes>, CrmError> {
    for group in groups {
        if survivors.is_empty() {
            break;
        }
        let started = Instant::now();
        let before = survivors.len();
        let (members, how) = in_group(store, installation, group, &survivors)?;
        let mut members = members.into_iter();
        survivors.retain(|_| members.next().unwrap_or(false) == (keep == Keep::InEach));
        let detail = || format!("{} ({})", printable(group.field), how.join(", "));
        let (step, estimate) = match keep {
            Keep::InEach => ("filter", before.min(group.estimate())),
            Keep::InNone => ("exclude", before),
        };
        trace.record(step, detail, estimate, survivors.len(), started);
    }
    Ok(survivors)
}

/// The candidates whose score in each RANGE field's sorted set lies in its range.
fn keep_in_ranges<S: MeetingStore>(
    store: &S,
    query: &Query,
    mut survivors: Vec<Bytes>,
    trace: &mut Trace,
) -> Result<Vec<Bytes>, CrmError> {
    for range in &query.ranges {
        if survivors.is_empty() {
            break;
        }
        let started = Instant::now();
        let before = survivors.len();
        let scores = store.sort_scores(&query.installation, &range.field, &survivors)?;
        let mut scores = scores.into_iter();
        survivors.retain(|_| {
            scores
                .next()
                .flatten()
                .is_some_and(|score| range.contains(score))
        });
        let detail = || format!("{} by its sorted set", printable(&range.field));
        trace.record("range", detail, before, survivors.len(), started);
    }
    Ok(survivors)
}

/// CRM.FACETS: for each FIELD, how many of the visible matches each value's set holds.
fn count_facets<S: MeetingStore>(
    store: &S,
    query: &Query,
    facets: &[SizedGroup<'_>],
    visible: &[Bytes],
    trace: &mut Trace,
) -> Result<Vec<Vec<u64>>, CrmError> {
    let mut counts = Vec::with_capacity(facets.len());
    for facet in facets {
        let started = Instant::now();
        let mut field_counts = Vec::with_capacity(facet.values.len());
        for &(value, len) in &facet.values {
            let one = SizedGroup {
                field: facet.field,
                values: vec![(value, len)],
            };
            let (members, _) = in_group(store, &query.installation, &one, visible)?;
            field_counts.push(members.iter().filter(|&&member| member).count() as u64);
        }
        let counted: u64 = field_counts.iter().sum();
        let detail = || format!("{} in each named value's set", printable(facet.field));
        trace.record("facets", detail, visible.len(), counted as usize, started);
        counts.push(field_counts);
    }
    Ok(counts)
}

/// Whether each of `ids` is in one of `group`'s sets, and how each set was read: whole when
/// it is no bigger than `ids`, probed otherwise.
fn in_group<S: MeetingStore>(
    store: &S,
    installation: &[u8],
    group: &SizedGroup<'_>,
    ids: &[Bytes],
) -> Result<(Vec<bool>, Vec<&'static str>), CrmError> {
    let mut found = vec![false; ids.len()];
    let mut how = Vec::new();
    for &(value, len) in &group.values {
        let set = filter_set(installation, group, value);
        if len == 0 {
            continue;
        } else if len <= ids.len() {
            how.push("read");
            let members: HashSet<Bytes> = store.set_members(set)?.into_iter().collect();
            for (hit, id) in found.iter_mut().zip(ids) {
                *hit |= members.contains(id);
            }
        } else {
            how.push("probe");
            let members = store.set_contains_each(set, ids)?;
            for (hit, member) in found.iter_mut().zip(members) {
                *hit |= member;
            }
        }
    }
    Ok((found, how))
}

fn filter_set<'q>(installation: &'q [u8], group: &SizedGroup<'q>, value: &'q [u8]) -> SetRef<'q> {
    SetRef::Filter {
        installation,
        field: group.field,
        value,
    }
}

fn distinct(ids: Vec<Bytes>) -> Vec<Bytes> {
    let unique: HashSet<Bytes> = ids.into_iter().collect();
    unique.into_iter().collect()
}
