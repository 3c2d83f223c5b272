//! Growable storage for a million entries that never holds the server for long: a `Vec`
//! doubling past a million entries copies tens of megabytes in one go, and a `HashMap`
//! rehashes every key at once (about 200 ms at 1.3 million ids). Chunks and shards bound
//! every growth step to a small part.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

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

    /// Heap bytes held by the entries (not what they point to).
    pub fn bytes(&self) -> usize {
        let entries: usize = self.chunks.iter().map(Vec::capacity).sum();
        entries * std::mem::size_of::<T>()
    }
}

/// Meeting ids and their dense ordinals (0, 1, 2, ... in order of first sight).
#[derive(Debug)]
pub struct Ordinals {
    shards: Vec<HashMap<Bytes, u32>>,
    ids: Chunked<Bytes>,
    id_bytes: usize,
}

impl Default for Ordinals {
    fn default() -> Self {
        Ordinals {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            ids: Chunked::default(),
            id_bytes: 0,
        }
    }
}

impl Ordinals {
    fn shard(id: &[u8]) -> usize {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        (hasher.finish() % SHARDS as u64) as usize
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn get(&self, id: &[u8]) -> Option<u32> {
        self.shards.get(Self::shard(id))?.get(id).copied()
    }

    /// The ordinal of `id` and whether it is new; `None` once `limit` ordinals exist.
    pub fn insert(&mut self, id: &[u8], limit: u32) -> Option<(u32, bool)> {
        if let Some(ordinal) = self.get(id) {
            return Some((ordinal, false));
        }
        let ordinal = u32::try_from(self.ids.len()).ok().filter(|&o| o < limit)?;
        self.shards
            .get_mut(Self::shard(id))?
            .insert(id.to_vec(), ordinal);
        self.ids.push(id.to_vec());
        self.id_bytes += id.len();
        Some((ordinal, true))
    }

    pub fn id(&self, ordinal: u32) -> &[u8] {
        self.ids.get(ordinal as usize).map_or(&[], Vec::as_slice)
    }

    /// Heap bytes held, estimated: each id is stored twice (by ordinal and in its shard).
    pub fn bytes(&self) -> usize {
        // A map entry: the key, the value, a control byte, at the usual load factor.
        const ENTRY: usize = (std::mem::size_of::<Bytes>() + 4 + 1) * 8 / 7;
        let entries: usize = self
            .shards
            .iter()
            .map(|shard| shard.capacity() * ENTRY)
            .sum();
        self.ids.bytes() + entries + 2 * self.id_bytes
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
}
