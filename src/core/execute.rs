//! Execution of a planned query over a store: candidates from the filter sets, client
//! security, sort values, then one page and its fields. Each step is recorded in a
//! [`Trace`] (a handful of entries per query), which CRM.EXPLAIN returns.

use std::collections::HashSet;
use std::time::Instant;

use super::order::{parse_sort_value, Ranked};
use super::page::cut_page;
use super::plan::{plan, Plan, PlannedGroup};
use super::query::{Bytes, Query};
use super::store::{MeetingStore, SetRef};
use crate::error::{printable, CrmError};

/// One page of a query's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// Visible matches before paging.
    pub total: u64,
    /// Each meeting of the page in order, with the values of the returned fields
    /// (`details` unless RETURN names others); `None` where the hash lacks a field.
    pub meetings: Vec<(Bytes, Vec<Option<Bytes>>)>,
}

/// What one step of a query did: its estimate from set sizes, what it found, how long.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceStep {
    pub name: &'static str,
    pub detail: String,
    pub estimated: u64,
    pub actual: u64,
    pub micros: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trace {
    pub steps: Vec<TraceStep>,
    /// Off for CRM.MEETINGS: the step details are then never formatted.
    recording: bool,
}

impl Trace {
    /// A trace that records every step (CRM.EXPLAIN).
    pub fn recording() -> Self {
        Trace {
            steps: Vec::new(),
            recording: true,
        }
    }

    pub(crate) fn record(
        &mut self,
        name: &'static str,
        detail: impl FnOnce() -> String,
        estimated: usize,
        actual: usize,
        since: Instant,
    ) {
        if !self.recording {
            return;
        }
        self.steps.push(TraceStep {
            name,
            detail: detail(),
            estimated: estimated as u64,
            actual: actual as u64,
            micros: u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX),
        });
    }
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
    let plan = plan(store, query)?;
    let groups = plan.groups.len();
    trace.record("plan", || describe(query, &plan), groups, groups, started);
    if plan.empty {
        return Ok(Page::default());
    }
    let installation = query.installation.as_slice();
    let candidates = candidates(store, query, &plan, trace)?;
    if candidates.is_empty() {
        return Ok(Page::default());
    }

    // Client security: a meeting is visible only if its hash names a client the user sees.
    let started = Instant::now();
    let clients: HashSet<Bytes> = store
        .set_members(query.visible_clients())?
        .into_iter()
        .collect();
    let hash_sort_field = (!plan.sort_index).then_some(query.sort.field.as_slice());
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
    let total = visible.len() as u64;
    if query.count == 0 || query.offset >= total {
        return Ok(Page {
            total,
            meetings: Vec::new(),
        });
    }

    let started = Instant::now();
    let values: Vec<Option<f64>> = if plan.sort_index {
        store.sort_scores(installation, &query.sort.field, &visible)?
    } else {
        hash_values
            .iter()
            .map(|raw| raw.as_deref().and_then(parse_sort_value))
            .collect()
    };
    let with_value = values.iter().filter(|value| value.is_some()).count();
    let source = if plan.sort_index {
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
    let page_ids: Vec<Bytes> = cut_page(ranked, query.offset, query.count)
        .into_iter()
        .map(|ranked| ranked.id)
        .collect();
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
    })
}

fn describe(query: &Query, plan: &Plan<'_>) -> String {
    let groups: Vec<String> = plan
        .groups
        .iter()
        .map(|group| format!("{} (~{})", printable(group.field), group.estimate()))
        .collect();
    let order = if groups.is_empty() {
        "all meetings of the installation".to_string()
    } else {
        format!("FILTER groups smallest first: {}", groups.join(", "))
    };
    let sort = if plan.sort_index {
        "sorted set"
    } else {
        "hash field"
    };
    format!(
        "{order}; sort by {} from its {sort}{}",
        printable(&query.sort.field),
        if plan.empty {
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
    plan: &Plan<'_>,
    trace: &mut Trace,
) -> Result<Vec<Bytes>, CrmError> {
    let installation = query.installation.as_slice();
    let started = Instant::now();
    let Some((first, others)) = plan.groups.split_first() else {
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
    let mut survivors = distinct(survivors);
    let detail = || format!("read {} whole", printable(first.field));
    trace.record(
        "candidates",
        detail,
        first.estimate(),
        survivors.len(),
        started,
    );
    for group in others {
        if survivors.is_empty() {
            break;
        }
        let started = Instant::now();
        let before = survivors.len();
        let mut keep = vec![false; survivors.len()];
        let mut how = Vec::new();
        for &(value, len) in &group.values {
            let set = filter_set(installation, group, value);
            if len == 0 {
                continue;
            } else if len <= survivors.len() {
                how.push("read");
                let members: HashSet<Bytes> = store.set_members(set)?.into_iter().collect();
                for (kept, id) in keep.iter_mut().zip(&survivors) {
                    *kept |= members.contains(id);
                }
            } else {
                how.push("probe");
                let found = store.set_contains_each(set, &survivors)?;
                for (kept, member) in keep.iter_mut().zip(found) {
                    *kept |= member;
                }
            }
        }
        let mut keep = keep.into_iter();
        survivors.retain(|_| keep.next().unwrap_or(false));
        let detail = || format!("{} ({})", printable(group.field), how.join(", "));
        trace.record(
            "filter",
            detail,
            before.min(group.estimate()),
            survivors.len(),
            started,
        );
    }
    Ok(survivors)
}

fn filter_set<'q>(installation: &'q [u8], group: &PlannedGroup<'q>, value: &'q [u8]) -> SetRef<'q> {
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
