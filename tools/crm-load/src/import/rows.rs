//! The rows of a source, each as its field/value pairs (empty and null values left out),
//! with where it was read: a CSV or JSON lines file (by line) or a PostgreSQL query (by row,
//! read through `COPY (query) TO STDOUT` as CSV, so every column type arrives as its text).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use clap::ValueEnum;
use serde_json::value::RawValue;

use super::{Reason, Skip};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// The format a file's extension names.
    pub fn of(path: &Path) -> Result<Format, String> {
        match path.extension().and_then(|ext| ext.to_str()) {
            Some("csv") => Ok(Format::Csv),
            Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
            _ => Err(format!(
                "{}: cannot tell the format from the extension (.csv, .jsonl): pass --format csv|jsonl",
                path.display()
            )),
        }
    }
}

/// Where a row was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Line(u64),
    Row(u64),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Line(line) => write!(f, "line {line}"),
            At::Row(row) => write!(f, "row {row}"),
        }
    }
}

/// Called with each row of a source, or with why it is skipped.
pub type EachRow<'a> = dyn FnMut(Result<Row, Skip>) -> Result<(), String> + 'a;
/// Reads a whole source, calling its argument with each row.
pub type ReadRows<'a> = dyn FnMut(&mut EachRow) -> Result<(), String> + 'a;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub at: At,
    pub values: Vec<(String, String)>,
}

impl Row {
    /// Takes a field out of the row.
    pub fn take(&mut self, field: &str) -> Option<String> {
        let at = self.values.iter().position(|(name, _)| name == field)?;
        Some(self.values.remove(at).1)
    }
}

/// Calls `each` with every row of the file (or its reason to be skipped), in order.
pub fn file_rows(path: &Path, format: Format, each: &mut EachRow) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match format {
        Format::Csv => csv_rows(file, |line, _| At::Line(line), each),
        Format::Jsonl => jsonl_rows(BufReader::new(file), each),
    }
}

/// Calls `each` with every row `query` returns.
pub fn postgres_rows(connection: &str, query: &str, each: &mut EachRow) -> Result<(), String> {
    let mut client = postgres::Client::connect(connection, postgres::NoTls)
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    let query = query.trim().trim_end_matches(';');
    let copy = format!("COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)");
    let reader = client
        .copy_out(copy.as_str())
        .map_err(|e| format!("the query failed: {e}"))?;
    // COPY's CSV may hold a newline inside a value: rows are counted, not lines.
    csv_rows(reader, |_, index| At::Row(index), each)
}

fn csv_rows<R: Read>(reader: R, at: fn(u64, u64) -> At, each: &mut EachRow) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new().from_reader(reader);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("reading the header: {e}"))?
        .iter()
        .map(|name| name.trim().to_string())
        .collect();
    if header.iter().all(|name| name != "id" && name != "user") {
        return Err(format!(
            "the header names no id (meetings) nor user (users) column: {header:?}"
        ));
    }
    let mut record = csv::StringRecord::new();
    for index in 1u64.. {
        // Where the record starts: the reader stands after the one before.
        let line = reader.position().line();
        let row = match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => Ok(Row {
                at: at(line, index),
                values: header
                    .iter()
                    .zip(record.iter())
                    .filter(|(_, value)| !value.is_empty())
                    .map(|(name, value)| (name.clone(), value.to_string()))
                    .collect(),
            }),
            Err(error) if error.is_io_error() => return Err(format!("reading rows: {error}")),
            Err(error) => Err(Skip {
                at: at(line, index),
                reason: Reason::Unreadable,
                message: error.to_string(),
            }),
        };
        each(row)?;
    }
    Ok(())
}

fn jsonl_rows(reader: impl BufRead, each: &mut EachRow) -> Result<(), String> {
    for (line, text) in (1u64..).zip(reader.lines()) {
        let text = text.map_err(|e| format!("reading line {line}: {e}"))?;
        if text.trim().is_empty() {
            continue;
        }
        each(json_row(&text, At::Line(line)))?;
    }
    Ok(())
}

/// One JSON object as a row: strings as they are, anything else (numbers, booleans, an
/// object or array for `details`) as its JSON text exactly as written, nulls left out.
fn json_row(text: &str, at: At) -> Result<Row, Skip> {
    let unreadable = |message: String| Skip {
        at,
        reason: Reason::Unreadable,
        message,
    };
    let object = serde_json::from_str::<BTreeMap<String, &RawValue>>(text)
        .map_err(|error| unreadable(format!("not a JSON object: {error}")))?;
    let mut values = Vec::with_capacity(object.len());
    for (name, raw) in object {
        let value = match raw.get() {
            "null" => continue,
            quoted if quoted.starts_with('"') => serde_json::from_str::<String>(quoted)
                .map_err(|error| unreadable(format!("field {name}: {error}")))?,
            other => other.to_string(),
        };
        if !value.is_empty() {
            values.push((name, value));
        }
    }
    Ok(Row { at, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(row: &Row) -> Vec<(&str, &str)> {
        row.values
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    #[test]
    fn json_values_become_text() {
        let row = json_row(
            r#"{"id": 7, "clientid": "3", "done": true, "status": null, "details": {"b": [1, "x"], "a": 2}}"#,
            At::Line(4),
        )
        .unwrap();
        let mut found = pairs(&row);
        found.sort();
        assert_eq!(
            found,
            [
                ("clientid", "3"),
                ("details", r#"{"b": [1, "x"], "a": 2}"#),
                ("done", "true"),
                ("id", "7"),
            ]
        );
        let bad = json_row("[1, 2]", At::Line(9)).unwrap_err();
        assert_eq!((bad.at, bad.reason), (At::Line(9), Reason::Unreadable));
        assert!(json_row("{oops", At::Line(2)).is_err());
    }

    #[test]
    fn csv_rows_carry_their_line() {
        let text =
            "id,clientid,details\n1,5,\"{\"\"a\"\":1}\"\n2,,\n3,\"multi\nline\",x\n4,9\n5,6,7\n";
        let mut rows = Vec::new();
        csv_rows(text.as_bytes(), |line, _| At::Line(line), &mut |row| {
            rows.push(row);
            Ok(())
        })
        .unwrap();
        let first = rows[0].as_ref().unwrap();
        assert_eq!(first.at, At::Line(2));
        assert_eq!(
            pairs(first),
            [("id", "1"), ("clientid", "5"), ("details", r#"{"a":1}"#)]
        );
        assert_eq!(pairs(rows[1].as_ref().unwrap()), [("id", "2")]);
        assert_eq!(rows[2].as_ref().unwrap().at, At::Line(4));
        let short = rows[3].as_ref().unwrap_err();
        assert_eq!((short.at, short.reason), (At::Line(6), Reason::Unreadable));
        assert_eq!(rows[4].as_ref().unwrap().at, At::Line(7));
    }
}
