//! The total order of a result: by sort value (ascending or descending), meetings without a
//! sort value last in both directions, ties broken by id the same way in both directions.

use std::cmp::Ordering;

use super::types::{Bytes, Direction};

/// Ids in canonical integer form first, in numeric order, then every other id in byte order.
/// Integers are compared by sign, length and digits, so ids of any length order correctly.
pub fn compare_ids(a: &[u8], b: &[u8]) -> Ordering {
    match (canonical_integer(a), canonical_integer(b)) {
        (Some(a), Some(b)) => compare_integers(a, b),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `(negative, digits)` when `id` is `0` or an optional `-` followed by digits without a
/// leading zero (`-0` is not canonical, as in Redis).
fn canonical_integer(id: &[u8]) -> Option<(bool, &[u8])> {
    let (negative, digits) = match id.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, id),
    };
    let first = *digits.first()?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if first == b'0' && (digits.len() > 1 || negative) {
        return None;
    }
    Some((negative, digits))
}

fn compare_integers((a_neg, a): (bool, &[u8]), (b_neg, b): (bool, &[u8])) -> Ordering {
    let magnitude = a.len().cmp(&b.len()).then_with(|| a.cmp(b));
    match (a_neg, b_neg) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

/// One visible meeting with what orders it. Descending order is stored as the negated value,
/// so one `Ord` serves both directions and ties still break by ascending id. The id is owned
/// (`Bytes`, the keyspace path) or borrowed from the index.
#[derive(Debug, Clone)]
pub struct Ranked<I = Bytes> {
    key: Option<f64>,
    pub id: I,
}

impl<I: AsRef<[u8]>> Ranked<I> {
    pub fn new(id: I, value: Option<f64>, direction: Direction) -> Self {
        let key = match direction {
            Direction::Asc => value,
            Direction::Desc => value.map(|v| -v),
        };
        Ranked { key, id }
    }
}

impl<I: AsRef<[u8]>> Ord for Ranked<I> {
    fn cmp(&self, other: &Self) -> Ordering {
        let by_value = match (self.key, other.key) {
            // Values never hold NaN (ZSET scores cannot, parse_sort_value rejects it).
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_value.then_with(|| compare_ids(self.id.as_ref(), other.id.as_ref()))
    }
}

impl<I: AsRef<[u8]>> PartialOrd for Ranked<I> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<I: AsRef<[u8]>> PartialEq for Ranked<I> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<I: AsRef<[u8]>> Eq for Ranked<I> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_integers_first_then_bytes() {
        let mut ids: Vec<&[u8]> = vec![
            b"b",
            b"10",
            b"-3",
            b"2",
            b"007",
            b"-0",
            b"0",
            b"a",
            b"99999999999999999999999",
            b"-10",
            b"1x",
        ];
        ids.sort_by(|a, b| compare_ids(a, b));
        let expected: Vec<&[u8]> = vec![
            b"-10",
            b"-3",
            b"0",
            b"2",
            b"10",
            b"99999999999999999999999",
            b"-0",
            b"007",
            b"1x",
            b"a",
            b"b",
        ];
        assert_eq!(ids, expected);
    }

    #[test]
    fn missing_values_last_in_both_directions_ties_by_id() {
        for direction in [Direction::Asc, Direction::Desc] {
            let mut rows = [
                Ranked::new(b"5".to_vec(), None, direction),
                Ranked::new(b"3".to_vec(), Some(1.0), direction),
                Ranked::new(b"4".to_vec(), None, direction),
                Ranked::new(b"2".to_vec(), Some(2.0), direction),
                Ranked::new(b"1".to_vec(), Some(2.0), direction),
            ];
            rows.sort();
            let ids: Vec<&[u8]> = rows.iter().map(|r| r.id.as_slice()).collect();
            let expected: Vec<&[u8]> = match direction {
                Direction::Asc => vec![b"3", b"1", b"2", b"4", b"5"],
                Direction::Desc => vec![b"1", b"2", b"3", b"4", b"5"],
            };
            assert_eq!(ids, expected);
        }
    }
}
