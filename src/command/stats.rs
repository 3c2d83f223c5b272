//! The `crm` section of INFO: calls, errors and a latency histogram (p50, p99, max) per
//! command, and the rows CRM.MEETINGS returned. CONFIG RESETSTAT resets it, as it does the
//! server's own statistics (seen through a command filter: modules get no event for it).

use std::ffi::CString;
use std::os::raw::{c_char, c_int};
use std::sync::{Mutex, PoisonError};

use redis_module::{raw, Context};

use super::info;
use crate::store::indexes;
use crate::store::redis_key::copy_bytes;

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
    commands: [CommandStats; info::ALL.len()],
    rows_returned: u64,
}

impl Stats {
    const NEW: Stats = Stats {
        commands: [CommandStats::NEW; info::ALL.len()],
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
    let Some(index) = info::ALL.iter().position(|info| info.name == command) else {
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

pub fn reset() {
    with_stats(|stats| *stats = Stats::NEW);
}

/// Replaces the default INFO callback and watches for CONFIG RESETSTAT.
pub fn register(ctx: &Context) -> Result<(), String> {
    // SAFETY: called from OnLoad with the module's context; the callbacks live forever.
    unsafe {
        let register_info = raw::RedisModule_RegisterInfoFunc.ok_or("no INFO callbacks")?;
        if register_info(ctx.ctx, Some(info_callback)) != raw::REDISMODULE_OK as c_int {
            return Err("cannot register the INFO section".into());
        }
        let register_filter = raw::RedisModule_RegisterCommandFilter.ok_or("no command filters")?;
        let filter = register_filter(
            ctx.ctx,
            Some(resetstat_filter),
            raw::REDISMODULE_CMDFILTER_NOSELF as c_int,
        );
        if filter.is_null() {
            return Err("cannot register the CONFIG RESETSTAT filter".into());
        }
    }
    Ok(())
}

extern "C" fn resetstat_filter(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    // SAFETY: the filter context is valid during the callback; arguments are read only.
    let arg = |pos: c_int| -> Vec<u8> {
        match unsafe { raw::RedisModule_CommandFilterArgGet } {
            Some(get) => copy_bytes(unsafe { get(fctx, pos) }),
            None => Vec::new(),
        }
    };
    let count = unsafe { raw::RedisModule_CommandFilterArgsCount.map_or(0, |count| count(fctx)) };
    let command = arg(0);
    if count == 2
        && command.eq_ignore_ascii_case(b"config")
        && arg(1).eq_ignore_ascii_case(b"resetstat")
    {
        reset();
    }
    // ACL rules change with an ACL command (or an EXEC that holds one).
    if command.eq_ignore_ascii_case(b"acl") || command.eq_ignore_ascii_case(b"exec") {
        indexes::acl_changed();
    }
}

extern "C" fn info_callback(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    // Copy the figures out first: the INFO calls below must not run under the lock.
    let (commands, rows) = with_stats(|stats| (stats.commands, stats.rows_returned));
    let text = |value: &str| CString::new(value).unwrap_or_default();
    // SAFETY: a live INFO context; every C string outlives the call that takes it.
    unsafe {
        let (Some(section), Some(begin), Some(end), Some(add)) = (
            raw::RedisModule_InfoAddSection,
            raw::RedisModule_InfoBeginDictField,
            raw::RedisModule_InfoEndDictField,
            raw::RedisModule_InfoAddFieldULongLong,
        ) else {
            return;
        };
        // The default section: shown as `# crm`, fields prefixed with `crm_`.
        section(ctx, c"".as_ptr());
        for (command, stats) in info::ALL.iter().zip(&commands) {
            let name = text(
                command
                    .name
                    .trim_start_matches("crm.")
                    .replace('.', "_")
                    .as_str(),
            );
            begin(ctx, name.as_ptr());
            let fields: [(&std::ffi::CStr, u64); 5] = [
                (c"calls", stats.calls),
                (c"errors", stats.errors),
                (c"p50_us", stats.quantile(0.50)),
                (c"p99_us", stats.quantile(0.99)),
                (c"max_us", stats.max_us),
            ];
            for (field, value) in fields {
                add(ctx, field.as_ptr() as *const c_char, value);
            }
            end(ctx);
        }
        add(ctx, c"rows_returned".as_ptr(), rows);
        if let Some(index) = indexes::figures() {
            let [filter_first, client_first, sort_walk] = index.plans;
            let fields: [(&std::ffi::CStr, u64); 14] = [
                (c"index_installations", index.installations),
                (c"index_meetings", index.meetings),
                (c"index_memory_bytes", index.memory_bytes),
                (c"index_building", index.building),
                (c"index_builds", index.builds),
                (c"index_last_build_ms", index.last_build_ms),
                (c"index_longest_hold_us", index.longest_hold_us),
                (c"index_partial_rebuilds", index.partial_rebuilds),
                (c"index_invalidations", index.invalidations),
                (c"index_dropped", index.dropped),
                (c"plan_filter_first", filter_first),
                (c"plan_client_first", client_first),
                (c"plan_sort_walk", sort_walk),
                (c"plan_keyspace", index.keyspace_answers),
            ];
            for (field, value) in fields {
                add(ctx, field.as_ptr() as *const c_char, value);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
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
