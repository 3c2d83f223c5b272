//! One page of an answer, and cutting it out of the ranked matches without sorting all
//! of them.

use std::collections::BinaryHeap;

use super::query::Query;
use super::types::Bytes;

/// One page of a query's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// Visible matches before paging.
    pub total: u64,
    /// Each meeting of the page in order, with the values of the returned fields
    /// (`details` unless RETURN names others); `None` where the hash lacks a field.
    pub meetings: Vec<(Bytes, Vec<Option<Bytes>>)>,
    /// CRM.FACETS: per FIELD, the matches in each value's set, in the order named.
    pub facets: Vec<Vec<u64>>,
}

impl Page {
    /// No match: a total of 0, no meeting, every facet count 0.
    pub fn nothing(query: &Query) -> Page {
        Page {
            total: 0,
            meetings: Vec::new(),
            facets: query
                .facets
                .iter()
                .map(|facet| vec![0; facet.values.len()])
                .collect(),
        }
    }
}

/// The `count` best items after skipping `offset`, in order. Keeps a max-heap of at most
/// `offset + count` items, so the work is O(n log(offset + count)) and the memory bounded.
pub fn cut_page<T: Ord>(items: impl IntoIterator<Item = T>, offset: u64, count: u64) -> Vec<T> {
    let keep = usize::try_from(offset.saturating_add(count)).unwrap_or(usize::MAX);
    if count == 0 || keep == 0 {
        return Vec::new();
    }
    let mut best: BinaryHeap<T> = BinaryHeap::new();
    for item in items {
        if best.len() < keep {
            best.push(item);
        } else if best.peek().is_some_and(|worst| item < *worst) {
            best.pop();
            best.push(item);
        }
    }
    let skip = usize::try_from(offset).unwrap_or(usize::MAX);
    let take = usize::try_from(count).unwrap_or(usize::MAX);
    best.into_sorted_vec()
        .into_iter()
        .skip(skip)
        .take(take)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::Ranked;
    use crate::core::types::Direction;

    fn ranked(values: &[u32]) -> Vec<Ranked> {
        values
            .iter()
            .map(|&v| {
                Ranked::new(
                    v.to_string().into_bytes(),
                    Some(f64::from(v)),
                    Direction::Asc,
                )
            })
            .collect()
    }

    fn ids(page: &[Ranked]) -> Vec<String> {
        page.iter()
            .map(|r| String::from_utf8_lossy(&r.id).into_owned())
            .collect()
    }

    #[test]
    fn pages_match_a_full_sort() {
        let values: Vec<u32> = (0..200).map(|i| (i * 7919) % 211).collect();
        let mut sorted = ranked(&values);
        sorted.sort();
        for (offset, count) in [(0, 10), (5, 3), (190, 20), (250, 5), (0, 0), (0, 1000)] {
            let page = cut_page(ranked(&values), offset, count);
            let expected: Vec<Ranked> = sorted
                .iter()
                .skip(offset as usize)
                .take(count as usize)
                .cloned()
                .collect();
            assert_eq!(ids(&page), ids(&expected), "offset {offset} count {count}");
        }
    }

    #[test]
    fn huge_offset_is_an_empty_page() {
        assert!(cut_page(ranked(&[1, 2, 3]), u64::MAX, 10).is_empty());
    }
}
