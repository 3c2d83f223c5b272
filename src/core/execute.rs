//! Execution of a planned query over a store: candidates from the filter sets, client
//! security, sort values, then one page and its details.

use std::collections::HashSet;

use super::order::{parse_sort_value, Ranked};
use super::page::cut_page;
use super::plan::{plan, Plan, PlannedGroup};
use super::query::{Bytes, Query};
use super::store::{MeetingStore, SetRef};
use crate::error::CrmError;

/// One page of a query's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// Visible matches before paging.
    pub total: u64,
    /// `(id, details)` in order; `details` is `None` where the hash lacks it.
    pub meetings: Vec<(Bytes, Option<Bytes>)>,
}

pub fn execute<S: MeetingStore>(store: &S, query: &Query) -> Result<Page, CrmError> {
    let plan = plan(store, query)?;
    if plan.empty {
        return Ok(Page::default());
    }
    let installation = query.installation.as_slice();
    let candidates = candidates(store, query, &plan)?;
    if candidates.is_empty() {
        return Ok(Page::default());
    }

    // Client security: a meeting is visible only if its hash names a client the user sees.
    let clients: HashSet<Bytes> = store
        .set_members(query.visible_clients())?
        .into_iter()
        .collect();
    let hash_sort_field = (!plan.sort_index).then_some(query.sort.field.as_slice());
    let rows = store.meeting_rows(installation, &candidates, hash_sort_field)?;
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
    let total = visible.len() as u64;
    if query.count == 0 || query.offset >= total {
        return Ok(Page {
            total,
            meetings: Vec::new(),
        });
    }

    let values: Vec<Option<f64>> = if plan.sort_index {
        store.sort_scores(installation, &query.sort.field, &visible)?
    } else {
        hash_values
            .iter()
            .map(|raw| raw.as_deref().and_then(parse_sort_value))
            .collect()
    };
    let direction = query.sort.direction;
    let ranked = visible
        .into_iter()
        .zip(values)
        .map(|(id, value)| Ranked::new(id, value, direction));
    let page_ids: Vec<Bytes> = cut_page(ranked, query.offset, query.count)
        .into_iter()
        .map(|ranked| ranked.id)
        .collect();
    let details = store.details(installation, &page_ids)?;
    Ok(Page {
        total,
        meetings: page_ids.into_iter().zip(details).collect(),
    })
}

/// Distinct ids that pass every FILTER (or all the installation's meetings without FILTER).
/// The smallest group is read whole; each other group is checked against the survivors,
/// reading a value set whole when it is smaller than the survivors and probing otherwise.
fn candidates<S: MeetingStore>(
    store: &S,
    query: &Query,
    plan: &Plan<'_>,
) -> Result<Vec<Bytes>, CrmError> {
    let installation = query.installation.as_slice();
    let Some((first, others)) = plan.groups.split_first() else {
        let all = store.set_members(SetRef::Meetings { installation })?;
        return Ok(distinct(all));
    };
    let mut survivors = Vec::with_capacity(first.estimate());
    for &(value, len) in &first.values {
        if len > 0 {
            survivors.extend(store.set_members(filter_set(installation, first, value))?);
        }
    }
    let mut survivors = distinct(survivors);
    for group in others {
        if survivors.is_empty() {
            break;
        }
        let mut keep = vec![false; survivors.len()];
        for &(value, len) in &group.values {
            let set = filter_set(installation, group, value);
            if len == 0 {
                continue;
            } else if len <= survivors.len() {
                let members: HashSet<Bytes> = store.set_members(set)?.into_iter().collect();
                for (kept, id) in keep.iter_mut().zip(&survivors) {
                    *kept |= members.contains(id);
                }
            } else {
                let found = store.set_contains_each(set, &survivors)?;
                for (kept, member) in keep.iter_mut().zip(found) {
                    *kept |= member;
                }
            }
        }
        let mut keep = keep.into_iter();
        survivors.retain(|_| keep.next().unwrap_or(false));
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
