//! Member-level changes from commands: a notification says that SADD changed a key, not
//! which members. The command filter sees every command before it runs (from clients,
//! scripts, a primary's replication stream; not the module's own calls) and notes the
//! members that SADD, SREM, SMOVE, ZADD, ZINCRBY and ZREM name on keys an index reads;
//! the notification that follows confirms the key changed, and each named member is then
//! read back from the key, so the index follows it exactly (whatever NX, XX, GT, CH...
//! did) instead of reading the whole key again.
//!
//! A note belongs to the last command the filter saw: each filter call drops the notes of
//! the one before (refused, discarded, or a no-op that sent no notification), and so do
//! the next turn of the event loop and a notification that uses them. Commands queued in
//! MULTI are noted per client, and their notes become the current ones when that client's
//! EXEC comes (a replica receives every CRM write so); where the server cannot name the
//! client (Redis 7.0) the commands EXEC runs get no note. Commands held by CLIENT PAUSE or
//! FAILOVER run later without a filter call: nothing is noted meanwhile. A command without
//! a note has its key read again whole. A command whose effect is not a list of named
//! members (GEOADD, which also notifies `zadd`) spoils its key's note.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use redis_module::Context;

use super::events::Event;
use super::{touched, ACTIVE, REGISTRY};
use crate::core::types::Bytes;
use crate::ffi::hooks::{client_exists, run_at_end_of_turn, FilteredCommand};
use crate::ffi::verb::Verb;

/// Members noted per key at most; past it the key is read again whole.
const MAX_MEMBERS: usize = 4096;

/// Per key: the members named, or `None` when a command named it in a way the index
/// cannot follow member by member.
type KeyNotes = HashMap<Bytes, Option<Vec<Bytes>>>;

#[derive(Default)]
struct Notes {
    /// The notes of the command about to run (or of the commands an EXEC is about to run).
    keys: KeyNotes,
    /// What the commands each client in MULTI has queued name.
    queued: HashMap<u64, Queued>,
    /// The number of queues at which to drop those of clients gone (at least
    /// [`PRUNE_FROM`]).
    prune_at: usize,
    clearing: bool,
}

/// What a client's commands queued in MULTI name: members, and the string and hash keys
/// they write (see `touched.rs`).
#[derive(Default)]
struct Queued {
    members: KeyNotes,
    touched: Vec<(Bytes, Event)>,
}

static NOTES: Mutex<Option<Notes>> = Mutex::new(None);
/// Until when nothing is noted: commands held by CLIENT PAUSE or FAILOVER run later
/// without a filter call, after other commands' notes.
static PAUSED_UNTIL: Mutex<Option<Instant>> = Mutex::new(None);
/// How long past a pause's own timeout notes stay off.
const PAUSE_MARGIN: Duration = Duration::from_secs(2);
/// Whether any note is kept: every notification asks, almost always for nothing.
static NOTED: AtomicBool = AtomicBool::new(false);
/// Whether any client is in MULTI (`Notes::queued`), asked before every string and hash
/// write.
static ANY_QUEUED: AtomicBool = AtomicBool::new(false);
/// Whether `PAUSED_UNTIL` is set, asked before every string and hash write.
static PAUSE_SEEN: AtomicBool = AtomicBool::new(false);

/// The command filter's part: notes the members a command names on a watched key, and
/// follows the string and hash writes of `touched.rs`. Runs before every command of the
/// server: it returns at once for the others. What is rare is out of line (`#[cold]`), so
/// that the common case spans few cache lines: it shares the instruction cache with the
/// server's own code for every command, and with 1,000 indexes a longer path here cost
/// HSET 4% more of the server's time by evicting that code (docs/benchmark.md).
pub fn on_command(command: &FilteredCommand, verb: Verb) {
    if NOTED.load(Ordering::Relaxed) {
        forget_current();
    }
    match verb {
        // Followed with no index yet too: one may be built before the EXEC.
        Verb::Multi | Verb::Exec | Verb::Discard | Verb::Reset => transaction(command, verb),
        Verb::Client | Verb::Failover => pause_guard(command),
        Verb::Sadd
        | Verb::Srem
        | Verb::Zrem
        | Verb::Smove
        | Verb::Zincrby
        | Verb::Zadd
        | Verb::Geoadd => {
            if ACTIVE.load(Ordering::Relaxed) {
                note_command(command, verb);
            }
        }
        _ => {
            if let Some((positions, event)) = touched::written_keys(verb) {
                // A string or hash write: most touch no client in MULTI, no pause and no
                // key an index may have as a meeting's hash.
                if ANY_QUEUED.load(Ordering::Relaxed)
                    || PAUSE_SEEN.load(Ordering::Relaxed)
                    || ACTIVE.load(Ordering::Relaxed) && positions.may_name_meeting(command)
                {
                    written(command, positions, event);
                }
            }
        }
    }
}

/// A string or hash write (see `touched.rs`). It names a meeting's hash only if an index
/// has that meeting when the command runs: one may be built after the filter saw it, before
/// a command queued in MULTI or held by a pause runs. Those keep every key they name; the
/// others only the keys some index has as a meeting's hash now.
#[cold]
#[inline(never)]
fn written(command: &FilteredCommand, positions: touched::Positions, event: Event) {
    if ANY_QUEUED.load(Ordering::Relaxed) {
        if let Some(id) = command.client_id().filter(|id| is_queuing(*id)) {
            return queue_touched(id, touched::named_keys(positions, event, command, false));
        }
    }
    let client = || command.client_id();
    if PAUSE_SEEN.load(Ordering::Relaxed) && pause_holds() {
        return touched::touch(
            touched::named_keys(positions, event, command, false),
            client(),
            true,
        );
    }
    if ACTIVE.load(Ordering::Relaxed) && positions.may_name_meeting(command) {
        let keys = touched::named_keys(positions, event, command, true);
        if !keys.is_empty() {
            touched::touch(keys, client(), false);
        }
    }
}

/// MULTI, EXEC, DISCARD and RESET (`verb`; RESET ends a transaction too), where the
/// server names the client.
#[cold]
#[inline(never)]
fn transaction(command: &FilteredCommand, verb: Verb) {
    let Some(client) = command.client_id() else {
        return;
    };
    match (verb, is_queuing(client)) {
        (Verb::Multi, false) => start_queue(client),
        (Verb::Exec, true) => touched::touch(run_queue(client), Some(client), pause_holds()),
        (Verb::Discard | Verb::Reset, true) => {
            with_notes(|notes| notes.queued.remove(&client));
        }
        _ => {}
    }
}

/// Notes the members a command names; into its client's queue when it is queued in MULTI.
#[cold]
#[inline(never)]
fn note_command(command: &FilteredCommand, verb: Verb) {
    let queued = command.client_id().filter(|id| is_queuing(*id));
    let count = command.word_count();
    let words = |from: usize, step: usize| (from..count).step_by(step).map(|at| command.arg(at));
    let note = |key: &[u8], members| note(key, members, queued);
    match verb {
        Verb::Sadd | Verb::Srem | Verb::Zrem => note(command.arg(1), Some(words(2, 1))),
        Verb::Smove => {
            note(command.arg(1), Some(words(3, 1)));
            note(command.arg(2), Some(words(3, 1)));
        }
        Verb::Zincrby => note(command.arg(1), Some(words(3, 1))),
        Verb::Zadd => {
            // ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]
            let options = (2..count)
                .take_while(|&at| {
                    let word = command.arg(at).to_ascii_lowercase();
                    matches!(&word[..], b"nx" | b"xx" | b"gt" | b"lt" | b"ch" | b"incr")
                })
                .count();
            note(command.arg(1), Some(words(3 + options, 2)));
        }
        Verb::Geoadd => note(command.arg(1), None),
        _ => {}
    }
}

fn with_notes<T>(f: impl FnOnce(&mut Notes) -> T) -> T {
    let mut notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    let notes = notes.get_or_insert_with(Notes::default);
    let out = f(notes);
    ANY_QUEUED.store(!notes.queued.is_empty(), Ordering::Relaxed);
    out
}

fn is_queuing(client: u64) -> bool {
    let notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    notes
        .as_ref()
        .is_some_and(|notes| notes.queued.contains_key(&client))
}

/// Every client in MULTI is followed (a queue costs far less than the commands the server
/// holds for it) until its EXEC or DISCARD; the queues of clients gone meanwhile are
/// dropped each time their number doubles.
fn start_queue(client: u64) {
    with_notes(|notes| {
        notes.queued.insert(client, Queued::default());
        if notes.queued.len() >= notes.prune_at.max(PRUNE_FROM) {
            notes.queued.retain(|&id, _| client_exists(id));
            notes.prune_at = 2 * notes.queued.len();
        }
    });
}

/// Queues past which those of clients gone are looked for.
const PRUNE_FROM: usize = 1024;

fn queue_touched(client: u64, keys: Vec<(Bytes, Event)>) {
    with_notes(|notes| {
        if let Some(queued) = notes.queued.get_mut(&client) {
            queued.touched.extend(keys);
        }
    });
}

/// EXEC: the client's queued notes are the current ones while its commands run; returns
/// the string and hash keys they write.
fn run_queue(client: u64) -> Vec<(Bytes, Event)> {
    let touched = with_notes(|notes| {
        let queued = notes.queued.remove(&client).unwrap_or_default();
        notes.keys = queued.members;
        queued.touched
    });
    NOTED.store(true, Ordering::Relaxed);
    schedule_clear();
    touched
}

/// CLIENT PAUSE <ms>, CLIENT UNPAUSE, FAILOVER: the commands they hold run later without
/// a filter call; nothing is noted until they have.
#[cold]
#[inline(never)]
fn pause_guard(command: &FilteredCommand) {
    let sub = command.arg(1).to_ascii_lowercase();
    let hold = match &sub[..] {
        b"pause" => std::str::from_utf8(command.arg(2))
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(Duration::from_secs(3600), Duration::from_millis),
        b"unpause" => Duration::ZERO,
        _ if command.arg(0).eq_ignore_ascii_case(b"failover") => Duration::from_secs(3600),
        _ => return,
    };
    let until = Instant::now()
        .checked_add(hold.saturating_add(PAUSE_MARGIN))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
    let mut paused = PAUSED_UNTIL.lock().unwrap_or_else(PoisonError::into_inner);
    *paused = Some(paused.map_or(until, |known| known.max(until)));
    PAUSE_SEEN.store(true, Ordering::Relaxed);
}

fn pause_holds() -> bool {
    let mut paused = PAUSED_UNTIL.lock().unwrap_or_else(PoisonError::into_inner);
    match *paused {
        Some(until) if Instant::now() < until => true,
        Some(_) => {
            *paused = None;
            PAUSE_SEEN.store(false, Ordering::Relaxed);
            false
        }
        None => false,
    }
}

#[cold]
#[inline(never)]
fn forget_current() {
    let mut notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(notes) = notes.as_mut() {
        notes.keys.clear();
    }
    NOTED.store(false, Ordering::Relaxed);
}

fn note<'a>(key: &[u8], members: Option<impl Iterator<Item = &'a [u8]>>, queued: Option<u64>) {
    if pause_holds() {
        return;
    }
    // Only keys an index reads (in any database: the filter does not know the client's).
    let watched = match REGISTRY.try_lock() {
        Ok(registry) => registry.routes.is_watched(key),
        Err(_) => true,
    };
    if !watched {
        return;
    }
    with_notes(|notes| {
        let keys = match queued {
            Some(client) => match notes.queued.get_mut(&client) {
                Some(queued) => &mut queued.members,
                None => return,
            },
            None => &mut notes.keys,
        };
        let entry = keys.entry(key.to_vec()).or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), members) {
            (Some(noted), Some(members)) => {
                noted.extend(members.map(<[u8]>::to_vec));
                if noted.len() > MAX_MEMBERS {
                    *entry = None;
                }
            }
            _ => *entry = None,
        }
    });
    if queued.is_none() {
        NOTED.store(true, Ordering::Relaxed);
        schedule_clear();
    }
}

/// Drops the current notes when this turn of the event loop is over.
fn schedule_clear() {
    with_notes(|notes| {
        if !notes.clearing {
            notes.clearing = run_at_end_of_turn(clear);
            if !notes.clearing {
                // No way to drop the notes at the end of the turn: none are kept.
                notes.keys.clear();
            }
        }
    });
}

fn clear(_ctx: &Context) {
    with_notes(|notes| notes.clearing = false);
    forget_current();
}

/// The members the last filtered command noted for `key`, if each can be read back; the
/// note is used up either way.
pub(super) fn take(key: &[u8]) -> Option<Vec<Bytes>> {
    if !NOTED.load(Ordering::Relaxed) {
        return None;
    }
    let mut notes = NOTES.lock().unwrap_or_else(PoisonError::into_inner);
    notes.as_mut()?.keys.remove(key).flatten()
}

/// Drops every note (module unload: nothing may stay in an unloaded module's statics).
pub fn release() {
    *NOTES.lock().unwrap_or_else(PoisonError::into_inner) = None;
    NOTED.store(false, Ordering::Relaxed);
}
