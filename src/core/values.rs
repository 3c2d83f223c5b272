//! Reading values: sort values from hash fields, sort scores (numbers or RFC 3339
//! date-times as Unix seconds), and JSON details.

/// A sort value read from a hash field: a plain decimal number (`42`, `-1.5`, `1e9`);
/// anything else (words, hex, spaces, `inf`, `nan`) is no value and sorts last.
pub fn parse_sort_value(raw: &[u8]) -> Option<f64> {
    if raw.is_empty()
        || !raw
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse::<f64>().ok()
}

/// A hash field's value as the sort value of a hash-field sort: a plain decimal number, an
/// RFC 3339 date-time or a `YYYY-MM-DD` date (as Unix seconds); anything else sorts last.
pub fn hash_sort_value(raw: &[u8]) -> Option<f64> {
    parse_sort_value(raw)
        .or_else(|| parse_rfc3339(raw))
        .or_else(|| parse_date(raw))
}

/// Sort-field numbers above this (in magnitude) look like milliseconds, not seconds: 1e11
/// seconds is the year 5138, 1e11 milliseconds is 1973.
pub const MILLISECONDS_FROM: f64 = 1e11;

/// Whether `bytes` is one valid JSON document.
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
}

/// A sort field's value as a score: a plain decimal number, an RFC 3339 date-time or a
/// `YYYY-MM-DD` date (as Unix seconds).
pub fn sort_score(raw: &[u8]) -> Option<f64> {
    parse_sort_value(raw)
        .filter(|score| score.is_finite())
        .or_else(|| parse_rfc3339(raw))
        .or_else(|| parse_date(raw))
}

/// A `YYYY-MM-DD` date as the Unix seconds of its midnight UTC; `None` for anything else,
/// including impossible dates.
pub fn parse_date(text: &[u8]) -> Option<f64> {
    let [y1, y2, y3, y4, b'-', m1, m2, b'-', d1, d2] = *text else {
        return None;
    };
    let year = digits(&[y1, y2, y3, y4])?;
    let month = digits(&[m1, m2])?;
    let day = digits(&[d1, d2])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some((days_from_civil(year, month, day) * 86_400) as f64)
}

/// A bound of RANGE: a number, `-inf`/`+inf`, an RFC 3339 date-time or a `YYYY-MM-DD`
/// date, as a score (NaN never).
pub fn parse_bound(text: &[u8]) -> Option<f64> {
    if text.eq_ignore_ascii_case(b"-inf") {
        return Some(f64::NEG_INFINITY);
    }
    if text.eq_ignore_ascii_case(b"+inf") || text.eq_ignore_ascii_case(b"inf") {
        return Some(f64::INFINITY);
    }
    parse_sort_value(text)
        .filter(|value| value.is_finite())
        .or_else(|| parse_rfc3339(text))
        .or_else(|| parse_date(text))
}

/// `2017-06-10T09:30:00Z`, `2017-06-10 09:30:00.5+02:00`, ... to seconds since 1970-01-01
/// UTC (fractions kept). `None` for anything else, including impossible dates.
pub fn parse_rfc3339(text: &[u8]) -> Option<f64> {
    let (date, rest) = split_at_checked(text, 10)?;
    let year = digits(date.get(0..4)?)?;
    let month = digits(date.get(5..7)?)?;
    let day = digits(date.get(8..10)?)?;
    if date.get(4) != Some(&b'-') || date.get(7) != Some(&b'-') {
        return None;
    }
    if !matches!(rest.first(), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (clock, mut rest) = split_at_checked(rest.get(1..)?, 8)?;
    let hour = digits(clock.get(0..2)?)?;
    let minute = digits(clock.get(3..5)?)?;
    let second = digits(clock.get(6..8)?)?;
    if clock.get(2) != Some(&b':') || clock.get(5) != Some(&b':') {
        return None;
    }
    let mut fraction = 0.0;
    if rest.first() == Some(&b'.') {
        let count = rest
            .iter()
            .skip(1)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if count == 0 {
            return None;
        }
        let text = std::str::from_utf8(rest.get(0..=count)?).ok()?;
        fraction = format!("0{text}").parse::<f64>().ok()?;
        rest = rest.get(count + 1..)?;
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let total = hours * 60 + minutes;
            if *sign == b'-' {
                -total
            } else {
                total
            }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds as f64 + fraction)
}

fn split_at_checked(text: &[u8], at: usize) -> Option<(&[u8], &[u8])> {
    (text.len() >= at).then(|| text.split_at(at))
}

fn digits(text: &[u8]) -> Option<i64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_sort_values_read_numbers_and_dates() {
        assert_eq!(hash_sort_value(b"42"), Some(42.0));
        assert_eq!(hash_sort_value(b"2017-06-10"), Some(1_497_052_800.0));
        assert_eq!(
            hash_sort_value(b"2017-06-10T11:30:00+02:00"),
            hash_sort_value(b"2017-06-10T09:30:00Z")
        );
        assert_eq!(hash_sort_value(b"2017-02-30"), None);
        assert_eq!(hash_sort_value(b"tomorrow"), None);
        assert_eq!(parse_date(b"2024-02-29"), Some(1_709_164_800.0));
        assert_eq!(parse_date(b"2023-02-29"), None);
        assert_eq!(parse_date(b"2024-2-29"), None);
        assert_eq!(parse_bound(b"-INF"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_bound(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_bound(b"nan"), None);
    }

    #[test]
    fn sort_values() {
        assert_eq!(parse_sort_value(b"42"), Some(42.0));
        assert_eq!(parse_sort_value(b"-1.5"), Some(-1.5));
        assert_eq!(parse_sort_value(b"1e3"), Some(1000.0));
        for bad in [
            &b""[..],
            b"tbd",
            b" 1",
            b"0x10",
            b"inf",
            b"nan",
            b"1e",
            b"-",
            b".",
        ] {
            assert_eq!(parse_sort_value(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            parse_rfc3339(b"2017-06-10T00:00:00Z"),
            Some(1_497_052_800.0)
        );
        assert_eq!(
            parse_rfc3339(b"2017-06-10T02:00:00+02:00"),
            Some(1_497_052_800.0)
        );
        assert_eq!(
            parse_rfc3339(b"2017-06-09 19:00:00-05:00"),
            Some(1_497_052_800.0)
        );
        assert_eq!(
            parse_rfc3339(b"2024-02-29t12:00:00.25z"),
            Some(1_709_208_000.25)
        );
        assert_eq!(parse_rfc3339(b"1969-12-31T23:59:59Z"), Some(-1.0));
    }

    #[test]
    fn rejects_what_is_not_rfc3339() {
        for bad in [
            &b"2017-06-10"[..],
            b"2017-06-10T00:00:00",
            b"2017-13-10T00:00:00Z",
            b"2023-02-29T00:00:00Z",
            b"2017-06-10T24:00:00Z",
            b"2017-06-10T00:00:00.Z",
            b"2017-06-10T00:00:00+0200",
            b"10/06/2017",
            b"",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
