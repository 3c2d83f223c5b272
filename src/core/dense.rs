//! Growable storage for a million entries that never holds the server for long: a `Vec`
//! doubling past a million entries copies tens of megabytes in one go, and a `HashMap`
//! rehashes every key at once (about 200 ms at 1.3 million ids). Chunks and shards bound
//! every growth step to a small part.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use roaring::RoaringBitmap;

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

/// Gives back the room a bitmap's containers grew into (a copy is allocated to size). Not
/// run containers (`optimize`), though smaller for a set of consecutive ordinals: queries
/// over them took two to four times as long at 10,000 meetings.
pub fn shrink_bitmap(bitmap: &mut RoaringBitmap) {
    *bitmap = bitmap.clone();
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

    /// Gives back the unused room of the last chunk.
    pub fn shrink_to_fit(&mut self) {
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.shrink_to_fit();
        }
        self.chunks.shrink_to_fit();
    }

    /// Each entry, in order, to change in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
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

/// Bytes per block of an [`IdArena`]; an id is at most this long.
const BLOCK: usize = 1 << 16;

/// Ids one after another in blocks (no allocation per id), each found by a packed span:
/// block (32 bits), offset in it (16), length (16).
#[derive(Debug, Default)]
struct IdArena {
    blocks: Vec<Vec<u8>>,
    spans: Chunked<u64>,
}

impl IdArena {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, ordinal: usize) -> Option<&[u8]> {
        let span = *self.spans.get(ordinal)?;
        let block = self.blocks.get(usize::try_from(span >> 32).ok()?)?;
        let start = ((span >> 16) & 0xffff) as usize;
        block.get(start..start + (span & 0xffff) as usize)
    }

    /// Appends `id`; `false` when it is longer than a block.
    fn push(&mut self, id: &[u8]) -> bool {
        if id.len() >= BLOCK {
            return false;
        }
        let fits = self
            .blocks
            .last()
            .is_some_and(|block| block.len() + id.len() <= BLOCK);
        if !fits {
            // The first block grows as a vector does (small indexes stay small); a later
            // one is allocated whole, so a full block is never copied.
            let capacity = if self.blocks.is_empty() { 0 } else { BLOCK };
            self.blocks.push(Vec::with_capacity(capacity));
        }
        let index = self.blocks.len().saturating_sub(1) as u64;
        let Some(block) = self.blocks.last_mut() else {
            return false;
        };
        let span = index << 32 | (block.len() as u64) << 16 | id.len() as u64;
        block.extend_from_slice(id);
        self.spans.push(span);
        true
    }

    fn drop_some(&mut self, count: usize) -> bool {
        self.spans.drop_some(count) || self.blocks.pop().is_some()
    }

    fn shrink_to_fit(&mut self) {
        if let Some(block) = self.blocks.last_mut() {
            block.shrink_to_fit();
        }
        self.spans.shrink_to_fit();
    }

    fn bytes(&self) -> usize {
        self.spans.bytes() + self.blocks.iter().map(Vec::capacity).sum::<usize>()
    }
}

/// Meeting ids and their dense ordinals (0, 1, 2, ... in order of first sight). Each id is
/// kept once, by ordinal; tables hold ordinals found by the id's hash (computed once per
/// lookup, with a per-process random seed, so crafted ids cannot pile up in a bucket). One
/// table while small (thousands of small installations each have one), [`SHARDS`] once
/// past [`SPLIT_AT`] ids, so that no table's growth rehashes a million ids at once.
#[derive(Debug)]
pub struct Ordinals {
    hasher: DefaultHashBuilder,
    shards: Vec<HashTable<u32>>,
    ids: IdArena,
}

/// The hash of an ordinal's id, for a table that grows or shrinks (the tables hold only
/// ordinals).
fn rehasher<'a>(
    hasher: &'a DefaultHashBuilder,
    ids: &'a IdArena,
) -> impl Fn(&u32) -> u64 + Copy + 'a {
    move |o| hasher.hash_one(ids.get(*o as usize).unwrap_or_default())
}

/// Ids past which the one table is split into [`SHARDS`]: the split rehashes them all in
/// one step (about 0.3 ms at 4,096; at 32,768 it held the server 2 to 4 ms on top of a
/// loading slice).
const SPLIT_AT: usize = 1 << 12;

impl Default for Ordinals {
    fn default() -> Self {
        Ordinals {
            hasher: DefaultHashBuilder::default(),
            shards: vec![HashTable::new()],
            ids: IdArena::default(),
        }
    }
}

impl Ordinals {
    /// The table of a hash: by bits the tables do not use for buckets (the low ones) or
    /// tags (the top seven).
    fn shard(&self, hash: u64) -> usize {
        (hash >> 32) as usize % self.shards.len().max(1)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.len() == 0
    }

    fn find(&self, hash: u64, id: &[u8]) -> Option<u32> {
        let ids = &self.ids;
        self.shards
            .get(self.shard(hash))?
            .find(hash, |&o| ids.get(o as usize) == Some(id))
            .copied()
    }

    pub fn get(&self, id: &[u8]) -> Option<u32> {
        self.find(self.hasher.hash_one(id), id)
    }

    /// The ordinal of `id` and whether it is new; `None` once `limit` ordinals exist (or
    /// for an id of 64 KiB or more).
    pub fn insert(&mut self, id: &[u8], limit: u32) -> Option<(u32, bool)> {
        let hash = self.hasher.hash_one(id);
        if let Some(ordinal) = self.find(hash, id) {
            return Some((ordinal, false));
        }
        let ordinal = u32::try_from(self.ids.len()).ok().filter(|&o| o < limit)?;
        if !self.ids.push(id) {
            return None;
        }
        if self.ids.len() == SPLIT_AT && self.shards.len() == 1 {
            self.split();
        }
        let shard = self.shard(hash);
        let rehash = rehasher(&self.hasher, &self.ids);
        self.shards
            .get_mut(shard)?
            .insert_unique(hash, ordinal, rehash);
        Some((ordinal, true))
    }

    /// Spreads the one table's ordinals over [`SHARDS`] tables (once, a bounded step).
    fn split(&mut self) {
        let single = std::mem::replace(
            &mut self.shards,
            (0..SHARDS).map(|_| HashTable::new()).collect(),
        );
        let rehash = rehasher(&self.hasher, &self.ids);
        for ordinal in single.into_iter().flatten() {
            let hash = rehash(&ordinal);
            let shard = (hash >> 32) as usize % SHARDS;
            if let Some(table) = self.shards.get_mut(shard) {
                table.insert_unique(hash, ordinal, rehash);
            }
        }
    }

    /// Gives back unused room: the last block and spans, and the tables' where they hold
    /// less than half what they could (each rehashed: for a small index only).
    pub fn shrink_to_fit(&mut self) {
        self.ids.shrink_to_fit();
        let rehash = rehasher(&self.hasher, &self.ids);
        for table in &mut self.shards {
            if table.capacity() > 2 * table.len() {
                table.shrink_to_fit(rehash);
            }
        }
    }

    /// Frees a bounded piece (a table, or `count` ids); `false` once empty.
    pub fn drop_some(&mut self, count: usize) -> bool {
        if self.shards.pop().is_some() {
            return true;
        }
        self.ids.drop_some(count)
    }

    pub fn id(&self, ordinal: u32) -> &[u8] {
        self.ids.get(ordinal as usize).unwrap_or_default()
    }

    /// Heap bytes held, estimated: the ids and their spans, the tables' ordinals.
    pub fn bytes(&self) -> usize {
        // A table entry: the ordinal and a control byte, at the usual load factor.
        const ENTRY: usize = (4 + 1) * 8 / 7;
        let entries: usize = self
            .shards
            .iter()
            .map(|shard| shard.capacity() * ENTRY)
            .sum();
        self.ids.bytes() + entries
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
    fn ids_fill_blocks_and_one_too_long_is_refused() {
        let mut ordinals = Ordinals::default();
        let long = vec![b'x'; BLOCK / 2 + 1];
        assert_eq!(ordinals.insert(&long, u32::MAX), Some((0, true)));
        // Does not fit in the first block's rest: a second block.
        let mut other = long.clone();
        other[0] = b'y';
        assert_eq!(ordinals.insert(&other, u32::MAX), Some((1, true)));
        assert_eq!(ordinals.insert(b"", u32::MAX), Some((2, true)));
        assert_eq!(ordinals.id(0), long.as_slice());
        assert_eq!(ordinals.id(1), other.as_slice());
        assert_eq!(ordinals.get(b""), Some(2));
        assert_eq!(ordinals.insert(&vec![b'z'; BLOCK], u32::MAX), None);
        assert_eq!(ordinals.len(), 3);
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
