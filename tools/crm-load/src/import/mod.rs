//! `crm-load import meetings|users <file> | --postgres <connection> --query <select>`:
//! reads rows, skips (and reports by line or row) the ones that cannot be written, writes
//! the others through the server's `crm.*` settings, and prints a summary.

mod meetings;
mod rows;
mod users;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::ProgressBar;

use crate::server::{progress_bar, Server, Settings};
use rows::{At, EachRow, Format, Row};

#[derive(Args, Debug)]
pub struct Options {
    /// What the rows are: meetings (id, installation, clientid and any other fields) or
    /// users (user, client, and installation where crm.clients-key names it)
    #[arg(value_enum)]
    kind: Kind,
    /// A .csv or .jsonl file
    #[arg(required_unless_present = "postgres", conflicts_with = "postgres")]
    file: Option<PathBuf>,
    /// The file's format, when its extension does not tell
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// A PostgreSQL connection string (`postgres://user@host:port/db`) to run --query on
    #[arg(long, requires = "query")]
    postgres: Option<String>,
    /// The SELECT whose rows are imported
    #[arg(long, requires = "postgres")]
    query: Option<String>,
    #[command(flatten)]
    server: Server,
    /// Rows without an installation are this one's; rows naming another are skipped
    #[arg(long)]
    installation: Option<String>,
    /// Check every row (and who owns each meeting) without writing anything
    #[arg(long)]
    dry_run: bool,
    /// Exit 0 even when rows were skipped
    #[arg(long)]
    allow_skips: bool,
    /// users: also delete the sets of the users no row names (of the installations the rows
    /// name, where crm.clients-key holds one), so that a user who lost every client loses
    /// their set
    #[arg(long)]
    prune: bool,
    /// Meetings per CRM.MEETING.MSET call (at most 500; 200 hold the server about 1.5 ms)
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=500))]
    batch: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Meetings,
    Users,
}

/// Why a row was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Unreadable,
    NoId,
    NoInstallation,
    OtherInstallation,
    NoClient,
    BadDate,
    BadDetails,
    NoUser,
    Refused,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Unreadable => "unreadable",
            Reason::NoId => "no id",
            Reason::NoInstallation => "no installation",
            Reason::OtherInstallation => "another installation",
            Reason::NoClient => "no client",
            Reason::BadDate => "bad date",
            Reason::BadDetails => "bad details",
            Reason::NoUser => "no user",
            Reason::Refused => "refused by the server",
        })
    }
}

/// A row that is not written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub at: At,
    pub reason: Reason,
    pub message: String,
}

/// What an import did so far: shared by the reading and the writing threads.
pub struct Report {
    bar: ProgressBar,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    read: u64,
    written: u64,
    skipped: BTreeMap<Reason, u64>,
}

impl Report {
    fn new() -> Report {
        Report {
            bar: progress_bar(None, "rows"),
            counts: Mutex::new(Counts::default()),
        }
    }

    fn count(&self, change: impl FnOnce(&mut Counts)) {
        if let Ok(mut counts) = self.counts.lock() {
            change(&mut counts);
        }
    }

    pub fn read(&self) {
        self.bar.inc(1);
        self.count(|counts| counts.read += 1);
    }

    pub fn written(&self, rows: u64) {
        self.count(|counts| counts.written += rows);
    }

    /// Says something on standard error that does not skip a row.
    pub fn warn(&self, message: &str) {
        self.bar
            .suspend(|| eprintln!("crm-load: warning: {message}"));
    }

    /// Counts a skipped row and says which, and why, on standard error.
    pub fn skip(&self, skip: Skip) {
        self.bar.suspend(|| {
            eprintln!(
                "crm-load: {}: skipped ({}): {}",
                skip.at, skip.reason, skip.message
            )
        });
        self.count(|counts| *counts.skipped.entry(skip.reason).or_default() += 1);
    }
}

pub fn run(options: &Options) -> Result<ExitCode, String> {
    let mut con = options.server.connect()?;
    let settings = Settings::read(&mut con)?;
    let report = Report::new();
    let started = Instant::now();
    let mut rows = |each: &mut EachRow| match (&options.file, &options.postgres, &options.query) {
        (Some(path), _, _) => {
            let format = options.format.map_or_else(|| Format::of(path), Ok)?;
            rows::file_rows(path, format, each)
        }
        (None, Some(connection), Some(query)) => rows::postgres_rows(connection, query, each),
        _ => Err("give a file, or --postgres and --query".into()),
    };
    let how = match options.kind {
        Kind::Meetings => meetings::import(options, &settings, con, &report, &mut rows)?,
        Kind::Users => users::import(options, &settings, &mut con, &report, &mut rows)?,
    };
    report.bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let counts = report
        .counts
        .into_inner()
        .map_err(|_| "a writer thread failed".to_string())?;
    let skipped: u64 = counts.skipped.values().sum();
    let reasons: Vec<String> = counts
        .skipped
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    let reasons = match reasons.is_empty() {
        true => String::new(),
        false => format!(" ({})", reasons.join(", ")),
    };
    let kind = match options.kind {
        Kind::Meetings => "meetings",
        Kind::Users => "users",
    };
    let (done, written, how) = match options.dry_run {
        true => (
            "dry run of",
            "would be written",
            " (nothing was written)".into(),
        ),
        false => ("imported", "written", format!(", {how}")),
    };
    let rate = counts.read as f64 / seconds.max(1e-9);
    println!(
        "{done} {kind}: {} rows read, {} {written}, {skipped} skipped{reasons} in {seconds:.2} s: \
         {rate:.0} rows/s{how}",
        counts.read, counts.written,
    );
    if skipped > 0 && !options.allow_skips {
        eprintln!("crm-load: {skipped} rows skipped: fix them, or pass --allow-skips to accept the import");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The installation of a row: its own, or --installation's; a row naming another than
/// --installation is skipped.
fn installation_of(row: &mut Row, options: &Options) -> Result<String, Skip> {
    let at = row.at;
    let skip = |reason, message| Skip {
        at,
        reason,
        message,
    };
    match (row.take("installation"), &options.installation) {
        (Some(own), Some(imported)) if own != *imported => Err(skip(
            Reason::OtherInstallation,
            format!("installation '{own}', not the '{imported}' imported (--installation)"),
        )),
        (Some(own), _) => Ok(own),
        (None, Some(imported)) => Ok(imported.clone()),
        (None, None) => Err(skip(
            Reason::NoInstallation,
            "no installation: add the column, or pass --installation".into(),
        )),
    }
}
