//! Growable storage for a million entries that never holds the server for long: a `Vec`
//! doubling past a million entries copies tens of megabytes in one go, and a `HashMap`
//! rehashes every key at once (about 200 ms at 1.3 million ids). Chunks and shards bound
//! every growth step to a small part.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use roaring::RoaringBitmap;

use super::types::Bytes;

/// Entries per chunk: a full chunk is never moved.
const CHUNK: usize = 1 << 16;
/// Maps an id map is split into.
const SHARDS: usize = 256;

/// The heap bytes of a bitmap, estimated in constant time (an exact count walks every
/// container, too slow to repeat over thousands of bitmaps): two bytes per member while
/// sparse, one bit per ordinal of its range once dense, plus the container headers.
pub fn bitmap_bytes(bitmap: &RoaringBitmap) -> usize {
    let (Some(min), Some(max)) = (bitmap.min(), bitmap.max()) else {
        return 32;
    };
    let sparse = bitmap.len().saturating_mul(2);
    let dense = u64::from(max - min) / 8;
    let containers = u64::from(max >> 16) - u64::from(min >> 16) + 1;
    usize::try_from(sparse.min(dense) + containers * 16 + 32).unwrap_or(usize::MAX)
}

/// A vector in fixed-size chunks, indexed by ordinal.
#[derive(Debug, Default)]
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T: Clone> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            // The first chunk grows as a vector does (small indexes stay small); a later
            // one is allocated whole, so a full chunk is never copied.
            let capacity = if self.chunks.is_empty() { 0 } else { CHUNK };
            self.chunks.push(Vec::with_capacity(capacity));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(value);
            self.len += 1;
        }
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks.get_mut(index / CHUNK)?.get_mut(index % CHUNK)
    }

    /// Grows to at least `len` entries, filling with `fill` a chunk at a time.
    pub fn grow_to(&mut self, len: usize, fill: T) {
        while self.len < len {
            if self.len.is_multiple_of(CHUNK) {
                self.push(fill.clone());
                continue;
            }
            let Some(chunk) = self.chunks.last_mut() else {
                return;
            };
            let add = (CHUNK - chunk.len()).min(len - self.len);
            chunk.resize(chunk.len() + add, fill.clone());
            self.len += add;
        }
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Drops up to `count` entries from the end; `false` once it is empty.
    pub fn drop_some(&mut self, count: usize) -> bool {
        let Some(chunk) = self.chunks.last_mut() else {
            return false;
        };
        let keep = chunk.len().saturating_sub(count);
        self.len -= chunk.len() - keep;
        chunk.truncate(keep);
        if chunk.is_empty() {
            self.chunks.pop();
        }
        !self.chunks.is_empty()
    }

    /// Heap bytes held by the entries (not what they point to).
    pub fn bytes(&self) -> usize {
        let entries: usize = self.chunks.iter().map(Vec::capacity).sum();
        entries * std::mem::size_of::<T>()
    }
}

/// Meeting ids and their dense ordinals (0, 1, 2, ... in order of first sight). Each id is
/// kept once, by ordinal; the shards hold ordinals found by the id's hash (computed once
/// per lookup, with a per-process random seed, so crafted ids cannot pile up in a bucket).
#[derive(Debug)]
pub struct Ordinals {
    hasher: DefaultHashBuilder,
    shards: Vec<HashTable<u32>>,
    ids: Chunked<Bytes>,
    id_bytes: usize,
}

impl Default for Ordinals {
    fn default() -> Self {
        Ordinals {
            hasher: DefaultHashBuilder::default(),
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
            ids: Chunked::default(),
            id_bytes: 0,
        }
    }
}

impl Ordinals {
    /// The shard of a hash: bits the tables do not use for buckets (the low ones) or tags
    /// (the top seven).
    fn shard(hash: u64) -> usize {
        (hash >> 32) as usize % SHARDS
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn find(&self, hash: u64, id: &[u8]) -> Option<u32> {
        let ids = &self.ids;
        self.shards
            .get(Self::shard(hash))?
            .find(hash, |&o| {
                ids.get(o as usize).is_some_and(|known| known == id)
            })
            .copied()
    }

    pub fn get(&self, id: &[u8]) -> Option<u32> {
        self.find(self.hasher.hash_one(id), id)
    }

    /// The ordinal of `id` and whether it is new; `None` once `limit` ordinals exist.
    pub fn insert(&mut self, id: &[u8], limit: u32) -> Option<(u32, bool)> {
        let hash = self.hasher.hash_one(id);
        if let Some(ordinal) = self.find(hash, id) {
            return Some((ordinal, false));
        }
        let ordinal = u32::try_from(self.ids.len()).ok().filter(|&o| o < limit)?;
        let (hasher, ids) = (&self.hasher, &self.ids);
        let rehash = |o: &u32| hasher.hash_one(ids.get(*o as usize).map_or(&[][..], Vec::as_slice));
        self.shards
            .get_mut(Self::shard(hash))?
            .insert_unique(hash, ordinal, rehash);
        self.ids.push(id.to_vec());
        self.id_bytes += id.len();
        Some((ordinal, true))
    }

    /// Frees a bounded piece (a shard's table, or `count` ids); `false` once empty.
    pub fn drop_some(&mut self, count: usize) -> bool {
        if self.shards.pop().is_some() {
            return true;
        }
        self.ids.drop_some(count)
    }

    pub fn id(&self, ordinal: u32) -> &[u8] {
        self.ids.get(ordinal as usize).map_or(&[], Vec::as_slice)
    }

    /// Heap bytes held, estimated: the ids by ordinal, the shards' ordinals.
    pub fn bytes(&self) -> usize {
        // A table entry: the ordinal and a control byte, at the usual load factor.
        const ENTRY: usize = (4 + 1) * 8 / 7;
        let entries: usize = self
            .shards
            .iter()
            .map(|shard| shard.capacity() * ENTRY)
            .sum();
        self.ids.bytes() + entries + self.id_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_are_dense_and_stable_across_chunks() {
        let mut ordinals = Ordinals::default();
        for n in 0..(CHUNK as u32 + 10) {
            assert_eq!(
                ordinals.insert(n.to_string().as_bytes(), u32::MAX),
                Some((n, true))
            );
        }
        assert_eq!(ordinals.insert(b"5", u32::MAX), Some((5, false)));
        assert_eq!(ordinals.get(b"65545"), Some(65_545));
        assert_eq!(ordinals.id(65_540), b"65540");
        assert_eq!(ordinals.id(u32::MAX), b"");
        assert_eq!(ordinals.insert(b"new", 3), None);
        let mut column = Chunked::default();
        column.push(1.0f64);
        column.grow_to(2 * CHUNK + 3, 0.5);
        assert_eq!(column.len(), 2 * CHUNK + 3);
        *column.get_mut(CHUNK).unwrap() = 2.0;
        assert_eq!(column.get(0), Some(&1.0));
        assert_eq!(column.get(CHUNK), Some(&2.0));
        assert_eq!(column.get(2 * CHUNK + 2), Some(&0.5));
        assert_eq!(column.get(2 * CHUNK + 3), None);
    }

    #[test]
    fn dropping_in_pieces_empties_everything() {
        let mut ordinals = Ordinals::default();
        for n in 0..(CHUNK as u32 + 10) {
            ordinals.insert(n.to_string().as_bytes(), u32::MAX);
        }
        let mut calls = 0;
        while ordinals.drop_some(1000) {
            calls += 1;
        }
        assert!(calls > SHARDS + CHUNK / 1000, "{calls} calls");
        assert!(ordinals.is_empty());
        assert_eq!(ordinals.get(b"5"), None);
    }
}
