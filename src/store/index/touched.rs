//! String and hash writes seen by the command filter instead of notifications. Each
//! key-space notification costs the server a module context: subscribed to every class,
//! the module cost SET and HSET 15 to 18% of their throughput with no index at all (see
//! `bench/ROUTING.md`). Where the filter can stand in, the module does not subscribe to
//! string and hash notifications: the filter sees every command that writes a string or a
//! hash (from clients, scripts, other modules, a primary's stream) with the keys it names,
//! and a meeting's hash is followed as its notification would have been (a hash is a
//! meeting's row; a string may replace one). The other keys an index reads are sets and
//! sorted sets: a string or hash command cannot change one, only replace it or create it
//! under its name, and every answer checks the type of the keys its query names first, as
//! the keyspace path does; the notification of the key's deletion follows.
//!
//! The filter runs before its command, so the change is marked then (nothing reads an
//! index between a filter call and its command) and again once the command has surely
//! run: when the turn of the event loop ends, which also covers the commands an EXEC runs
//! after its filter call marked what its client queued. A command the server postponed
//! (CLIENT PAUSE, a failover) leaves its client blocked at the end of the turn: its keys
//! are marked again before every answer and every few milliseconds, until a check after
//! the client was seen released.
//!
//! Where the server cannot name a command's client (Redis 7.0, where MULTI could not be
//! followed) the module subscribes to every class; it keeps hash notifications where a
//! row's read cannot tell field TTLs (Valkey), since a field may expire unannounced.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use redis_module::{Context, NotifyEvent};

use super::events::{defer_touch, Event};
use super::{routes, try_with_registry, with_registry, Registry, REGISTRY};
use crate::core::types::Bytes;
use crate::ffi::hooks::{
    client_is_blocked, filter_names_clients, run_at_end_of_turn, FilteredCommand,
};
use crate::ffi::key::field_ttls_readable;
use crate::ffi::verb::Verb;

const STRINGS: u8 = 1;
const HASHES: u8 = 2;
/// Which of [`STRINGS`] and [`HASHES`] the filter follows on this server.
static FOLLOWED: AtomicU8 = AtomicU8::new(0);

/// How often postponed commands' clients are looked at.
const POSTPONED_CHECK: Duration = Duration::from_millis(10);

/// Decides, once at load, what the filter follows on this server; returns the notification
/// classes it stands in for.
pub fn choose() -> NotifyEvent {
    let mut followed = 0;
    let mut classes = NotifyEvent::empty();
    if filter_names_clients() {
        followed |= STRINGS;
        classes |= NotifyEvent::STRING;
        if field_ttls_readable() {
            followed |= HASHES;
            classes |= NotifyEvent::HASH;
        }
    }
    FOLLOWED.store(followed, Ordering::Relaxed);
    classes
}

/// What the filter follows instead of notifications, for INFO (`index_filter_follows`):
/// `strings,hashes`, `strings` or `none`.
pub fn followed_classes() -> &'static str {
    match FOLLOWED.load(Ordering::Relaxed) {
        0 => "none",
        STRINGS => "strings",
        _ => "strings,hashes",
    }
}

/// Whether CRM writes must tell other indexes of the hash they wrote (no hash
/// notification does).
pub(super) fn hashes_followed() -> bool {
    FOLLOWED.load(Ordering::Relaxed) & HASHES != 0
}

/// Where a write command names its keys, and what it means to an index, when the filter
/// follows its class here.
pub(super) fn written_keys(verb: Verb) -> Option<(Positions, Event)> {
    let followed = FOLLOWED.load(Ordering::Relaxed);
    let class = match verb {
        Verb::Set
        | Verb::Setnx
        | Verb::Setex
        | Verb::Psetex
        | Verb::Getset
        | Verb::Append
        | Verb::Setrange
        | Verb::Incr
        | Verb::Decr
        | Verb::Incrby
        | Verb::Decrby
        | Verb::Incrbyfloat
        | Verb::Setbit
        | Verb::Bitfield
        | Verb::Pfadd
        | Verb::Pfmerge => (STRINGS, Positions::First, Event::Other),
        Verb::Bitop => (STRINGS, Positions::Second, Event::Other),
        Verb::Mset | Verb::Msetnx => (STRINGS, Positions::Pairs, Event::Other),
        Verb::Hset
        | Verb::Hsetnx
        | Verb::Hmset
        | Verb::Hdel
        | Verb::Hincrby
        | Verb::Hincrbyfloat
        | Verb::Hpersist
        | Verb::Hgetdel => (HASHES, Positions::First, Event::Other),
        Verb::Hexpire
        | Verb::Hpexpire
        | Verb::Hexpireat
        | Verb::Hpexpireat
        | Verb::Hsetex
        | Verb::Hgetex => (HASHES, Positions::First, Event::FieldExpire),
        _ => return None,
    };
    let (needed, positions, event) = class;
    (followed & needed != 0).then_some((positions, event))
}

/// Where a command's keys are.
#[derive(Clone, Copy)]
pub(super) enum Positions {
    /// The first argument.
    First,
    /// The second (BITOP's destination).
    Second,
    /// Every other argument from the first (MSET key value ...).
    Pairs,
}

impl Positions {
    /// Calls `each` with every key of `command` (no allocation: this runs before every
    /// string and hash write of the server).
    fn for_each_key<'c>(self, command: &'c FilteredCommand, mut each: impl FnMut(&'c [u8])) {
        match self {
            Positions::First => each(command.arg(1)),
            Positions::Second => each(command.arg(2)),
            Positions::Pairs => (1..command.word_count())
                .step_by(2)
                .for_each(|at| each(command.arg(at))),
        }
    }

    /// Whether some key of `command` may be a meeting's hash: no lock and no allocation,
    /// for the common write to keys no index reads.
    pub(super) fn may_name_meeting(self, command: &FilteredCommand) -> bool {
        let mut may = false;
        self.for_each_key(command, |key| may |= routes::may_name_meeting(key));
        may
    }
}

/// A key a filtered command names, followed again once the command has surely run.
pub(super) struct Touch {
    client: Option<u64>,
    key: Bytes,
    event: Event,
    /// The client was seen released; the next check (a later turn) is the last.
    released: bool,
}

/// The keys of `command`, each with `event`. With `only_meetings`, just those some index
/// has as a meeting's hash (in any database: the filter does not know the client's), or
/// every key when the registry is busy.
pub(super) fn named_keys(
    positions: Positions,
    event: Event,
    command: &FilteredCommand,
    only_meetings: bool,
) -> Vec<(Bytes, Event)> {
    let mut keys = Vec::new();
    positions.for_each_key(command, |key| {
        let kept = !only_meetings
            || routes::may_name_meeting(key)
                && REGISTRY
                    .try_lock()
                    .map_or(true, |registry| registry.routes.names_a_meeting(key));
        if kept {
            keys.push((key.to_vec(), event));
        }
    });
    keys
}

/// `client`'s command is about to change `keys` (or its EXEC is about to run commands that
/// do): followed now, and again when the command has run. With `held` (a pause may hold
/// the command), keys no index has as a meeting's hash yet are kept too: one may by the
/// time it runs.
pub(super) fn touch(keys: Vec<(Bytes, Event)>, client: Option<u64>, held: bool) {
    if keys.is_empty() {
        return;
    }
    let mut keys = keys;
    let _ = try_with_registry(|registry| {
        for (key, event) in keys.drain(..) {
            if held || registry.routes.names_a_meeting(&key) {
                registry.touch(key, event, client);
            }
        }
    });
    // Left only when the registry was busy: followed when it is released (see
    // `events::apply_pending`).
    for (key, event) in keys {
        defer_touch(key, event);
    }
}

/// The end of the turn: the commands touched have run, but those postponed.
fn settle(ctx: &Context) {
    with_registry(|registry| {
        registry.settling = false;
        for touch in std::mem::take(&mut registry.touched) {
            registry.mark_everywhere(&touch.key, touch.event);
            if touch.client.is_some_and(client_is_blocked) {
                registry.postponed.push(touch);
            }
        }
        registry.check_postponed_soon(ctx);
    });
}

fn check_postponed(ctx: &Context) {
    with_registry(|registry| {
        registry.postponed_timer = false;
        let mut postponed = std::mem::take(&mut registry.postponed);
        postponed.retain_mut(|touch| {
            registry.mark_everywhere(&touch.key, touch.event);
            let keep = !touch.released;
            touch.released = !touch.client.is_some_and(client_is_blocked);
            keep
        });
        registry.postponed = postponed;
        registry.check_postponed_soon(ctx);
    });
}

impl Registry {
    /// See [`touch`].
    pub(super) fn touch(&mut self, key: Bytes, event: Event, client: Option<u64>) {
        self.mark_everywhere(&key, event);
        self.touched.push(Touch {
            client,
            key,
            event,
            released: false,
        });
        if !self.settling {
            self.settling = run_at_end_of_turn(settle);
            if !self.settling {
                // No end-of-turn callback: followed as if postponed.
                let touched = std::mem::take(&mut self.touched);
                self.postponed.extend(touched);
            }
        }
    }

    /// Follows a change to `key` in every database where an index follows it.
    pub(super) fn mark_everywhere(&mut self, key: &[u8], event: Event) {
        for db in self.routes.databases_of(key) {
            self.key_changed(None, db, key, event);
        }
    }

    /// Before an answer: what postponed commands may have changed is read again.
    pub(super) fn mark_postponed(&mut self, ctx: &Context) {
        if self.postponed.is_empty() {
            return;
        }
        self.check_postponed_soon(ctx);
        let postponed = std::mem::take(&mut self.postponed);
        for touch in &postponed {
            self.mark_everywhere(&touch.key, touch.event);
        }
        self.postponed = postponed;
    }

    fn check_postponed_soon(&mut self, ctx: &Context) {
        if !self.postponed.is_empty() && !self.postponed_timer {
            ctx.create_timer(POSTPONED_CHECK, |ctx, ()| check_postponed(ctx), ());
            self.postponed_timer = true;
        }
    }
}
