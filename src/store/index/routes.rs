//! Which indexes a key's notification concerns, found with a few map lookups whatever the
//! number of indexes: every write in the server sends one, and most are about keys no
//! index reads (a cache, sessions), which must cost next to nothing.
//!
//! The maps hash with foldhash (hashbrown's default, seeded per process): a lookup costs
//! tens of nanoseconds on this path every write takes.
//!
//! Routes may outlive their index (they are cleared with all indexes, not one by one):
//! an event routed to an index that is gone or no longer reads the key changes nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hashbrown::HashMap;

use crate::core::index::Part;
use crate::core::types::Bytes;

/// Words of [`MAY_NAME_MEETING`] (8 KiB, mostly in cache): with one text per installation
/// (hash-tagged templates) and 10,000 installations, about 1 other key in 14 passes it.
const FILTER_WORDS: usize = 1 << 10;
/// A Bloom filter of the meeting hashes' texts before the id, read without the registry's
/// lock: the command filter runs before every string and hash write of the server and
/// must let the others pass in a few nanoseconds. A text's two bits are in one word (one
/// memory read). Cleared with the routes.
static MAY_NAME_MEETING: [AtomicU64; FILTER_WORDS] = [const { AtomicU64::new(0) }; FILTER_WORDS];
/// The first bytes of those texts, one bit each: most other keys are let pass on their
/// first byte alone.
static FIRST_BYTES: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// The lengths of the meeting hashes' texts before the id, one bit each below 64.
static CUTS: AtomicU64 = AtomicU64::new(0);
/// A text before the id is 64 bytes or longer: every key goes to the routes.
static LONG_CUT: AtomicBool = AtomicBool::new(false);

/// A fast hash of a key for [`MAY_NAME_MEETING`] (not for tables: a crafted key can only make
/// a write take the slower, exact lookup).
fn filter_hash(bytes: &[u8]) -> u64 {
    const MULTIPLY: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = (hash ^ u64::from_le_bytes(word))
            .wrapping_mul(MULTIPLY)
            .rotate_left(29);
    }
    let mut tail = [0u8; 8];
    for (to, from) in tail.iter_mut().zip(chunks.remainder()) {
        *to = *from;
    }
    hash = (hash ^ u64::from_le_bytes(tail)).wrapping_mul(MULTIPLY);
    hash ^ (hash >> 32)
}

/// The word of a text in [`MAY_NAME_MEETING`], and its two bits there.
fn filter_slot(bytes: &[u8]) -> (Option<&'static AtomicU64>, u64) {
    let hash = filter_hash(bytes);
    let word = MAY_NAME_MEETING.get((hash >> 40) as usize % FILTER_WORDS);
    (word, 1 << (hash % 64) | 1 << ((hash >> 6) % 64))
}

fn filter_add(bytes: &[u8]) {
    if let (Some(word), bits) = filter_slot(bytes) {
        word.fetch_or(bits, Ordering::Relaxed);
    }
}

fn filter_has(bytes: &[u8]) -> bool {
    let (word, bits) = filter_slot(bytes);
    word.is_none_or(|word| word.load(Ordering::Relaxed) & bits == bits)
}

/// Whether an index may have `key` as a meeting's hash, in any database; a `false` is
/// certain. Needs no lock.
pub fn may_name_meeting(key: &[u8]) -> bool {
    if LONG_CUT.load(Ordering::Relaxed) {
        return true;
    }
    let first = key.first().map_or(0, |&byte| usize::from(byte));
    let starts = FIRST_BYTES
        .get(first / 64)
        .is_some_and(|word| word.load(Ordering::Relaxed) & (1 << (first % 64)) != 0);
    // A text before the id may be empty (then every key may name a meeting).
    if !starts && CUTS.load(Ordering::Relaxed) & 1 == 0 {
        return false;
    }
    let mut cuts = CUTS.load(Ordering::Relaxed);
    while cuts != 0 {
        let cut = cuts.trailing_zeros() as usize;
        cuts &= cuts - 1;
        if key.get(..cut).is_some_and(filter_has) {
            return true;
        }
    }
    false
}

#[derive(Default)]
pub(super) struct Routes {
    /// Per database, a key some index loaded parts from → each installation and part loaded
    /// from it. The one record of what a key feeds: thousands of small indexes read a few
    /// keys each, and a second map per index would hold every name twice.
    watched: HashMap<i32, HashMap<Bytes, Vec<(Bytes, Part)>>>,
    /// Per database, the text of a meeting hash's name before its id → the installations
    /// whose meetings are named so, each with the text after the id.
    meetings: HashMap<i32, HashMap<Bytes, Vec<(Bytes, Bytes)>>>,
    /// The lengths of those texts (one per length of installation names, usually few): a
    /// key is looked up only at those cuts, so a long key name costs no more than a short
    /// one.
    lengths: Vec<usize>,
}

impl Routes {
    pub fn clear(&mut self) {
        *self = Routes::default();
        MAY_NAME_MEETING
            .iter()
            .chain(&FIRST_BYTES)
            .for_each(|word| word.store(0, Ordering::Relaxed));
        CUTS.store(0, Ordering::Relaxed);
        LONG_CUT.store(false, Ordering::Relaxed);
    }

    /// The index of `installation` loads `part` from `key`.
    pub fn watch(&mut self, db: i32, key: &[u8], installation: &[u8], part: &Part) {
        let readers = self
            .watched
            .entry(db)
            .or_default()
            .entry(key.to_vec())
            .or_default();
        if !readers.iter().any(|(i, p)| i == installation && p == part) {
            // Most keys have one reader: no room for more (a shared key's list doubles).
            if readers.len() < 4 {
                readers.reserve_exact(1);
            }
            readers.push((installation.to_vec(), part.clone()));
        }
    }

    /// The meetings of `installation` are the hashes named `before<id>after`.
    pub fn meetings_named(&mut self, db: i32, installation: &[u8], before: &[u8], after: &[u8]) {
        if !self.lengths.contains(&before.len()) {
            self.lengths.push(before.len());
        }
        match before.len() {
            cut @ 0..64 => CUTS.fetch_or(1 << cut, Ordering::Relaxed),
            _ => u64::from(LONG_CUT.swap(true, Ordering::Relaxed)),
        };
        filter_add(before);
        if let Some(&first) = before.first() {
            let first = usize::from(first);
            if let Some(word) = FIRST_BYTES.get(first / 64) {
                word.fetch_or(1 << (first % 64), Ordering::Relaxed);
            }
        }
        let named = self
            .meetings
            .entry(db)
            .or_default()
            .entry(before.to_vec())
            .or_default();
        // An installation's index made again under other templates adds its new route.
        let route = (installation.to_vec(), after.to_vec());
        if !named.contains(&route) {
            named.push(route);
        }
    }

    /// Whether an index reads `key`, in any database.
    pub fn is_watched(&self, key: &[u8]) -> bool {
        self.watched.values().any(|keys| keys.contains_key(key))
    }

    /// Whether an index, in any database, has `key` as a meeting's hash.
    pub fn names_a_meeting(&self, key: &[u8]) -> bool {
        self.meetings.keys().any(|&db| self.names_meeting(db, key))
    }

    /// The databases where an index reads `key` or has it as a meeting's hash.
    pub fn databases_of(&self, key: &[u8]) -> Vec<i32> {
        let mut databases: Vec<i32> = self
            .watched
            .iter()
            .filter(|(_, keys)| keys.contains_key(key))
            .map(|(&db, _)| db)
            .collect();
        for &db in self.meetings.keys() {
            if !databases.contains(&db) && self.names_meeting(db, key) {
                databases.push(db);
            }
        }
        databases
    }

    fn names_meeting(&self, db: i32, key: &[u8]) -> bool {
        !self.meeting_of(db, key).is_empty()
    }

    /// The installations whose index reads `key`, each with a part loaded from it.
    pub fn readers(&self, db: i32, key: &[u8]) -> &[(Bytes, Part)] {
        self.watched
            .get(&db)
            .and_then(|keys| keys.get(key))
            .map_or(&[], Vec::as_slice)
    }

    /// The parts the index of `installation` loads from `key` (or did: an index made again
    /// may no longer have them).
    pub fn parts(&self, db: i32, key: &[u8], installation: &[u8]) -> Vec<Part> {
        self.readers(db, key)
            .iter()
            .filter(|(reader, _)| reader == installation)
            .map(|(_, part)| part.clone())
            .collect()
    }

    /// The installations whose meeting hash `key` names, each with the meeting's id.
    pub fn meeting_of<'k>(&self, db: i32, key: &'k [u8]) -> Vec<(&Bytes, &'k [u8])> {
        let mut found = Vec::new();
        let Some(named) = self.meetings.get(&db) else {
            return found;
        };
        for &cut in &self.lengths {
            let (Some(before), Some(rest)) = (key.get(..cut), key.get(cut..)) else {
                continue;
            };
            for (installation, after) in named.get(before).into_iter().flatten() {
                if let Some(id) = rest.strip_suffix(after.as_slice()) {
                    found.push((installation, id));
                }
            }
        }
        found
    }
}
