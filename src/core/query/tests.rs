//! The parser's unit tests: the parent declares this file `#[cfg(test)] mod tests;`.

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
    let facets = |words: &str| {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        parse_facets(&args).map_err(|e| e.to_string())
    };
    assert_eq!(
        facets("10 1 FILTER type email").unwrap_err(),
        "ERR CRM.FACETS needs at least one FIELD <field> <n> <value>..."
    );
    assert_eq!(
        facets("10 1 FIELD status 2 open").unwrap_err(),
        "ERR FIELD status needs 2 values"
    );
    assert_eq!(
        facets("10 1 FIELD status 0").unwrap_err(),
        "ERR FIELD count must be from 1 to 256, got 0"
    );
    assert_eq!(
        facets("10 1 FIELD status 2 open open").unwrap_err(),
        "ERR FIELD status: value 'open' given twice"
    );
    assert_eq!(
        facets("10 1 FIELD status 1 open FIELD status 1 close").unwrap_err(),
        "ERR FIELD 'status' given more than once"
    );
    assert_eq!(
        facets("10 1 FIELD status 1 open LIMIT 0 5").unwrap_err(),
        "ERR unknown option 'LIMIT': expected FILTER, EXCLUDE, RANGE, FIELD or FORMAT"
    );
    assert_eq!(
        message("10 1 FIELD status 1 open"),
        "ERR unknown option 'FIELD': expected FILTER, EXCLUDE, RANGE, SORTBY, LIMIT, AFTER, \
         RETURN or FORMAT"
    );
    let query = facets("10 1 FILTER type email FIELD status 2 open close FORMAT JSON").unwrap();
    assert_eq!(query.facets.len(), 1);
    assert_eq!((query.count, query.format), (0, Format::Json));
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
    let fields = QueryFields {
        filter: Arc::new(vec![b"type".to_vec(), b"status".to_vec()]),
        sort: Arc::new(vec![b"date".to_vec()]),
        hash_sort: Arc::new(vec![b"rank".to_vec()]),
    };
    let checked = |words: &str| {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        let query = parse_query(&args, 1000)
            .or_else(|_| parse_facets(&args))
            .unwrap();
        check_fields(&query, &fields).map_err(|e| e.to_string())
    };
    assert_eq!(
        checked("10 1 FILTER type email SORTBY rank RANGE date 1 2"),
        Ok(())
    );
    assert_eq!(checked("10 1 FIELD status 1 open"), Ok(()));
    let unknown_filter = "ERR unknown field 'tpye': filter fields are type, status \
                          (crm.filter-fields; add a field there to filter on it)";
    for words in [
        "10 1 FILTER tpye email",
        "10 1 EXCLUDE tpye email",
        "10 1 FIELD tpye 1 email",
    ] {
        assert_eq!(checked(words).unwrap_err(), unknown_filter, "{words}");
    }
    let unknown_sort = "ERR unknown sort field '-date': sort fields are date (crm.sort-fields, \
                        by a sorted set) and rank (crm.hash-sort-fields, by the meeting hash's \
                        field); add the field to one of them to sort on it";
    assert_eq!(checked("10 1 SORTBY -date").unwrap_err(), unknown_sort);
    assert_eq!(
        checked("10 1 RANGE rank 1 2").unwrap_err(),
        "ERR RANGE field 'rank' has no sorted set: it is in crm.hash-sort-fields; RANGE needs \
         a field of crm.sort-fields (date), whose values the writes keep in a sorted set"
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
