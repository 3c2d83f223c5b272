//! crm-load: writes a realistic CRM installation through CRM.MEETING.SET, pipelined.
//!
//! ```text
//! cargo run --release -p crm-load -- --meetings 100000 [--port 6379] [--host 127.0.0.1]
//!     [--installation 10] [--neighbours 3] [--users 200] [--user-prefix P] [--seed 1]
//!     [--batch 1000] [--unix-dates] [--distinct-dates K]
//! ```
//! 5 meeting types (email 40%), status open 30% / close 70%, meetings/10 clients, users
//! who see 1% of the clients (the first five are managers who see 50%), unique dates over
//! five years from 2022 (with `--distinct-dates K`, rounded down to K values: ties),
//! ~200-byte JSON details, and smaller neighbour installations (a tenth of the size each).
//! Each meeting hash also holds its `installation`. The same seed writes the same data.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

// splitmix64, shared with the tests: the same data for the same seed on every machine.
use seeded::Rng;

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

struct Options {
    host: String,
    port: u16,
    meetings: u64,
    installation: String,
    neighbours: u64,
    users: u64,
    user_prefix: String,
    seed: u64,
    batch: usize,
    /// Dates as Unix seconds instead of RFC 3339 text (RediSearch indexes numbers only).
    unix_dates: bool,
    /// Dates rounded down to this many distinct values (0: every date distinct).
    distinct_dates: u64,
}

fn main() -> ExitCode {
    match parse_options().and_then(|options| load(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("crm-load: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        host: "127.0.0.1".into(),
        port: 6379,
        meetings: 10_000,
        installation: "10".into(),
        neighbours: 3,
        users: 200,
        user_prefix: String::new(),
        seed: 1,
        batch: 1000,
        unix_dates: false,
        distinct_dates: 0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {text}"))
        };
        match flag.as_str() {
            "--host" => options.host = value()?,
            "--port" => {
                options.port = number(value()?)?
                    .try_into()
                    .map_err(|_| "--port: too large")?
            }
            "--meetings" => options.meetings = number(value()?)?,
            "--installation" => options.installation = value()?,
            "--neighbours" => options.neighbours = number(value()?)?,
            "--users" => options.users = number(value()?)?.max(1),
            "--user-prefix" => options.user_prefix = value()?,
            "--seed" => options.seed = number(value()?)?,
            "--batch" => options.batch = number(value()?)?.max(1) as usize,
            "--unix-dates" => options.unix_dates = true,
            "--distinct-dates" => options.distinct_dates = number(value()?)?,
            "--help" | "-h" => {
                println!("crm-load --meetings N [--port P] [--host H] [--installation I] [--neighbours K] [--users U] [--user-prefix P] [--seed S] [--batch B] [--unix-dates] [--distinct-dates K]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other} (see --help)")),
        }
    }
    Ok(options)
}

fn load(options: &Options) -> Result<(), String> {
    let url = format!("redis://{}:{}/", options.host, options.port);
    let mut con = redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection())
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let mut rng = Rng::new(options.seed);
    let clients = (options.meetings / 10).max(1);
    let started = Instant::now();

    write_users(&mut con, &mut rng, options, clients)?;
    let neighbour_size = options.meetings / 10;
    let total = options.meetings + options.neighbours * neighbour_size;
    let mut progress = Progress::new(total);
    // Ids are global under the default `meeting:<id>` key, so each installation gets its own range.
    let mut first_id = 1;
    let installations = std::iter::once((options.installation.clone(), options.meetings)).chain(
        (1..=options.neighbours)
            .map(|n| (format!("{}-n{n}", options.installation), neighbour_size)),
    );
    for (installation, count) in installations {
        write_meetings(
            &mut con,
            &mut rng,
            options,
            &installation,
            first_id,
            count,
            clients,
            &mut progress,
        )?;
        first_id += count;
    }
    progress.finish();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "loaded {} meetings into installation {} (+{} in {} neighbours) in {seconds:.2} s: {:.0} meetings/s",
        options.meetings,
        options.installation,
        options.neighbours * neighbour_size,
        options.neighbours,
        total as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// Users 1..=U: the first five are managers who see half the clients, the rest 1%.
fn write_users(
    con: &mut redis::Connection,
    rng: &mut Rng,
    options: &Options,
    clients: u64,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for user in 1..=options.users {
        let share = if user <= MANAGERS { 2 } else { 100 };
        let count = (clients / share).max(1);
        let visible: Vec<u64> = (0..count).map(|_| 1 + rng.below(clients)).collect();
        let key = format!("clients_for_user:{}{user}", options.user_prefix);
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
    first_id: u64,
    count: u64,
    clients: u64,
    progress: &mut Progress,
) -> Result<(), String> {
    let step = (FIVE_YEARS / count.max(1)).max(1);
    let mut pipe = redis::pipe();
    let mut queued = 0;
    for index in 0..count {
        let id = first_id + index;
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
            progress.advance(queued as u64);
            queued = 0;
        }
    }
    Ok(())
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

/// A progress bar on a terminal; silent otherwise.
struct Progress {
    total: u64,
    done: u64,
    shown: bool,
    started: Instant,
}

impl Progress {
    fn new(total: u64) -> Self {
        Progress {
            total,
            done: 0,
            shown: std::io::stderr().is_terminal(),
            started: Instant::now(),
        }
    }

    fn advance(&mut self, by: u64) {
        self.done += by;
        if self.shown {
            let width = 40;
            let filled = (self.done * width / self.total.max(1)) as usize;
            let rate = self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            eprint!(
                "\r[{}{}] {}/{} meetings, {rate:.0}/s ",
                "#".repeat(filled),
                " ".repeat(width as usize - filled.min(width as usize)),
                self.done,
                self.total
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
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
