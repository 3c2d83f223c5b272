//! A sort field's meetings in score order, as bitmaps of consecutive score ranges. A page
//! is found by intersecting the matches with one range after another, smallest scores
//! first (or last): a few bitmap operations for an early page, where walking meeting by
//! meeting would touch thousands of entries scattered over memory.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use super::dense::bitmap_bytes;

/// A bucket holding more meetings than this is split at its median score.
const SPLIT_ABOVE: u64 = 4096;

/// Meetings by score range: a meeting with order key `k` (see `index::order_key`) is in the
/// bucket with the greatest lower bound not above `k`.
#[derive(Debug, Default)]
pub struct Buckets {
    ranges: BTreeMap<u64, RoaringBitmap>,
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
    pub fn insert(&mut self, key: u64, ordinal: u32, key_of: impl Fn(u32) -> u64) {
        let bound = match self.ranges.range(..=key).next_back() {
            Some((&bound, _)) => bound,
            None => {
                // Below every bound: the first bucket now starts at `key`.
                let first = self.ranges.pop_first().map(|(_, bitmap)| bitmap);
                self.ranges.insert(key, first.unwrap_or_default());
                key
            }
        };
        let Some(bucket) = self.ranges.get_mut(&bound) else {
            return;
        };
        bucket.insert(ordinal);
        if bucket.len() > SPLIT_ABOVE {
            self.split(bound, key_of);
        }
    }

    pub fn remove(&mut self, key: u64, ordinal: u32) {
        let Some((&bound, bucket)) = self.ranges.range_mut(..=key).next_back() else {
            return;
        };
        bucket.remove(ordinal);
        if bucket.is_empty() {
            self.ranges.remove(&bound);
        }
    }

    /// Moves the upper half of a bucket (by key) into a bucket of its own. Equal keys stay
    /// together, so a bucket of one key only is never split.
    fn split(&mut self, bound: u64, key_of: impl Fn(u32) -> u64) {
        let Some(bucket) = self.ranges.get_mut(&bound) else {
            return;
        };
        let mut keys: Vec<u64> = bucket.iter().map(&key_of).collect();
        keys.sort_unstable();
        let middle = keys.get(keys.len() / 2).copied().unwrap_or(bound);
        let lowest = keys.first().copied().unwrap_or(bound);
        // The new bound: the median, or the first key above the lowest when the lower half
        // is all one key.
        let split_at = if middle > lowest {
            middle
        } else {
            match keys.iter().find(|&&k| k > lowest) {
                Some(&k) => k,
                None => return,
            }
        };
        let upper: RoaringBitmap = bucket.iter().filter(|&o| key_of(o) >= split_at).collect();
        *bucket -= &upper;
        self.ranges.insert(split_at, upper);
    }

    /// The buckets from the lowest scores up, or from the highest down.
    pub fn in_order(&self, descending: bool) -> Box<dyn Iterator<Item = &RoaringBitmap> + '_> {
        if descending {
            Box::new(self.ranges.values().rev())
        } else {
            Box::new(self.ranges.values())
        }
    }

    /// Heap bytes held, estimated.
    pub fn bytes(&self) -> usize {
        self.ranges
            .values()
            .map(|bitmap| bitmap_bytes(bitmap) + 48)
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
