//! Which indexes a key's notification concerns, found with a few map lookups whatever the
//! number of indexes: every write in the server sends one, and most are about keys no
//! index reads (a cache, sessions), which must cost next to nothing.
//!
//! The maps hash with foldhash (hashbrown's default, seeded per process): a lookup costs
//! tens of nanoseconds on this path every write takes.
//!
//! Routes may outlive their index (they are cleared with all indexes, not one by one):
//! an event routed to an index that is gone or no longer reads the key changes nothing.

use hashbrown::HashMap;

use crate::core::types::Bytes;

#[derive(Default)]
pub(super) struct Routes {
    /// Per database, a key some index loaded parts from → those indexes' installations.
    watched: HashMap<i32, HashMap<Bytes, Vec<Bytes>>>,
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
    }

    /// The index of `installation` reads `key`.
    pub fn watch(&mut self, db: i32, key: &[u8], installation: &[u8]) {
        let installations = self
            .watched
            .entry(db)
            .or_default()
            .entry(key.to_vec())
            .or_default();
        if !installations.iter().any(|known| known == installation) {
            installations.push(installation.to_vec());
        }
    }

    /// The meetings of `installation` are the hashes named `before<id>after`.
    pub fn meetings_named(&mut self, db: i32, installation: &[u8], before: &[u8], after: &[u8]) {
        if !self.lengths.contains(&before.len()) {
            self.lengths.push(before.len());
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

    /// The installations whose index reads `key`.
    pub fn readers(&self, db: i32, key: &[u8]) -> &[Bytes] {
        self.watched
            .get(&db)
            .and_then(|keys| keys.get(key))
            .map_or(&[], Vec::as_slice)
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
