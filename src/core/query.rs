//! The typed query of CRM.MEETINGS and the parser that builds it from the command's arguments.

use std::collections::{HashMap, HashSet};

use super::types::{Bytes, Direction, SetRef, DETAILS_FIELD};
use super::values::parse_bound;
use crate::error::{printable, CrmError};

/// The candidates must hold one of `values` for `field` (FILTER given once or more for a field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterGroup {
    pub field: Bytes,
    /// Distinct values in the order they were first given.
    pub values: Vec<Bytes>,
}

/// RANGE: the meeting's score in `field`'s sorted set lies between `min` and `max`; a
/// meeting without a score is outside every range.
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub field: Bytes,
    pub min: Bound,
    pub max: Bound,
}

/// One end of a RANGE, as ZRANGEBYSCORE takes it: a score, exclusive after `(`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub score: f64,
    pub exclusive: bool,
}

impl Range {
    pub fn contains(&self, score: f64) -> bool {
        let above = if self.min.exclusive {
            score > self.min.score
        } else {
            score >= self.min.score
        };
        let below = if self.max.exclusive {
            score < self.max.score
        } else {
            score <= self.max.score
        };
        above && below
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortBy {
    pub field: Bytes,
    pub direction: Direction,
}

/// How CRM.MEETINGS answers: a Redis array, or one JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Resp,
    Json,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub installation: Bytes,
    pub user: Bytes,
    /// One group per distinct field: intersection across groups, union inside one.
    pub filters: Vec<FilterGroup>,
    /// EXCLUDE, one group per distinct field: a meeting in any of these sets is dropped.
    pub excludes: Vec<FilterGroup>,
    /// RANGE clauses, all of which must hold.
    pub ranges: Vec<Range>,
    pub sort: SortBy,
    pub offset: u64,
    pub count: u64,
    /// AFTER: the page starts after this meeting, in the query's order (keyset paging;
    /// `offset` is then 0).
    pub after: Option<Bytes>,
    pub format: Format,
    /// RETURN: the hash fields to return instead of `details`.
    pub returns: Option<Vec<Bytes>>,
}

impl Query {
    /// The hash fields returned for each meeting of the page.
    pub fn returned_fields(&self) -> Vec<&[u8]> {
        match &self.returns {
            Some(fields) => fields.iter().map(Vec::as_slice).collect(),
            None => vec![DETAILS_FIELD],
        }
    }

    /// The set of clients whose meetings the querying user may see.
    pub fn visible_clients(&self) -> SetRef<'_> {
        SetRef::VisibleClients {
            installation: &self.installation,
            user: &self.user,
        }
    }
}

pub const DEFAULT_SORT_FIELD: &[u8] = b"date";
/// The most fields RETURN may name.
pub const MAX_RETURN_FIELDS: u64 = 64;
pub const DEFAULT_COUNT: u64 = 10;

/// Parses `<installation> <user> [FILTER f v]... [EXCLUDE f v]... [SORTBY f [ASC|DESC]]
/// [LIMIT off cnt]
/// [RETURN n f...] [FORMAT JSON|RESP]` (the arguments after the command name).
/// `max_page` caps LIMIT's count.
pub fn parse_query(args: &[&[u8]], max_page: u64) -> Result<Query, CrmError> {
    let (installation, user, mut rest) = match args {
        [installation, user, rest @ ..] => (installation.to_vec(), user.to_vec(), rest),
        _ => {
            return Err(CrmError::WrongArity {
                command: "crm.meetings",
            })
        }
    };
    let mut filters: Vec<FilterGroup> = Vec::new();
    let mut seen = HashMap::new();
    let mut excludes: Vec<FilterGroup> = Vec::new();
    let mut excluded = HashMap::new();
    let mut ranges: Vec<Range> = Vec::new();
    let mut sort: Option<SortBy> = None;
    let mut limit: Option<(u64, u64)> = None;
    let mut after: Option<(Bytes, u64)> = None;
    let mut format: Option<Format> = None;
    let mut returns: Option<Vec<Bytes>> = None;

    while let [option, tail @ ..] = rest {
        rest = tail;
        if option.eq_ignore_ascii_case(b"FILTER") {
            let [field, value, tail @ ..] = rest else {
                return Err(bad("FILTER needs a field and a value"));
            };
            rest = tail;
            if field.is_empty() {
                return Err(bad("FILTER field must not be empty"));
            }
            add_filter(&mut filters, &mut seen, field, value);
        } else if option.eq_ignore_ascii_case(b"EXCLUDE") {
            let [field, value, tail @ ..] = rest else {
                return Err(bad("EXCLUDE needs a field and a value"));
            };
            rest = tail;
            if field.is_empty() {
                return Err(bad("EXCLUDE field must not be empty"));
            }
            add_filter(&mut excludes, &mut excluded, field, value);
        } else if option.eq_ignore_ascii_case(b"RANGE") {
            let [field, min, max, tail @ ..] = rest else {
                return Err(bad("RANGE needs a field, a min and a max"));
            };
            rest = tail;
            if field.is_empty() {
                return Err(bad("RANGE field must not be empty"));
            }
            ranges.push(Range {
                field: field.to_vec(),
                min: parse_range_bound(min, "min")?,
                max: parse_range_bound(max, "max")?,
            });
        } else if option.eq_ignore_ascii_case(b"SORTBY") {
            let [field, tail @ ..] = rest else {
                return Err(bad("SORTBY needs a field"));
            };
            rest = tail;
            if sort.is_some() {
                return Err(bad("SORTBY given more than once"));
            }
            if field.is_empty() {
                return Err(bad("SORTBY field must not be empty"));
            }
            let mut direction = Direction::Asc;
            if let [word, tail @ ..] = rest {
                if word.eq_ignore_ascii_case(b"ASC") {
                    rest = tail;
                } else if word.eq_ignore_ascii_case(b"DESC") {
                    direction = Direction::Desc;
                    rest = tail;
                }
            }
            sort = Some(SortBy {
                field: field.to_vec(),
                direction,
            });
        } else if option.eq_ignore_ascii_case(b"LIMIT") {
            let [offset, count, tail @ ..] = rest else {
                return Err(bad("LIMIT needs an offset and a count"));
            };
            rest = tail;
            if limit.is_some() {
                return Err(bad("LIMIT given more than once"));
            }
            if after.is_some() {
                return Err(bad(LIMIT_AND_AFTER));
            }
            let offset = parse_non_negative(offset, "LIMIT offset")?;
            limit = Some((offset, page_count(count, "LIMIT", max_page)?));
        } else if option.eq_ignore_ascii_case(b"AFTER") {
            let [id, count, tail @ ..] = rest else {
                return Err(bad("AFTER needs a meeting id and a count"));
            };
            rest = tail;
            if after.is_some() {
                return Err(bad("AFTER given more than once"));
            }
            if limit.is_some() {
                return Err(bad(LIMIT_AND_AFTER));
            }
            if id.is_empty() {
                return Err(bad("AFTER meeting id must not be empty"));
            }
            after = Some((id.to_vec(), page_count(count, "AFTER", max_page)?));
        } else if option.eq_ignore_ascii_case(b"FORMAT") {
            let [word, tail @ ..] = rest else {
                return Err(bad("FORMAT needs JSON or RESP"));
            };
            rest = tail;
            if format.is_some() {
                return Err(bad("FORMAT given more than once"));
            }
            format = Some(if word.eq_ignore_ascii_case(b"JSON") {
                Format::Json
            } else if word.eq_ignore_ascii_case(b"RESP") {
                Format::Resp
            } else {
                return Err(bad(&format!(
                    "FORMAT must be JSON or RESP, got '{}'",
                    printable(word)
                )));
            });
        } else if option.eq_ignore_ascii_case(b"RETURN") {
            let [count, tail @ ..] = rest else {
                return Err(bad("RETURN needs a count and field names"));
            };
            if returns.is_some() {
                return Err(bad("RETURN given more than once"));
            }
            let count = parse_non_negative(count, "RETURN count")?;
            if count == 0 || count > MAX_RETURN_FIELDS {
                return Err(bad(&format!(
                    "RETURN count must be from 1 to {MAX_RETURN_FIELDS}, got {count}"
                )));
            }
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let (fields, tail) = (tail.get(..count), tail.get(count..));
            let (Some(fields), Some(tail)) = (fields, tail) else {
                return Err(bad(&format!("RETURN needs {count} field names")));
            };
            if fields.iter().any(|field| field.is_empty()) {
                return Err(bad("RETURN field names must not be empty"));
            }
            rest = tail;
            returns = Some(fields.iter().map(|field| field.to_vec()).collect());
        } else {
            return Err(bad(&format!(
                "unknown option '{}': expected FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, RETURN or FORMAT",
                printable(option)
            )));
        }
    }

    let (offset, count, after) = match (limit, after) {
        (Some((offset, count)), _) => (offset, count, None),
        (None, Some((id, count))) => (0, count, Some(id)),
        (None, None) => (0, DEFAULT_COUNT.min(max_page), None),
    };
    Ok(Query {
        installation,
        user,
        filters,
        excludes,
        ranges,
        sort: sort.unwrap_or(SortBy {
            field: DEFAULT_SORT_FIELD.to_vec(),
            direction: Direction::Asc,
        }),
        offset,
        count,
        after,
        format: format.unwrap_or(Format::Resp),
        returns,
    })
}

/// Adds one FILTER (or EXCLUDE) to its field's group. `seen` indexes what was added, so that a call
/// with many FILTER arguments stays linear.
fn add_filter(
    filters: &mut Vec<FilterGroup>,
    seen: &mut HashMap<Bytes, (usize, HashSet<Bytes>)>,
    field: &[u8],
    value: &[u8],
) {
    let (index, values) = seen.entry(field.to_vec()).or_insert_with(|| {
        filters.push(FilterGroup {
            field: field.to_vec(),
            values: Vec::new(),
        });
        (filters.len() - 1, HashSet::new())
    });
    if values.insert(value.to_vec()) {
        if let Some(group) = filters.get_mut(*index) {
            group.values.push(value.to_vec());
        }
    }
}

/// Refuses a RANGE on a field that is not in `sort_fields` (`crm.sort-fields`): only those
/// have a sorted set of their values, and a hash field's values are not ranged.
pub fn check_ranges(query: &Query, sort_fields: &[Bytes]) -> Result<(), CrmError> {
    for range in &query.ranges {
        if !sort_fields.contains(&range.field) {
            let listed: Vec<String> = sort_fields.iter().map(|field| printable(field)).collect();
            return Err(bad(&format!(
                "RANGE field '{}' has no sorted set: crm.sort-fields is '{}' (add the field \
                 there, then CRM.REPAIR each installation to fill its sorted set)",
                printable(&range.field),
                listed.join(" ")
            )));
        }
    }
    Ok(())
}

const LIMIT_AND_AFTER: &str =
    "LIMIT and AFTER cannot be combined: AFTER <id> <count> pages from a meeting, LIMIT by offset";

/// The count of LIMIT or AFTER (`clause`): at most `max_page`.
fn page_count(arg: &[u8], clause: &str, max_page: u64) -> Result<u64, CrmError> {
    let count = parse_non_negative(arg, &format!("{clause} count"))?;
    if count > max_page {
        return Err(bad(&format!(
            "{clause} count {count} is above the maximum page size {max_page} (crm.max-page)"
        )));
    }
    Ok(count)
}

/// A RANGE bound: a number, `-inf`/`+inf`, an RFC 3339 date-time or a `YYYY-MM-DD` date,
/// exclusive after a leading `(`.
fn parse_range_bound(arg: &[u8], which: &str) -> Result<Bound, CrmError> {
    let (exclusive, text) = match arg.strip_prefix(b"(") {
        Some(text) => (true, text),
        None => (false, arg),
    };
    let score = parse_bound(text).ok_or_else(|| {
        bad(&format!(
            "RANGE {which} must be a number, -inf, +inf, an RFC 3339 date-time or a YYYY-MM-DD \
             date (a leading '(' excludes it), got '{}'",
            printable(arg)
        ))
    })?;
    Ok(Bound { score, exclusive })
}

/// A non-negative integer in canonical decimal form (digits only, as Redis prints them).
fn parse_non_negative(arg: &[u8], what: &str) -> Result<u64, CrmError> {
    let parsed = std::str::from_utf8(arg)
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok());
    parsed.ok_or_else(|| {
        bad(&format!(
            "{what} must be a non-negative integer, got '{}'",
            printable(arg)
        ))
    })
}

fn bad(message: &str) -> CrmError {
    CrmError::BadArgument(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &str) -> Result<Query, CrmError> {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        parse_query(&args, 1000)
    }

    fn message(words: &str) -> String {
        parse(words).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let query = parse("10 1").unwrap();
        assert_eq!(query.installation, b"10");
        assert_eq!(query.user, b"1");
        assert!(query.filters.is_empty());
        assert_eq!(query.sort.field, b"date");
        assert_eq!(query.sort.direction, Direction::Asc);
        assert_eq!((query.offset, query.count), (0, 10));
    }

    #[test]
    fn filters_group_by_field_and_drop_repeats() {
        let query =
            parse("10 1 FILTER type email filter status open FILTER type sms FILTER type email")
                .unwrap();
        assert_eq!(query.filters.len(), 2);
        assert_eq!(query.filters[0].field, b"type");
        assert_eq!(
            query.filters[0].values,
            vec![b"email".to_vec(), b"sms".to_vec()]
        );
        assert_eq!(query.filters[1].values, vec![b"open".to_vec()]);
        let query = parse("10 1 FILTER type email EXCLUDE status close exclude type sms").unwrap();
        assert_eq!(query.filters.len(), 1);
        assert_eq!(query.excludes.len(), 2);
        assert_eq!(query.excludes[0].field, b"status");
        assert_eq!(query.excludes[1].values, vec![b"sms".to_vec()]);
    }

    #[test]
    fn sortby_and_limit() {
        let query = parse("10 1 SORTBY created desc LIMIT 20 5").unwrap();
        assert_eq!(query.sort.field, b"created");
        assert_eq!(query.sort.direction, Direction::Desc);
        assert_eq!((query.offset, query.count), (20, 5));
        // A field named like a keyword after SORTBY is the field, not a direction.
        let query = parse("10 1 SORTBY asc").unwrap();
        assert_eq!(query.sort.field, b"asc");
        assert_eq!(query.sort.direction, Direction::Asc);
        assert_eq!(parse("10 1 LIMIT 0 0").unwrap().count, 0);
    }

    #[test]
    fn errors_name_the_bad_argument() {
        assert_eq!(
            message("10"),
            "ERR wrong number of arguments for 'crm.meetings' command"
        );
        assert_eq!(
            message("10 1 FILTER type"),
            "ERR FILTER needs a field and a value"
        );
        assert_eq!(
            message("10 1 FILTER  x"),
            "ERR FILTER field must not be empty"
        );
        assert_eq!(
            message("10 1 AFTER 5"),
            "ERR AFTER needs a meeting id and a count"
        );
        assert_eq!(
            message("10 1 AFTER 5 2000"),
            "ERR AFTER count 2000 is above the maximum page size 1000 (crm.max-page)"
        );
        for both in ["10 1 LIMIT 0 5 AFTER 5 5", "10 1 AFTER 5 5 LIMIT 0 5"] {
            assert_eq!(
                message(both),
                "ERR LIMIT and AFTER cannot be combined: AFTER <id> <count> pages from a \
                 meeting, LIMIT by offset"
            );
        }
        let query = parse("10 1 AFTER 17 3").unwrap();
        assert_eq!(
            (query.after, query.offset, query.count),
            (Some(b"17".to_vec()), 0, 3)
        );
        assert_eq!(
            message("10 1 RANGE date 1"),
            "ERR RANGE needs a field, a min and a max"
        );
        assert_eq!(
            message("10 1 RANGE date 1 soon"),
            "ERR RANGE max must be a number, -inf, +inf, an RFC 3339 date-time or a YYYY-MM-DD \
             date (a leading '(' excludes it), got 'soon'"
        );
        assert_eq!(
            message("10 1 RANGE date 2025-02-30 +inf"),
            "ERR RANGE min must be a number, -inf, +inf, an RFC 3339 date-time or a YYYY-MM-DD \
             date (a leading '(' excludes it), got '2025-02-30'"
        );
        let range = parse("10 1 RANGE date (2025-03-04 2025-03-04T10:00:00+01:00")
            .unwrap()
            .ranges;
        assert_eq!(range[0].min.score, 1_741_046_400.0);
        assert!(range[0].min.exclusive);
        assert_eq!(range[0].max.score, 1_741_046_400.0 + 9.0 * 3_600.0);
        assert!(!range[0].max.exclusive);
        assert_eq!(
            check_ranges(&parse("10 1 RANGE rank 1 2").unwrap(), &[b"date".to_vec()])
                .unwrap_err()
                .to_string(),
            "ERR RANGE field 'rank' has no sorted set: crm.sort-fields is 'date' (add the \
             field there, then CRM.REPAIR each installation to fill its sorted set)"
        );
        assert_eq!(
            message("10 1 EXCLUDE status"),
            "ERR EXCLUDE needs a field and a value"
        );
        assert_eq!(
            message("10 1 EXCLUDE  x"),
            "ERR EXCLUDE field must not be empty"
        );
        assert_eq!(message("10 1 SORTBY"), "ERR SORTBY needs a field");
        assert_eq!(
            message("10 1 LIMIT 5"),
            "ERR LIMIT needs an offset and a count"
        );
        assert_eq!(
            message("10 1 LIMIT -1 5"),
            "ERR LIMIT offset must be a non-negative integer, got '-1'"
        );
        assert_eq!(
            message("10 1 LIMIT 0 x"),
            "ERR LIMIT count must be a non-negative integer, got 'x'"
        );
        assert_eq!(
            message("10 1 LIMIT 0 1001"),
            "ERR LIMIT count 1001 is above the maximum page size 1000 (crm.max-page)"
        );
        assert_eq!(
            message("10 1 LIMIT 0 99999999999999999999"),
            "ERR LIMIT count must be a non-negative integer, got '99999999999999999999'"
        );
        assert_eq!(
            message("10 1 ORDER date"),
            "ERR unknown option 'ORDER': expected FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, RETURN or FORMAT"
        );
        assert_eq!(
            message("10 1 LIMIT 0 1 LIMIT 0 2"),
            "ERR LIMIT given more than once"
        );
        assert_eq!(
            message("10 1 SORTBY a SORTBY b"),
            "ERR SORTBY given more than once"
        );
        assert!(message("10 1 LIMIT +1 2").contains("offset"));
        assert_eq!(
            message("10 1 FORMAT XML"),
            "ERR FORMAT must be JSON or RESP, got 'XML'"
        );
        assert_eq!(message("10 1 FORMAT"), "ERR FORMAT needs JSON or RESP");
        assert_eq!(message("10 1 RETURN 2 a"), "ERR RETURN needs 2 field names");
        assert_eq!(
            message("10 1 RETURN 0"),
            "ERR RETURN count must be from 1 to 64, got 0"
        );
        assert_eq!(
            message("10 1 RETURN x a"),
            "ERR RETURN count must be a non-negative integer, got 'x'"
        );
    }

    #[test]
    fn format_and_return() {
        let query = parse("10 1 RETURN 2 subject owner LIMIT 0 5 format json").unwrap();
        assert_eq!(query.format, Format::Json);
        assert_eq!(
            query.returns,
            Some(vec![b"subject".to_vec(), b"owner".to_vec()])
        );
        assert_eq!(query.returned_fields(), vec![&b"subject"[..], b"owner"]);
        assert_eq!(
            parse("10 1").unwrap().returned_fields(),
            vec![&b"details"[..]]
        );
    }
}
