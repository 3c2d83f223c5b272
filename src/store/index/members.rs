//! Member-level changes from commands: a notification says that SADD changed a key, not
//! which members. The command filter sees every command before it runs (from clients,
//! scripts, a primary's replication stream; not the module's own calls) and notes the
//! members that SADD, SREM, SMOVE, ZADD, ZINCRBY and ZREM name on keys an index reads;
//! the notification that follows confirms the key changed, and each named member is then
//! read back from the key, so the index follows it exactly (whatever NX, XX, GT, CH...
//! did) instead of reading the whole key again.
//!
//! Notes are dropped when the turn of the event loop ends: a note whose command never ran
//! (refused, discarded) cannot outlive its turn. A command whose effect is not a list of
//! named members (GEOADD, which also notifies `zadd`) makes its key's note unusable; a
//! notification without a usable note reads the whole key again, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use redis_module::Context;

use super::{ACTIVE, REGISTRY};
use crate::core::types::Bytes;
use crate::ffi::hooks::{run_at_end_of_turn, FilteredCommand};

/// Members noted per key at most; past it the key is read again whole.
const MAX_MEMBERS: usize = 4096;

#[derive(Default)]
struct Notes {
    /// Per key: the members named this turn, or `None` when a command named it in a way
    /// the index cannot follow member by member.
    keys: HashMap<Bytes, Option<Vec<Bytes>>>,
    clearing: bool,
}

static NOTES: Mutex<Option<Notes>> = Mutex::new(None);
/// Whether any note is kept: every notification asks, almost always for nothing.
static NOTED: AtomicBool = AtomicBool::new(false);

/// The command filter's part: notes the members a command names on a watched key. Runs
/// before every command of the server: it returns at once for the others.
pub fn on_command(command: &FilteredCommand) {
    if !ACTIVE.load(Ordering::Relaxed) {
        return;
    }
    let name = command.arg(0);
    if !(4..=7).contains(&name.len()) {
        return;
    }
    let mut lower = [0u8; 7];
    for (to, from) in lower.iter_mut().zip(name) {
        *to = from.to_ascii_lowercase();
    }
    let count = command.word_count();
    let words = |from: usize, step: usize| (from..count).step_by(step).map(|at| command.arg(at));
    match lower.get(..name.len()).unwrap_or_default() {
        b"sadd" | b"srem" | b"zrem" => note(command.arg(1), Some(words(2, 1))),
        b"smove" => {
            note(command.arg(1), Some(words(3, 1)));
            note(command.arg(2), Some(words(3, 1)));
        }
        b"zincrby" => note(command.arg(1), Some(words(3, 1))),
        b"zadd" => {
            // ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
            let options = (2..count)
                .take_while(|&at| {
                    let word = command.arg(at).to_ascii_lowercase();
                    matches!(&word[..], b"nx" | b"xx" | b"gt" | b"lt" | b"ch" | b"incr")
                })
                .count();
            note(command.arg(1), Some(words(3 + options, 2)));
        }
        b"geoadd" => note(command.arg(1), None::<std::iter::Empty<&[u8]>>),
        _ => {}
    }
}

fn note<'a>(key: &[u8], members: Option<impl Iterator<Item = &'a [u8]>>) {
    // Only keys an index reads (in any database: the filter does not know the client's).
    let watched = match REGISTRY.try_lock() {
        Ok(registry) => registry.routes.is_watched(key),
        Err(_) => true,
    };
    if !watched {
        return;
    }
    let mut notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    let notes = notes.get_or_insert_with(Notes::default);
    NOTED.store(true, Ordering::Relaxed);
    let entry = notes
        .keys
        .entry(key.to_vec())
        .or_insert_with(|| Some(Vec::new()));
    match (entry.as_mut(), members) {
        (Some(noted), Some(members)) => {
            noted.extend(members.map(<[u8]>::to_vec));
            if noted.len() > MAX_MEMBERS {
                *entry = None;
            }
        }
        _ => *entry = None,
    }
    if !notes.clearing {
        notes.clearing = run_at_end_of_turn(clear);
        if !notes.clearing {
            // No way to drop the notes at the end of the turn: none are kept.
            notes.keys.clear();
        }
    }
}

fn clear(_ctx: &Context) {
    let mut notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    *notes = None;
    NOTED.store(false, Ordering::Relaxed);
}

/// The members noted for `key` since the turn began, if each can be read back; the note
/// is used up either way.
pub(super) fn take(key: &[u8]) -> Option<Vec<Bytes>> {
    if !NOTED.load(Ordering::Relaxed) {
        return None;
    }
    let mut notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    notes.as_mut()?.keys.remove(key).flatten()
}
