//! The typed query of CRM.MEETINGS and the parser that builds it from the command's arguments.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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
    /// CRM.FACETS's FIELDs: the matches are counted in each value's set (empty for
    /// CRM.MEETINGS).
    pub facets: Vec<FilterGroup>,
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
/// The most values one FIELD of CRM.FACETS may name.
pub const MAX_FACET_VALUES: u64 = 256;

/// Parses CRM.MEETINGS: `<installation> <user> [FILTER f v]... [EXCLUDE f v]...
/// [RANGE f min max]... [SORTBY f [ASC|DESC]] [LIMIT off cnt | AFTER id cnt]
/// [RETURN n f...] [FORMAT JSON|RESP]` (the arguments after the command name).
/// `max_page` caps the page's count.
pub fn parse_query(args: &[&[u8]], max_page: u64) -> Result<Query, CrmError> {
    parse(args, max_page, Command::Meetings)
}

/// Parses CRM.FACETS: `<installation> <user> [FILTER f v]... [EXCLUDE f v]...
/// [RANGE f min max]... FIELD f n v... [FIELD f n v...]... [FORMAT JSON|RESP]`, as a query
/// with `facets` and no page.
pub fn parse_facets(args: &[&[u8]]) -> Result<Query, CrmError> {
    let query = parse(args, 0, Command::Facets)?;
    if query.facets.is_empty() {
        return Err(bad(
            "CRM.FACETS needs at least one FIELD <field> <n> <value>...",
        ));
    }
    Ok(query)
}

#[derive(Clone, Copy, PartialEq)]
enum Command {
    Meetings,
    Facets,
}

fn parse(args: &[&[u8]], max_page: u64, command: Command) -> Result<Query, CrmError> {
    let (installation, user, mut rest) = match args {
        [installation, user, rest @ ..] => (installation.to_vec(), user.to_vec(), rest),
        _ => {
            return Err(CrmError::WrongArity {
                command: match command {
                    Command::Meetings => "crm.meetings",
                    Command::Facets => "crm.facets",
                },
            })
        }
    };
    let pages = command == Command::Meetings;
    let mut facets: Vec<FilterGroup> = Vec::new();
    let mut filters = Groups::default();
    let mut excludes = Groups::default();
    let mut ranges: Vec<Range> = Vec::new();
    let mut sort: Option<SortBy> = None;
    let mut limit: Option<(u64, u64)> = None;
    let mut after: Option<(Bytes, u64)> = None;
    let mut format: Option<Format> = None;
    let mut returns: Option<Vec<Bytes>> = None;

    while let [option, tail @ ..] = rest {
        rest = tail;
        let value_clause = if option.eq_ignore_ascii_case(b"FILTER") {
            Some(("FILTER", &mut filters))
        } else if option.eq_ignore_ascii_case(b"EXCLUDE") {
            Some(("EXCLUDE", &mut excludes))
        } else {
            None
        };
        if let Some((clause, groups)) = value_clause {
            let [field, value, tail @ ..] = rest else {
                return Err(bad(&format!("{clause} needs a field and a value")));
            };
            rest = tail;
            if field.is_empty() {
                return Err(bad(&format!("{clause} field must not be empty")));
            }
            groups.add(field, value);
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
        } else if !pages && option.eq_ignore_ascii_case(b"FIELD") {
            let [field, count, tail @ ..] = rest else {
                return Err(bad("FIELD needs a field, a count and values"));
            };
            if field.is_empty() {
                return Err(bad("FIELD field must not be empty"));
            }
            if facets.iter().any(|facet| facet.field == *field) {
                return Err(bad(&format!(
                    "FIELD '{}' given more than once",
                    printable(field)
                )));
            }
            let count = parse_non_negative(count, "FIELD count")?;
            if count == 0 || count > MAX_FACET_VALUES {
                return Err(bad(&format!(
                    "FIELD count must be from 1 to {MAX_FACET_VALUES}, got {count}"
                )));
            }
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let (Some(values), Some(tail)) = (tail.get(..count), tail.get(count..)) else {
                return Err(bad(&format!(
                    "FIELD {} needs {count} values",
                    printable(field)
                )));
            };
            let mut distinct = HashSet::new();
            if let Some(repeated) = values.iter().find(|value| !distinct.insert(**value)) {
                return Err(bad(&format!(
                    "FIELD {}: value '{}' given twice",
                    printable(field),
                    printable(repeated)
                )));
            }
            rest = tail;
            facets.push(FilterGroup {
                field: field.to_vec(),
                values: values.iter().map(|value| value.to_vec()).collect(),
            });
        } else if pages && option.eq_ignore_ascii_case(b"SORTBY") {
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
        } else if pages && option.eq_ignore_ascii_case(b"LIMIT") {
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
        } else if pages && option.eq_ignore_ascii_case(b"AFTER") {
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
        } else if pages && option.eq_ignore_ascii_case(b"RETURN") {
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
            let expected = match command {
                Command::Meetings => {
                    "FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, RETURN or FORMAT"
                }
                Command::Facets => "FILTER, EXCLUDE, RANGE, FIELD or FORMAT",
            };
            return Err(bad(&format!(
                "unknown option '{}': expected {expected}",
                printable(option)
            )));
        }
    }

    let (offset, count, after) = match (limit, after) {
        (Some((offset, count)), _) => (offset, count, None),
        (None, Some((id, count))) => (0, count, Some(id)),
        (None, None) if pages => (0, DEFAULT_COUNT.min(max_page), None),
        // CRM.FACETS: the total and the counts, no page.
        (None, None) => (0, 0, None),
    };
    Ok(Query {
        installation,
        user,
        filters: filters.groups,
        excludes: excludes.groups,
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
        facets,
    })
}

/// FILTER's (or EXCLUDE's) groups as they are parsed: one per field, each value once.
#[derive(Default)]
struct Groups {
    groups: Vec<FilterGroup>,
    /// Per field, its group's place and the values it has, so that a call with many
    /// FILTER arguments stays linear.
    seen: HashMap<Bytes, (usize, HashSet<Bytes>)>,
}

impl Groups {
    fn add(&mut self, field: &[u8], value: &[u8]) {
        let groups = &mut self.groups;
        let (index, values) = self.seen.entry(field.to_vec()).or_insert_with(|| {
            groups.push(FilterGroup {
                field: field.to_vec(),
                values: Vec::new(),
            });
            (groups.len() - 1, HashSet::new())
        });
        if values.insert(value.to_vec()) {
            if let Some(group) = groups.get_mut(*index) {
                group.values.push(value.to_vec());
            }
        }
    }
}

/// The fields a query may name, from the settings.
#[derive(Debug, Clone, Default)]
pub struct QueryFields {
    /// `crm.filter-fields`: FILTER, EXCLUDE and FIELD.
    pub filter: Arc<Vec<Bytes>>,
    /// `crm.sort-fields` (a sorted set each): SORTBY and RANGE.
    pub sort: Arc<Vec<Bytes>>,
    /// `crm.hash-sort-fields` (read from the meeting hash): SORTBY only.
    pub hash_sort: Arc<Vec<Bytes>>,
}

/// Refuses a field the settings do not name, instead of answering nothing: a FILTER,
/// EXCLUDE or FIELD field outside `crm.filter-fields` (`FILTER tpye email`), a SORTBY field
/// in neither `crm.sort-fields` nor `crm.hash-sort-fields` (`SORTBY -date`), a RANGE field
/// without a sorted set. CRM.FACETS does not sort: its (default) sort field is not checked.
pub fn check_fields(query: &Query, fields: &QueryFields) -> Result<(), CrmError> {
    let listed = |names: &[Bytes]| -> String {
        let names: Vec<String> = names.iter().map(|name| printable(name)).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let groups = query
        .filters
        .iter()
        .chain(&query.excludes)
        .chain(&query.facets);
    for group in groups {
        if !fields.filter.contains(&group.field) {
            return Err(bad(&format!(
                "unknown field '{}': filter fields are {} (crm.filter-fields; add a field \
                 there to filter on it)",
                printable(&group.field),
                listed(&fields.filter)
            )));
        }
    }
    let unknown_sort = |field: &[u8]| {
        bad(&format!(
            "unknown sort field '{}': sort fields are {} (crm.sort-fields, by a sorted set) \
             and {} (crm.hash-sort-fields, by the meeting hash's field); add the field to \
             one of them to sort on it",
            printable(field),
            listed(&fields.sort),
            listed(&fields.hash_sort)
        ))
    };
    let sort = &query.sort.field;
    if query.facets.is_empty() && !fields.sort.contains(sort) && !fields.hash_sort.contains(sort) {
        return Err(unknown_sort(sort));
    }
    for range in &query.ranges {
        if fields.sort.contains(&range.field) {
            continue;
        }
        if !fields.hash_sort.contains(&range.field) {
            return Err(unknown_sort(&range.field));
        }
        return Err(bad(&format!(
            "RANGE field '{}' has no sorted set: it is in crm.hash-sort-fields; RANGE needs \
             a field of crm.sort-fields ({}), whose values the writes keep in a sorted set",
            printable(&range.field),
            listed(&fields.sort)
        )));
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
mod tests;
