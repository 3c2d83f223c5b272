//! The `crm` section of INFO: calls, errors and a latency histogram (p50, p99, max) per
//! command, and the rows CRM.MEETINGS returned. CONFIG RESETSTAT resets it, as it does the
//! server's own statistics (seen through a command filter: modules get no event for it).

use std::sync::{Mutex, PoisonError};

use redis_module::{Context, InfoContext, RedisResult};

use super::spec;
use crate::ffi::hooks::{register_command_filter, register_info, FilteredCommand};
use crate::ffi::verb::Verb;
use crate::store::{access, index};

/// Latencies in microseconds: exact below 16, then 8 buckets per power of two, so a
/// percentile is read to within 12.5%.
const EXACT: u64 = 16;
const SUB_BUCKETS: u64 = 8;
const BUCKETS: usize = 16 + 60 * 8;

#[derive(Clone, Copy)]
struct CommandStats {
    calls: u64,
    errors: u64,
    max_us: u64,
    histogram: [u64; BUCKETS],
}

impl CommandStats {
    const NEW: CommandStats = CommandStats {
        calls: 0,
        errors: 0,
        max_us: 0,
        histogram: [0; BUCKETS],
    };

    /// The latency at quantile `q` (0..=1), as the upper end of its bucket.
    fn quantile(&self, q: f64) -> u64 {
        let wanted = ((self.calls as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.histogram.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return bucket_upper(index).min(self.max_us);
            }
        }
        self.max_us
    }
}

fn bucket(micros: u64) -> usize {
    if micros < EXACT {
        return micros as usize;
    }
    let octave = 63 - u64::from(micros.leading_zeros());
    let sub = (micros >> (octave - 3)) & (SUB_BUCKETS - 1);
    (EXACT + (octave - 4) * SUB_BUCKETS + sub).min(BUCKETS as u64 - 1) as usize
}

fn bucket_upper(index: usize) -> u64 {
    let index = index as u64;
    if index < EXACT {
        return index;
    }
    let octave = (index - EXACT) / SUB_BUCKETS + 4;
    let sub = (index - EXACT) % SUB_BUCKETS;
    // In u128: the last buckets' bounds pass u64::MAX.
    let upper = (u128::from(SUB_BUCKETS + sub + 1) << (octave - 3)) - 1;
    u64::try_from(upper).unwrap_or(u64::MAX)
}

struct Stats {
    commands: [CommandStats; spec::ALL.len()],
    rows_returned: u64,
}

impl Stats {
    const NEW: Stats = Stats {
        commands: [CommandStats::NEW; spec::ALL.len()],
        rows_returned: 0,
    };
}

/// Fixed-size and allocated with the module: recording a call never allocates.
static STATS: Mutex<Stats> = Mutex::new(Stats::NEW);

fn with_stats<T>(f: impl FnOnce(&mut Stats) -> T) -> T {
    f(&mut STATS.lock().unwrap_or_else(PoisonError::into_inner))
}

/// One call of `command`, how long it took and whether it failed.
pub fn record(command: &str, micros: u64, failed: bool) {
    let Some(index) = spec::ALL.iter().position(|info| info.name == command) else {
        return;
    };
    with_stats(|stats| {
        if let Some(entry) = stats.commands.get_mut(index) {
            entry.calls += 1;
            entry.errors += u64::from(failed);
            entry.max_us = entry.max_us.max(micros);
            if let Some(count) = entry.histogram.get_mut(bucket(micros)) {
                *count += 1;
            }
        }
    });
}

/// Meetings a CRM.MEETINGS call returned.
pub fn rows_returned(rows: usize) {
    with_stats(|stats| stats.rows_returned += rows as u64);
}

#[cold]
pub fn reset() {
    with_stats(|stats| *stats = Stats::NEW);
}

/// Replaces the default INFO callback and installs the command filter.
pub fn register(ctx: &Context) -> Result<(), String> {
    register_info(ctx, render)?;
    register_command_filter(ctx, watch_command)
}

/// Runs before every command of the server: CONFIG RESETSTAT resets these statistics, an
/// ACL command (or the EXEC of a transaction that may hold one) may change what users may
/// read, and the indexes follow what writes name (see `store::index::members`).
fn watch_command(command: &FilteredCommand) {
    let verb = Verb::of(command.arg(0));
    match verb {
        Verb::Config
            if command.word_count() == 2 && command.arg(1).eq_ignore_ascii_case(b"resetstat") =>
        {
            reset()
        }
        Verb::Acl => access::acl_command(command.client_id()),
        Verb::Exec => access::exec_command(command.client_id()),
        _ => {}
    }
    index::members::on_command(command, verb);
}

/// The default section, shown as `# crm` with fields prefixed `crm_`.
fn render(ctx: &InfoContext) {
    let _ = build(ctx);
}

fn build(ctx: &InfoContext) -> RedisResult<()> {
    // Copy the figures out first: the INFO calls below must not run under the lock.
    let (commands, rows) = with_stats(|stats| (stats.commands, stats.rows_returned));
    let mut section = ctx.builder().add_section("");
    for (command, stats) in spec::ALL.iter().zip(&commands) {
        let name = command.name.trim_start_matches("crm.").replace('.', "_");
        section = section
            .add_dictionary(&name)
            .field("calls", stats.calls)?
            .field("errors", stats.errors)?
            .field("p50_us", stats.quantile(0.50))?
            .field("p99_us", stats.quantile(0.99))?
            .field("max_us", stats.max_us)?
            .build_dictionary()?;
    }
    section = section.field("rows_returned", rows)?;
    if let Some(index) = index::figures() {
        let [filter_first, client_first, sort_walk] = index.plans;
        for (field, value) in [
            ("index_installations", index.installations),
            ("index_meetings", index.meetings),
            ("index_memory_bytes", index.memory_bytes),
            ("index_building", index.building),
            ("index_builds", index.builds),
            ("index_last_build_ms", index.last_build_ms),
            ("index_longest_hold_us", index.longest_hold_us),
            ("index_partial_rebuilds", index.partial_rebuilds),
            ("index_invalidations", index.invalidations),
            ("index_dropped", index.dropped),
            ("plan_filter_first", filter_first),
            ("plan_client_first", client_first),
            ("plan_sort_walk", sort_walk),
            ("plan_keyspace", index.keyspace_answers),
            ("index_member_updates", index.member_updates),
            ("index_waits", index.waits),
            ("index_wait_timeouts", index.wait_timeouts),
            ("index_loading_errors", index.loading_errors),
        ] {
            section = section.field(field, value)?;
        }
    }
    section = section.field("index_filter_follows", index::touched::followed_classes())?;
    section.build_section()?.build_info()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values() {
        for micros in [
            0,
            1,
            15,
            16,
            17,
            100,
            1_000,
            12_345,
            1_000_000,
            u64::MAX / 4,
        ] {
            let index = bucket(micros);
            assert!(bucket_upper(index) >= micros, "{micros}");
            assert!(bucket_upper(index) <= micros + micros / 8 + 1, "{micros}");
        }
    }

    #[test]
    fn quantiles() {
        let mut stats = CommandStats::NEW;
        for micros in 1..=100u64 {
            stats.calls += 1;
            stats.max_us = stats.max_us.max(micros);
            stats.histogram[bucket(micros)] += 1;
        }
        let p50 = stats.quantile(0.5);
        assert!((50..=56).contains(&p50), "{p50}");
        assert!((99..=100).contains(&stats.quantile(0.99)));
    }
}
