//! Planning: look at the size of every set a query names and decide the order of work.
//! Reading every size first also means a key of the wrong type is reported whatever the data.

use super::query::Query;
use super::store::{MeetingStore, SetRef};
use crate::error::CrmError;

/// One FILTER field with the size of each of its value sets.
#[derive(Debug, Clone)]
pub struct PlannedGroup<'q> {
    pub field: &'q [u8],
    pub values: Vec<(&'q [u8], usize)>,
}

impl PlannedGroup<'_> {
    /// An upper bound of the group's union.
    pub fn estimate(&self) -> usize {
        self.values.iter().map(|(_, len)| len).sum()
    }
}

#[derive(Debug, Clone)]
pub struct Plan<'q> {
    /// FILTER groups, smallest first: the first one gives the candidates, the others are
    /// checked against them. Empty when the query has no FILTER (candidates: all meetings).
    pub groups: Vec<PlannedGroup<'q>>,
    /// Whether the sort field has a sorted set; otherwise the hash field is the sort value.
    pub sort_index: bool,
    /// Nothing can match: the user sees no client, or a FILTER field has no member at all.
    pub empty: bool,
}

pub fn plan<'q, S: MeetingStore>(store: &S, query: &'q Query) -> Result<Plan<'q>, CrmError> {
    let installation = query.installation.as_slice();
    let clients = store.set_len(query.visible_clients())?;
    let mut groups = Vec::with_capacity(query.filters.len());
    for group in &query.filters {
        let mut values = Vec::with_capacity(group.values.len());
        for value in &group.values {
            let set = SetRef::Filter {
                installation,
                field: &group.field,
                value,
            };
            values.push((value.as_slice(), store.set_len(set)?));
        }
        groups.push(PlannedGroup {
            field: &group.field,
            values,
        });
    }
    let meetings = if groups.is_empty() {
        store.set_len(SetRef::Meetings { installation })?
    } else {
        0
    };
    let sort_index = store.has_sort_index(installation, &query.sort.field)?;
    groups.sort_by_key(PlannedGroup::estimate);
    let empty = clients == 0
        || groups.iter().any(|group| group.estimate() == 0)
        || (groups.is_empty() && meetings == 0);
    Ok(Plan {
        groups,
        sort_index,
        empty,
    })
}
