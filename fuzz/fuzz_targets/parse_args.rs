//! The argument parsers on arbitrary argument vectors: they never panic, every error is one
//! short `ERR`/`WRONGTYPE` line, a parsed query or write prints back to arguments that parse
//! to the same value, and the id order and value readers stay total and NaN-free.
#![no_main]

use crm_meetings::core::order::compare_ids;
use crm_meetings::core::query::{parse_facets, parse_query, Bound, FilterGroup, Format, Query};
use crm_meetings::core::types::Direction;
use crm_meetings::core::values::{parse_rfc3339, parse_sort_value};
use crm_meetings::core::write::{
    parse_meeting_del, parse_meeting_mset, parse_meeting_set, MeetingWrite,
};
use crm_meetings::error::CrmError;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Words the parsers look for, so that random inputs reach every option quickly.
const WORDS: [&[u8]; 23] = [
    b"FILTER",
    b"FIELD",
    b"2",
    b"after",
    b"exclude",
    b"RANGE",
    b"(5",
    b"-inf",
    b"filter",
    b"SORTBY",
    b"ASC",
    b"desc",
    b"LIMIT",
    b"RETURN",
    b"FORMAT",
    b"JSON",
    b"resp",
    b"0",
    b"10",
    b"18446744073709551616",
    b"-1",
    b"",
    b"date",
];

fn argument<'a>(u: &mut Unstructured<'a>) -> Result<&'a [u8]> {
    let tag: u8 = u.arbitrary()?;
    // Half the arguments are words the parsers know.
    Ok(match WORDS.get(usize::from(tag % 32)) {
        Some(word) => word,
        None => {
            let len = usize::from(u.arbitrary::<u8>()? % 24);
            u.bytes(len.min(u.len()))?
        }
    })
}

fn check_error(error: &CrmError) {
    let text = error.to_string();
    assert!(
        ["ERR ", "WRONGTYPE "]
            .iter()
            .any(|code| text.starts_with(code)),
        "{text}"
    );
    assert!(
        !text.contains(['\r', '\n']),
        "an error reply must be one line: {text:?}"
    );
    assert!(text.len() < 400, "error too long: {text}");
}

/// The arguments that say `query` again.
fn render_query(query: &Query) -> Vec<Vec<u8>> {
    let mut args = vec![query.installation.clone(), query.user.clone()];
    for group in &query.filters {
        for value in &group.values {
            args.extend([b"FILTER".to_vec(), group.field.clone(), value.clone()]);
        }
    }
    for group in &query.excludes {
        for value in &group.values {
            args.extend([b"EXCLUDE".to_vec(), group.field.clone(), value.clone()]);
        }
    }
    for range in &query.ranges {
        let bound = |bound: &Bound| {
            let open = if bound.exclusive { "(" } else { "" };
            format!("{open}{:?}", bound.score).into_bytes()
        };
        args.extend([
            b"RANGE".to_vec(),
            range.field.clone(),
            bound(&range.min),
            bound(&range.max),
        ]);
    }
    let direction: &[u8] = match query.sort.direction {
        Direction::Asc => b"ASC",
        Direction::Desc => b"DESC",
    };
    args.extend([
        b"SORTBY".to_vec(),
        query.sort.field.clone(),
        direction.to_vec(),
    ]);
    match &query.after {
        Some(id) => args.extend([
            b"AFTER".to_vec(),
            id.clone(),
            query.count.to_string().into_bytes(),
        ]),
        None => args.extend([
            b"LIMIT".to_vec(),
            query.offset.to_string().into_bytes(),
            query.count.to_string().into_bytes(),
        ]),
    }
    if let Some(fields) = &query.returns {
        args.extend([b"RETURN".to_vec(), fields.len().to_string().into_bytes()]);
        args.extend(fields.iter().cloned());
    }
    let format: &[u8] = match query.format {
        Format::Resp => b"RESP",
        Format::Json => b"JSON",
    };
    args.extend([b"FORMAT".to_vec(), format.to_vec()]);
    args
}

fn render_write(write: &MeetingWrite) -> Vec<Vec<u8>> {
    let mut args = vec![write.installation.clone(), write.id.clone()];
    for (field, value) in &write.fields {
        args.extend([field.clone(), value.clone()]);
    }
    args
}

fn as_slices(args: &[Vec<u8>]) -> Vec<&[u8]> {
    args.iter().map(Vec::as_slice).collect()
}

fn check_query(args: &[&[u8]], max_page: u64) {
    match parse_query(args, max_page) {
        Ok(query) => {
            assert!(query.count <= max_page);
            let mut fields: Vec<&[u8]> = query.filters.iter().map(|g| g.field.as_slice()).collect();
            fields.sort();
            fields.dedup();
            assert_eq!(fields.len(), query.filters.len(), "one group per field");
            assert!(query
                .filters
                .iter()
                .chain(&query.excludes)
                .all(|g| !g.values.is_empty() && !g.field.is_empty()));
            let again = render_query(&query);
            assert_eq!(parse_query(&as_slices(&again), max_page), Ok(query));
        }
        Err(error) => check_error(&error),
    }
    match parse_facets(args) {
        Ok(query) => {
            assert!(!query.facets.is_empty() && query.count == 0 && query.after.is_none());
            assert!(query.facets.iter().all(|facet| !facet.values.is_empty()));
            let mut again = render_query(&query);
            // No page options in CRM.FACETS: keep the clauses (the installation, the user,
            // then FILTER and EXCLUDE in three words each, RANGE in four), add the FIELDs.
            let values = |groups: &[FilterGroup]| -> usize {
                groups.iter().map(|group| group.values.len()).sum()
            };
            let clauses =
                2 + 3 * (values(&query.filters) + values(&query.excludes)) + 4 * query.ranges.len();
            let format = again.split_off(again.len().saturating_sub(2));
            again.truncate(clauses);
            for facet in &query.facets {
                again.extend([
                    b"FIELD".to_vec(),
                    facet.field.clone(),
                    facet.values.len().to_string().into_bytes(),
                ]);
                again.extend(facet.values.iter().cloned());
            }
            again.extend(format);
            assert_eq!(parse_facets(&as_slices(&again)), Ok(query));
        }
        Err(error) => check_error(&error),
    }
}

fn check_write(args: &[&[u8]]) {
    match parse_meeting_set(args) {
        Ok(write) => {
            assert!(!write.id.is_empty());
            let again = render_write(&write);
            assert_eq!(parse_meeting_set(&as_slices(&again)), Ok(write));
        }
        Err(error) => check_error(&error),
    }
    match parse_meeting_mset(args) {
        Ok(writes) => {
            // Printed back as one call: the same writes, each meeting once.
            let mut again = vec![args.first().map(|a| a.to_vec()).unwrap_or_default()];
            for write in &writes {
                assert!(!write.id.is_empty());
                again.extend([
                    write.id.clone(),
                    write.fields.len().to_string().into_bytes(),
                ]);
                again.extend(render_write(write).into_iter().skip(2));
            }
            assert_eq!(parse_meeting_mset(&as_slices(&again)), Ok(writes));
        }
        Err(error) => check_error(&error),
    }
    if let Err(error) = parse_meeting_del(args) {
        check_error(&error);
    }
}

fn check_values(args: &[&[u8]]) {
    for arg in args {
        assert!(parse_sort_value(arg).map_or(true, |v| !v.is_nan()));
        assert!(parse_rfc3339(arg).map_or(true, f64::is_finite));
        for other in args {
            let forward = compare_ids(arg, other);
            assert_eq!(forward, compare_ids(other, arg).reverse());
            assert_eq!(forward.is_eq(), arg == other, "equal order means equal ids");
        }
    }
    if let [a, b, c, ..] = args {
        if compare_ids(a, b).is_le() && compare_ids(b, c).is_le() {
            assert!(compare_ids(a, c).is_le(), "id order is transitive");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let max_page = u.arbitrary::<u16>().map_or(1000, u64::from);
    let mut args = Vec::new();
    while !u.is_empty() && args.len() < 64 {
        match argument(&mut u) {
            Ok(arg) => args.push(arg),
            Err(_) => break,
        }
    }
    check_query(&args, max_page);
    check_write(&args);
    check_values(&args);
});
