//! A sort field's meetings in score order, as bitmaps of consecutive score ranges. A page
//! is found by intersecting the matches with one range after another, smallest scores
//! first (or last): a few bitmap operations for an early page, where walking meeting by
//! meeting would touch thousands of entries scattered over memory.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use super::dense::{bitmap_bytes, shrink_bitmap};

/// A bucket of several keys holding more meetings than this is split at its median key.
const SPLIT_ABOVE: u64 = 4096;

/// Meetings by score range: a meeting with order key `k` (see `index::order_key`) is in the
/// bucket with the greatest lower bound not above `k`.
#[derive(Debug, Default)]
pub struct Buckets {
    ranges: BTreeMap<u64, Range>,
}

/// One bucket: its meetings, and their one key once a split found them all equal. A bucket
/// of one key is never sorted or split again, whatever its size (many meetings on one date
/// are ordinary data): a meeting with another key starts a bucket of its own.
#[derive(Debug, Default)]
struct Range {
    members: RoaringBitmap,
    only_key: Option<u64>,
}

impl Range {
    fn of(ordinal: u32) -> Range {
        let mut members = RoaringBitmap::new();
        members.insert(ordinal);
        Range {
            members,
            only_key: None,
        }
    }
}

impl Buckets {
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Adds a meeting; `key_of` gives the order key of any meeting already in (to split).
    /// Amortised O(log n): a split sorts at most [`SPLIT_ABOVE`] keys and halves a bucket,
    /// and a bucket of one key is never split.
    pub fn insert(&mut self, key: u64, ordinal: u32, key_of: impl Fn(u32) -> u64) {
        let Some((&bound, range)) = self.ranges.range_mut(..=key).next_back() else {
            // Below every bound: the first bucket starts lower, unless it holds one key.
            let first = self.ranges.first_entry();
            match first {
                Some(first) if first.get().only_key.is_none() => {
                    let mut range = first.remove();
                    range.members.insert(ordinal);
                    self.ranges.insert(key, range);
                    self.split_if_full(key, key_of);
                }
                _ => {
                    self.ranges.insert(key, Range::of(ordinal));
                }
            }
            return;
        };
        match range.only_key {
            None => {
                range.members.insert(ordinal);
                self.split_if_full(bound, key_of);
            }
            Some(only) if only == key => {
                range.members.insert(ordinal);
            }
            // Above the bucket's one key: a bucket of its own from `key` up.
            Some(only) if key > only => {
                self.ranges.insert(key, Range::of(ordinal));
            }
            // Between the bound and the bucket's one key: that bucket now starts at its key,
            // and `key` takes the bound.
            Some(only) => {
                if let Some(single) = self.ranges.remove(&bound) {
                    self.ranges.insert(only, single);
                }
                self.ranges.insert(bound, Range::of(ordinal));
            }
        }
    }

    pub fn remove(&mut self, key: u64, ordinal: u32) {
        let Some((&bound, range)) = self.ranges.range_mut(..=key).next_back() else {
            return;
        };
        range.members.remove(ordinal);
        if range.members.is_empty() {
            self.ranges.remove(&bound);
        }
    }

    fn split_if_full(&mut self, bound: u64, key_of: impl Fn(u32) -> u64) {
        if self
            .ranges
            .get(&bound)
            .is_some_and(|range| range.members.len() > SPLIT_ABOVE)
        {
            self.split(bound, key_of);
        }
    }

    /// Moves the upper half of a bucket (by key) into a bucket of its own. Equal keys stay
    /// together: a bucket of one key only is marked as such instead.
    fn split(&mut self, bound: u64, key_of: impl Fn(u32) -> u64) {
        let Some(range) = self.ranges.get_mut(&bound) else {
            return;
        };
        let mut keys: Vec<u64> = range.members.iter().map(&key_of).collect();
        keys.sort_unstable();
        let middle = keys.get(keys.len() / 2).copied().unwrap_or(bound);
        let lowest = keys.first().copied().unwrap_or(bound);
        // The new bound: the median, or the first key above the lowest when the lower half
        // is all one key (which is then all that stays: the bucket is marked as one key).
        let split_at = if middle > lowest {
            middle
        } else {
            range.only_key = Some(lowest);
            match keys.iter().find(|&&k| k > lowest) {
                Some(&k) => k,
                None => return,
            }
        };
        let upper: RoaringBitmap = range
            .members
            .iter()
            .filter(|&o| key_of(o) >= split_at)
            .collect();
        range.members -= &upper;
        self.ranges.insert(
            split_at,
            Range {
                members: upper,
                only_key: None,
            },
        );
    }

    /// The buckets from the lowest scores up, or from the highest down.
    pub fn in_order(&self, descending: bool) -> impl Iterator<Item = &RoaringBitmap> + '_ {
        self.in_order_with_keys(descending)
            .map(|(_, _, members)| members)
    }

    /// The buckets in order, each with the keys it may hold: from its bound up to the next
    /// bucket's bound, exclusive (`None` after the last bucket).
    pub fn in_order_with_keys(
        &self,
        descending: bool,
    ) -> Box<dyn Iterator<Item = (u64, Option<u64>, &RoaringBitmap)> + '_> {
        if descending {
            // Walking down, a bucket's end is the bound of the one just walked.
            let mut above = None;
            Box::new(self.ranges.iter().rev().map(move |(&bound, range)| {
                let end = above.replace(bound);
                (bound, end, &range.members)
            }))
        } else {
            let ends = self.ranges.keys().skip(1).map(|&bound| Some(bound));
            Box::new(
                self.ranges
                    .iter()
                    .zip(ends.chain(std::iter::once(None)))
                    .map(|((&bound, range), end)| (bound, end, &range.members)),
            )
        }
    }

    /// The meetings of `within` whose key lies in `low..=high` (`key_of` gives a meeting's
    /// key): the buckets wholly inside are intersected as they are, only the meetings of
    /// `within` in the one or two that straddle an end are looked at one by one.
    pub fn in_range(
        &self,
        low: u64,
        high: u64,
        key_of: impl Fn(u32) -> u64,
        within: &RoaringBitmap,
    ) -> RoaringBitmap {
        let mut found = RoaringBitmap::new();
        if low > high {
            return found;
        }
        let mut whole_buckets = RoaringBitmap::new();
        // The bucket holding `low` starts at the greatest bound not above it.
        let start = self
            .ranges
            .range(..=low)
            .next_back()
            .map_or(low, |(&bound, _)| bound);
        let mut buckets = self.ranges.range(start..=high).peekable();
        while let Some((&bound, range)) = buckets.next() {
            // The keys this bucket may hold: from its bound to the next bucket's.
            let last_key = buckets.peek().map_or(u64::MAX, |(&next, _)| next - 1);
            let whole = match range.only_key {
                Some(key) => (low..=high).contains(&key),
                None => bound >= low && last_key <= high,
            };
            if whole {
                whole_buckets |= &range.members;
            } else if range.only_key.is_none() {
                let candidates = &range.members & within;
                let inside = candidates
                    .iter()
                    .filter(|&o| (low..=high).contains(&key_of(o)));
                found |= RoaringBitmap::from_sorted_iter(inside).unwrap_or_default();
            }
        }
        found | (whole_buckets & within)
    }

    /// Gives back the room the buckets' bitmaps grew into.
    pub fn shrink_to_fit(&mut self) {
        for range in self.ranges.values_mut() {
            shrink_bitmap(&mut range.members);
        }
    }

    /// Heap bytes held, estimated.
    pub fn bytes(&self) -> usize {
        self.ranges
            .values()
            .map(|range| bitmap_bytes(&range.members) + 56)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_partition_by_key_and_split() {
        // Keys: ordinal * 7 mod 10,007 (all distinct), a few thousand of them.
        let key_of = |o: u32| u64::from(o * 7 % 10_007);
        let mut buckets = Buckets::default();
        for ordinal in 0..10_000 {
            buckets.insert(key_of(ordinal), ordinal, key_of);
        }
        assert!(buckets.len() >= 3, "{} buckets", buckets.len());
        // In order, every key of a bucket is below every key of the next one.
        let mut previous_max = None;
        let mut count = 0;
        for bucket in buckets.in_order(false) {
            let keys: Vec<u64> = bucket.iter().map(key_of).collect();
            let (low, high) = (*keys.iter().min().unwrap(), *keys.iter().max().unwrap());
            assert!(previous_max.is_none_or(|max| max < low));
            previous_max = Some(high);
            count += bucket.len();
        }
        assert_eq!(count, 10_000);
        for ordinal in 0..10_000 {
            buckets.remove(key_of(ordinal), ordinal);
        }
        assert_eq!(buckets.len(), 0);
    }

    /// `in_range` gives exactly the meetings whose key lies in the range, over buckets of
    /// spread keys, of ties (one-key buckets) and of both, for ranges inside, across and
    /// outside them.
    #[test]
    fn in_range_is_exact() {
        type KeyOf = fn(u32) -> u64;
        let distributions: [KeyOf; 3] = [
            |o| u64::from(o.wrapping_mul(2_654_435_761) % 50_000),
            |o| u64::from(o % 7) * 1_000,
            |o| if o % 3 == 0 { 500 } else { u64::from(o) },
        ];
        for key in distributions {
            let mut buckets = Buckets::default();
            for ordinal in 0..30_000 {
                buckets.insert(key(ordinal), ordinal, key);
            }
            let mut bounds = vec![0, 1, 499, 500, 501, 999, 1_000, 6_000, 6_001, 25_000];
            bounds.extend([29_999, 30_000, 49_999, 50_000, u64::MAX]);
            let all: RoaringBitmap = (0..30_000).collect();
            let some: RoaringBitmap = (0..30_000).filter(|o| o % 7 < 3).collect();
            for within in [&all, &some] {
                for &low in &bounds {
                    for &high in &bounds {
                        let expected: RoaringBitmap = within
                            .iter()
                            .filter(|&o| (low..=high).contains(&key(o)))
                            .collect();
                        let found = buckets.in_range(low, high, key, within);
                        assert_eq!(found, expected, "{low}..={high}");
                    }
                }
            }
        }
    }

    /// Checks the partition: in order, every key of a bucket is below every key of the next.
    fn assert_partitioned(buckets: &Buckets, key_of: impl Fn(u32) -> u64, meetings: u64) {
        let mut previous_max = None;
        let mut count = 0;
        for bucket in buckets.in_order(false) {
            let keys: Vec<u64> = bucket.iter().map(&key_of).collect();
            let (low, high) = (*keys.iter().min().unwrap(), *keys.iter().max().unwrap());
            assert!(previous_max.is_none_or(|max| max < low));
            previous_max = Some(high);
            count += bucket.len();
        }
        assert_eq!(count, meetings);
    }

    /// 1,000,000 meetings on one key, on five keys, and on one key with a few others
    /// arriving below, between and above it: the partition holds, and the work (keys read
    /// for sorting, counted through `key_of`) stays linear in the meetings.
    #[test]
    fn heavy_ties_build_in_linear_work() {
        const MEETINGS: u32 = 1_000_000;
        type KeyOf = fn(u32) -> u64;
        let distributions: [(&str, KeyOf); 3] = [
            ("all equal", |_| 42),
            ("five values", |o| u64::from(o % 5) * 1_000),
            ("one value, a few others", |o| match o % 100_000 {
                7 => 1,
                8 => 50,
                9 => 9_000,
                _ => 42,
            }),
        ];
        for (name, key) in distributions {
            let reads = std::cell::Cell::new(0u64);
            let key_of = |o: u32| {
                reads.set(reads.get() + 1);
                key(o)
            };
            let mut buckets = Buckets::default();
            for ordinal in 0..MEETINGS {
                buckets.insert(key(ordinal), ordinal, key_of);
                // Checked as it goes, so that quadratic work fails fast.
                if ordinal % 8_192 == 0 {
                    let inserted = u64::from(ordinal) + 1;
                    assert!(
                        reads.get() <= 4 * inserted,
                        "{name}: {} keys read",
                        reads.get()
                    );
                }
            }
            assert!(buckets.len() <= 16, "{name}: {} buckets", buckets.len());
            assert_partitioned(&buckets, key, u64::from(MEETINGS));
            // Removing and adding again at another key moves the meeting.
            buckets.remove(key(5), 5);
            buckets.insert(0, 5, |o| if o == 5 { 0 } else { key(o) });
            let first = buckets.in_order(false).next().unwrap();
            assert!(first.contains(5), "{name}");
        }
    }

    /// 4,096 meetings on one key, then distinct keys arriving just above it, each lower
    /// than the last: the pile is not sorted again for each of them.
    #[test]
    fn distinct_keys_beside_a_pile_of_ties() {
        let reads = std::cell::Cell::new(0u64);
        let key = |o: u32| {
            if o < 4_096 {
                0
            } else {
                u64::from(1_000_000 - o)
            }
        };
        let key_of = |o: u32| {
            reads.set(reads.get() + 1);
            key(o)
        };
        let mut buckets = Buckets::default();
        for ordinal in 0..100_000 {
            buckets.insert(key(ordinal), ordinal, key_of);
        }
        assert!(reads.get() <= 4 * 100_000, "{} keys read", reads.get());
        assert_partitioned(&buckets, key, 100_000);
    }

    #[test]
    fn one_key_never_splits() {
        let mut buckets = Buckets::default();
        for ordinal in 0..5_000 {
            buckets.insert(42, ordinal, |_| 42);
        }
        assert_eq!(buckets.len(), 1);
        // A lower key: the first bucket starts lower, then splits off the key-42 meetings.
        buckets.insert(7, 9_999, |o| if o == 9_999 { 7 } else { 42 });
        let in_order: Vec<u64> = buckets.in_order(false).map(RoaringBitmap::len).collect();
        assert_eq!(in_order, [1, 5_000]);
        assert!(buckets.in_order(false).next().unwrap().contains(9_999));
    }
}
