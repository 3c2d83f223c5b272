//! The naive model's ordering rules, written apart from the module's: the tests' model
//! (`dataset.rs`) and the fuzz target `query_vs_model` (which includes this file by path)
//! share them.

use std::cmp::Ordering;

/// A hash sort value: a plain decimal number, or one of the dates the generators write
/// (their Unix seconds worked out by hand); anything else is no value.
pub fn model_number(raw: &str) -> Option<f64> {
    let plain = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    let dates = [
        ("2017-06-10T09:30:00Z", 1_497_087_000.0),
        ("2017-06-10T11:30:00+02:00", 1_497_087_000.0),
        ("2017-06-10", 1_497_052_800.0),
    ];
    plain
        .then(|| raw.parse::<f64>().ok())
        .flatten()
        .or_else(|| dates.iter().find(|(date, _)| *date == raw).map(|(_, s)| *s))
}

/// Canonical integers (those that print back the same) first by value, then bytes.
pub fn model_id_order(a: &str, b: &str) -> Ordering {
    let integer = |id: &str| id.parse::<i128>().ok().filter(|n| n.to_string() == id);
    match (integer(a), integer(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.as_bytes().cmp(b.as_bytes()),
    }
}

/// Rows `(sort value, id)` by value in `descending` or ascending order, rows without a
/// value last either way, ties by id. Values compare as numbers (`-0` equals `0`).
pub fn model_row_order(
    (a_value, a_id): (Option<f64>, &str),
    (b_value, b_id): (Option<f64>, &str),
    descending: bool,
) -> Ordering {
    let by_value = match (a_value, b_value) {
        (Some(a), Some(b)) if descending => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_value.then_with(|| model_id_order(a_id, b_id))
}
