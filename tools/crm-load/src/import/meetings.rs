//! Meetings: each row checked as the module checks it (so that --dry-run finds what the
//! server would refuse), then written by a second thread in CRM.MEETING.MSET calls of up to
//! --batch meetings of one installation, while the next rows are read. A call the server
//! refuses (a meeting another installation owns) is written again row by row with
//! CRM.MEETING.SET, so that only the refused rows are skipped, each reported with its line.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread;

use chrono::{DateTime, NaiveDate};

use super::rows::{At, ReadRows, Row};
use super::{installation_of, Options, Reason, Report, Skip};
use crate::server::Settings;

/// A row ready to write.
struct Meeting {
    at: At,
    id: String,
    fields: Vec<(String, String)>,
}

/// Meetings of one installation, each once, written in one call.
struct Batch {
    installation: String,
    meetings: Vec<Meeting>,
    ids: HashSet<String>,
    /// The CRM.MEETING.MSET call, packed by the reading thread.
    packed: Vec<u8>,
}

impl Batch {
    fn new(installation: String) -> Batch {
        Batch {
            installation,
            meetings: Vec::new(),
            ids: HashSet::new(),
            packed: Vec::new(),
        }
    }

    /// The batch with its call packed, ready for the writer.
    fn packed(mut self) -> Batch {
        let mut mset = redis::cmd("CRM.MEETING.MSET");
        mset.arg(&self.installation);
        for meeting in &self.meetings {
            mset.arg(&meeting.id).arg(meeting.fields.len());
            for (name, value) in &meeting.fields {
                mset.arg(name).arg(value);
            }
        }
        self.packed = mset.get_packed_command();
        self
    }
}

/// Reads every row, writes the meetings; returns how they were written.
pub fn import(
    options: &Options,
    settings: &Settings,
    con: redis::Connection,
    report: &Report,
    rows: &mut ReadRows,
) -> Result<String, String> {
    let size = usize::try_from(options.batch).unwrap_or(200);
    let from_postgres = options.postgres.is_some();
    thread::scope(|scope| {
        // A few batches ahead of the writer: reading and writing overlap, memory stays flat.
        let (send, receive) = sync_channel::<Batch>(4);
        let writer = scope.spawn(move || match options.dry_run {
            true => check_owners(con, settings, receive, report),
            false => write(con, receive, report),
        });
        let mut open: HashMap<String, Batch> = HashMap::new();
        // The filter and sort fields no row has had yet: a misnamed column is told.
        let mut unseen: Vec<&String> = settings
            .filter_fields
            .iter()
            .chain(&settings.sort_fields)
            .collect();
        let outcome = rows(&mut |row| {
            report.read();
            let meeting = row.and_then(|row| meeting_of(row, options, settings, from_postgres));
            let (installation, meeting) = match meeting {
                Ok(ready) => ready,
                Err(skip) => {
                    report.skip(skip);
                    return Ok(());
                }
            };
            if !unseen.is_empty() {
                unseen.retain(|field| !meeting.fields.iter().any(|(name, _)| name == *field));
            }
            let batch = open
                .entry(installation.clone())
                .or_insert_with(|| Batch::new(installation.clone()));
            // A meeting given twice goes in the next call, after the first is written.
            if batch.ids.contains(&meeting.id) {
                let full = std::mem::replace(batch, Batch::new(installation.clone()));
                send.send(full.packed()).map_err(|_| "the writer stopped")?;
            }
            batch.ids.insert(meeting.id.clone());
            batch.meetings.push(meeting);
            if batch.meetings.len() >= size {
                if let Some(full) = open.remove(&installation) {
                    send.send(full.packed()).map_err(|_| "the writer stopped")?;
                }
            }
            Ok(())
        });
        let flushed = open.into_values().try_for_each(|batch| {
            send.send(batch.packed())
                .map_err(|_| "the writer stopped".to_string())
        });
        drop(send);
        let written = writer
            .join()
            .map_err(|_| "the writer thread panicked".to_string())?;
        written?;
        outcome?;
        for field in unseen {
            report.warn(&format!(
                "no row has the field '{field}' (crm.filter-fields, crm.sort-fields): a query \
                 that filters or sorts by it does not find these meetings; is the column named so?"
            ));
        }
        flushed
    })?;
    Ok(format!("through CRM.MEETING.MSET ({size} meetings a call)"))
}

/// A row as a meeting of its installation, checked as CRM.MEETING.SET checks it.
fn meeting_of(
    mut row: Row,
    options: &Options,
    settings: &Settings,
    from_postgres: bool,
) -> Result<(String, Meeting), Skip> {
    let at = row.at;
    let skip = |reason, message: String| Skip {
        at,
        reason,
        message,
    };
    let id = row
        .take("id")
        .ok_or_else(|| skip(Reason::NoId, "no id".into()))?;
    let installation = installation_of(&mut row, options)?;
    let mut fields = row.values;
    if !fields.iter().any(|(name, _)| name == "clientid") {
        return Err(skip(
            Reason::NoClient,
            format!("meeting '{id}' has no clientid"),
        ));
    }
    for (name, value) in &mut fields {
        if name == "details" && serde_json::from_str::<serde_json::Value>(value).is_err() {
            return Err(skip(
                Reason::BadDetails,
                format!("details of meeting '{id}' are not valid JSON"),
            ));
        }
        if settings.sort_fields.contains(name) {
            if from_postgres {
                with_full_offset(value);
            }
            check_sort_value(value)
                .map_err(|message| skip(Reason::BadDate, format!("{name} {message}")))?;
        }
    }
    fields.push(("installation".into(), installation.clone()));
    Ok((installation, Meeting { at, id, fields }))
}

/// The module's rule for a sort field (`core::values::sort_score` and `write::validate`):
/// Unix seconds (under 1e11: more is milliseconds), an RFC 3339 date-time with any offset,
/// or a `YYYY-MM-DD` date. Written again here because crm-load cannot link the module's
/// crate (its global allocator is the server's); the server still checks every row, and
/// `tests/import.rs` sends every date form through both.
fn check_sort_value(value: &str) -> Result<(), String> {
    let numeric = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    if let Some(number) = value
        .parse::<f64>()
        .ok()
        .filter(|n| numeric && n.is_finite())
    {
        return match number.abs() < 1e11 {
            true => Ok(()),
            false => Err(format!(
                "{value} looks like milliseconds: give Unix seconds, an RFC 3339 date-time or a YYYY-MM-DD date"
            )),
        };
    }
    let date_time = DateTime::parse_from_rfc3339(value).is_ok();
    let date = value.len() == 10 && NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok();
    match date_time || date {
        true => Ok(()),
        false => Err(format!(
            "must be a number, an RFC 3339 date-time or a YYYY-MM-DD date, got '{value}'"
        )),
    }
}

/// PostgreSQL writes a `timestamptz` with an offset of hours alone (`2025-03-04
/// 10:00:00+01`); RFC 3339 wants its minutes too.
fn with_full_offset(value: &mut String) {
    let bytes = value.as_bytes();
    let short_offset = bytes.len() > 19
        && matches!(bytes.get(10), Some(b' ' | b'T'))
        && matches!(bytes.get(bytes.len() - 3), Some(b'+' | b'-'))
        && bytes[bytes.len() - 2..].iter().all(u8::is_ascii_digit);
    if short_offset {
        value.push_str(":00");
    }
}

/// The writing thread: one CRM.MEETING.MSET per batch, the next one sent before the reply
/// to the one before is read, so that the server never waits for the loader.
fn write(
    mut con: redis::Connection,
    batches: Receiver<Batch>,
    report: &Report,
) -> Result<(), String> {
    let mut in_flight: Option<Batch> = None;
    for batch in batches {
        send(&mut con, &batch)?;
        let Some(previous) = in_flight.replace(batch) else {
            continue;
        };
        if !settle(&mut con, &previous, report)? {
            // The batch sent after the refused one has run: its meetings are written again
            // after the refused one's, so that a meeting in both ends as the later row says.
            let next = in_flight.take();
            con.recv_response()
                .map_err(|e| format!("writing meetings: {e}"))?;
            write_one_by_one(&mut con, &previous, report)?;
            if let Some(next) = next {
                send(&mut con, &next)?;
                in_flight = Some(next);
            }
        }
    }
    match in_flight {
        Some(last) if !settle(&mut con, &last, report)? => {
            write_one_by_one(&mut con, &last, report)
        }
        _ => Ok(()),
    }
}

fn send(con: &mut redis::Connection, batch: &Batch) -> Result<(), String> {
    con.send_packed_command(&batch.packed)
        .map_err(|e| format!("writing meetings: {e}"))
}

/// Reads the reply to `batch`: whether it was written (`false`: the server refused it).
fn settle(con: &mut redis::Connection, batch: &Batch, report: &Report) -> Result<bool, String> {
    match con.recv_response() {
        Ok(redis::Value::ServerError(_)) => Ok(false),
        Ok(_) => {
            report.written(batch.meetings.len() as u64);
            Ok(true)
        }
        Err(error) if lost(&error) => Err(format!("writing meetings: {error}")),
        Err(_) => Ok(false),
    }
}

fn write_one_by_one(
    con: &mut redis::Connection,
    batch: &Batch,
    report: &Report,
) -> Result<(), String> {
    for meeting in &batch.meetings {
        let mut set = redis::cmd("CRM.MEETING.SET");
        set.arg(&batch.installation).arg(&meeting.id);
        for (name, value) in &meeting.fields {
            set.arg(name).arg(value);
        }
        match set.query::<i64>(con) {
            Ok(_) => report.written(1),
            Err(error) if lost(&error) => return Err(format!("writing meetings: {error}")),
            Err(error) => report.skip(Skip {
                at: meeting.at,
                reason: match error.detail() {
                    Some(detail) if detail.contains("belongs to installation") => {
                        Reason::OtherInstallation
                    }
                    _ => Reason::Refused,
                },
                message: error.detail().unwrap_or_default().to_string(),
            }),
        }
    }
    Ok(())
}

/// Whether the connection failed (as opposed to the server refusing a command).
fn lost(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_timeout()
}

/// --dry-run's thread: the one check that needs the server, whose meeting each id is.
fn check_owners(
    mut con: redis::Connection,
    settings: &Settings,
    batches: Receiver<Batch>,
    report: &Report,
) -> Result<(), String> {
    for batch in batches {
        let mut pipe = redis::pipe();
        for meeting in &batch.meetings {
            pipe.cmd("HGET")
                .arg(settings.meeting_key(&batch.installation, &meeting.id))
                .arg("installation");
        }
        let owners: Vec<Option<String>> = pipe
            .query(&mut con)
            .map_err(|e| format!("reading who owns the meetings: {e}"))?;
        for (meeting, owner) in batch.meetings.iter().zip(owners) {
            match owner {
                Some(owner) if owner != batch.installation => report.skip(Skip {
                    at: meeting.at,
                    reason: Reason::OtherInstallation,
                    message: format!("meeting '{}' belongs to installation '{owner}'", meeting.id),
                }),
                _ => report.written(1),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_values_follow_the_module() {
        for good in [
            "1497052800",
            "-5",
            "1.5e9",
            "2017-06-10T09:30:00Z",
            "2025-03-04T10:00:00+01:00",
            "2017-06-10 09:30:00.5-05:30",
            "2025-03-04",
            "2024-02-29",
        ] {
            assert_eq!(check_sort_value(good), Ok(()), "{good}");
        }
        for bad in [
            "tomorrow",
            "2025-02-30",
            "2025-3-4",
            "1718000000000",
            "inf",
            "",
            "0x10",
        ] {
            assert!(check_sort_value(bad).is_err(), "{bad}");
        }
        assert!(check_sort_value("1718000000000")
            .unwrap_err()
            .contains("milliseconds"));
    }

    #[test]
    fn postgres_offsets_get_their_minutes() {
        let mut short = "2025-03-04 10:00:00+01".to_string();
        with_full_offset(&mut short);
        assert_eq!(short, "2025-03-04 10:00:00+01:00");
        for unchanged in ["2025-03-04 10:00:00+05:30", "2025-03-04", "1497052800"] {
            let mut value = unchanged.to_string();
            with_full_offset(&mut value);
            assert_eq!(value, unchanged);
        }
    }
}
