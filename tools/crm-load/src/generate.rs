//! `crm-load generate` (or crm-load with no subcommand): writes a realistic CRM
//! installation through CRM.MEETING.SET, pipelined.
//!
//! 5 meeting types (email 40%), status open 30% / close 70%, meetings/10 clients, users
//! who see 1% of the clients (the first five are managers who see 50%), unique dates over
//! five years from 2022 (with `--distinct-dates K`, rounded down to K values: ties),
//! ~200-byte JSON details, and smaller neighbour installations (a tenth of the size each).
//! With `--installations K`: K installations of `--meetings` each instead (`10-1` to
//! `10-K`), each with its own users (`10-1-1` to `10-1-U`).
//! Each meeting hash also holds its `installation`. The same seed writes the same data.
//!
//! Keys are named by the server's own templates (`crm.meeting-key`, `crm.clients-key`), so
//! the data lands where queries read it. An id whose hash exists and names another
//! installation (or none: written by someone else) is skipped for the next free one: a
//! run never overwrites meetings it did not write.

use std::time::Instant;

use clap::Args;
// splitmix64, shared with the tests: the same data for the same seed on every machine.
use seeded::Rng;

use crate::server::{progress_bar, Server, Settings};

const TYPES: [(&str, u64); 5] = [
    ("email", 40),
    ("call", 20),
    ("sms", 15),
    ("visit", 15),
    ("video", 10),
];
const FIVE_YEARS: u64 = 5 * 365 * 86_400;
const START: u64 = 1_640_995_200; // 2022-01-01T00:00:00Z
const MANAGERS: u64 = 5;

#[derive(Args, Debug, Clone)]
pub struct Options {
    #[command(flatten)]
    server: Server,
    /// Meetings of the installation (of each, with --installations)
    #[arg(long, default_value_t = 10_000)]
    meetings: u64,
    #[arg(long, default_value = "10")]
    installation: String,
    /// Neighbour installations of a tenth of the size each (`<installation>-n1`, ...)
    #[arg(long, default_value_t = 3)]
    neighbours: u64,
    /// Installations of --meetings each (`<installation>-1`, `-2`, ...), each with its own
    /// users (`<installation>-1-1`, ...), instead of one installation and its neighbours
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    installations: u64,
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    users: u64,
    /// Prefix of the user names (`<prefix>1` ...)
    #[arg(long, default_value = "")]
    user_prefix: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Meetings per pipeline
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Dates as Unix seconds instead of RFC 3339 text (RediSearch indexes numbers only)
    #[arg(long)]
    unix_dates: bool,
    /// Dates rounded down to this many distinct values (0: every date distinct)
    #[arg(long, default_value_t = 0)]
    distinct_dates: u64,
}

pub fn run(options: &Options) -> Result<(), String> {
    let mut con = options.server.connect()?;
    let mut rng = Rng::new(options.seed);
    let clients = (options.meetings / 10).max(1);
    let started = Instant::now();

    let settings = Settings::read(&mut con)?;
    let many = options.installations > 1;
    let neighbour_size = if many { 0 } else { options.meetings / 10 };
    let installations: Vec<(String, u64)> = if many {
        (1..=options.installations)
            .map(|k| (format!("{}-{k}", options.installation), options.meetings))
            .collect()
    } else {
        std::iter::once((options.installation.clone(), options.meetings))
            .chain(
                (1..=options.neighbours)
                    .map(|n| (format!("{}-n{n}", options.installation), neighbour_size)),
            )
            .collect()
    };
    // Users' sets are per installation when their template names it or each installation
    // has its own users; else the neighbours share the first one's.
    let per_installation = many || settings.clients.contains("<installation>");
    for (installation, _) in
        installations
            .iter()
            .take(if per_installation { usize::MAX } else { 1 })
    {
        let prefix = if many {
            format!("{}{installation}-", options.user_prefix)
        } else {
            options.user_prefix.clone()
        };
        write_users(
            &mut con,
            &mut rng,
            options,
            &settings,
            installation,
            &prefix,
            clients,
        )?;
    }
    let total: u64 = installations.iter().map(|(_, count)| count).sum();
    let progress = progress_bar(Some(total), "meetings");
    // Ids are global under the default `meeting:<id>` key, so each installation gets its own range.
    let mut next_id = 1;
    for (installation, count) in &installations {
        let ids = free_ids(&mut con, &settings, installation, &mut next_id, *count)?;
        write_meetings(
            &mut con,
            &mut rng,
            options,
            installation,
            &ids,
            clients,
            &progress,
        )?;
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let rate = total as f64 / seconds.max(1e-9);
    if many {
        println!(
            "loaded {} installations of {} meetings ({}-1 to {}-{}) in {seconds:.2} s: {rate:.0} meetings/s",
            options.installations,
            options.meetings,
            options.installation,
            options.installation,
            options.installations,
        );
    } else {
        println!(
            "loaded {} meetings into installation {} (+{} in {} neighbours) in {seconds:.2} s: {rate:.0} meetings/s",
            options.meetings,
            options.installation,
            options.neighbours * neighbour_size,
            options.neighbours,
        );
    }
    Ok(())
}

/// Users 1..=U: the first five are managers who see half the clients, the rest 1%.
fn write_users(
    con: &mut redis::Connection,
    rng: &mut Rng,
    options: &Options,
    settings: &Settings,
    installation: &str,
    user_prefix: &str,
    clients: u64,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for user in 1..=options.users {
        let share = if user <= MANAGERS { 2 } else { 100 };
        let count = (clients / share).max(1);
        let visible: Vec<u64> = (0..count).map(|_| 1 + rng.below(clients)).collect();
        let user = format!("{user_prefix}{user}");
        let key = settings.clients_key(installation, &user);
        pipe.cmd("DEL").arg(&key).ignore();
        for chunk in visible.chunks(10_000) {
            pipe.cmd("SADD").arg(&key).arg(chunk).ignore();
        }
    }
    pipe.query::<()>(con)
        .map_err(|e| format!("writing users: {e}"))
}

#[allow(clippy::too_many_arguments)]
fn write_meetings(
    con: &mut redis::Connection,
    rng: &mut Rng,
    options: &Options,
    installation: &str,
    ids: &[u64],
    clients: u64,
    progress: &indicatif::ProgressBar,
) -> Result<(), String> {
    let count = ids.len() as u64;
    let step = (FIVE_YEARS / count.max(1)).max(1);
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for (index, &id) in (0u64..).zip(ids) {
        // A permutation of the slots (the multiplier is a prime that divides no count we
        // use), plus an offset inside the slot: every date is distinct.
        let slot = (index.wrapping_mul(1_000_003)) % count;
        let date = START + slot * step + rng.below(step);
        let date = match options.distinct_dates {
            0 => date,
            values => {
                let width = (FIVE_YEARS / values).max(1);
                START + (date - START) / width * width
            }
        };
        let meeting_type = pick_type(rng.below(100));
        let status = if rng.below(100) < 30 { "open" } else { "close" };
        let client = 1 + rng.below(clients);
        let details = format!(
            "{{\"subject\":\"{meeting_type} with client {client}\",\"owner\":{},\"location\":\"Room {}\",\"notes\":\"{}\"}}",
            1 + rng.below(options.users),
            rng.below(40),
            "Agenda: pricing, renewal, next steps. ".repeat(3)
        );
        pipe.cmd("CRM.MEETING.SET")
            .arg(installation)
            .arg(id)
            .arg("clientid")
            .arg(client)
            .arg("type")
            .arg(meeting_type)
            .arg("status")
            .arg(status)
            .arg("date")
            .arg(if options.unix_dates {
                date.to_string()
            } else {
                rfc3339(date)
            })
            .arg("installation")
            .arg(installation)
            .arg("details")
            .arg(details)
            .ignore();
        queued += 1;
        if queued == options.batch || index + 1 == count {
            pipe.query::<()>(con)
                .map_err(|e| format!("writing meetings: {e}"))?;
            pipe.clear();
            progress.inc(queued);
            queued = 0;
        }
    }
    Ok(())
}

/// `count` ids from `next_id` on whose meeting is free or already this installation's
/// (its hash names it): an id someone else wrote is skipped.
fn free_ids(
    con: &mut redis::Connection,
    settings: &Settings,
    installation: &str,
    next_id: &mut u64,
    count: u64,
) -> Result<Vec<u64>, String> {
    const CHUNK: u64 = 10_000;
    let mut ids = Vec::with_capacity(count as usize);
    while (ids.len() as u64) < count {
        let candidates: Vec<u64> =
            (*next_id..*next_id + CHUNK.min(count - ids.len() as u64)).collect();
        *next_id += candidates.len() as u64;
        let mut pipe = redis::pipe();
        for id in &candidates {
            let key = settings.meeting_key(installation, &id.to_string());
            pipe.cmd("EXISTS")
                .arg(&key)
                .cmd("HGET")
                .arg(&key)
                .arg("installation");
        }
        let replies: Vec<(bool, Option<String>)> = pipe
            .query::<Vec<redis::Value>>(con)
            .map_err(|e| format!("checking meeting ids: {e}"))?
            .chunks(2)
            .map(|pair| match pair {
                [redis::Value::Int(exists), owner] => {
                    (*exists > 0, redis::from_redis_value(owner).ok())
                }
                _ => (true, None),
            })
            .collect();
        ids.extend(
            candidates
                .into_iter()
                .zip(replies)
                .filter_map(|(id, (exists, owner))| {
                    (!exists || owner.as_deref() == Some(installation)).then_some(id)
                }),
        );
    }
    Ok(ids)
}

fn pick_type(percent: u64) -> &'static str {
    let mut below = 0;
    for (name, share) in TYPES {
        below += share;
        if percent < below {
            return name;
        }
    }
    "email"
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_497_052_800), "2017-06-10T00:00:00Z");
        assert_eq!(rfc3339(1_709_208_000), "2024-02-29T12:00:00Z");
    }
}
