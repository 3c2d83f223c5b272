//! The keyspace path on the proof of concept's example data, over the in-memory store.
//! Unit tests only: the parent declares this file `#[cfg(test)] mod tests;`.

use super::in_memory_store::InMemoryStore;
use super::keyspace_path::{execute, execute_traced};
use super::query::{parse_facets, parse_query};
use super::trace::Trace;

/// The seed's example data (crm-poc.txt), with dates in the `date` sorted set.
fn seed() -> InMemoryStore {
    let mut store = InMemoryStore::default();
    store.filter("10", "type", "email", &["11", "12", "15", "16", "19", "20"]);
    store.filter("10", "type", "sms", &["11", "13", "15", "17", "19", "21"]);
    store.filter("10", "status", "open", &["11", "13", "17", "19", "23"]);
    store.filter(
        "10",
        "status",
        "close",
        &["10", "12", "14", "16", "18", "20"],
    );
    store.clients("1", &["7", "9", "11", "47"]);
    store.clients("2", &["1", "2", "3", "8", "10", "11"]);
    store.clients("3", &["4", "6", "8", "10", "12", "14", "16", "20", "24"]);
    store.clients("4", &["3", "6", "9", "12", "15", "18", "21", "24"]);
    for (id, client, date) in [
        ("11", "2", 300.0),
        ("15", "7", 100.0),
        ("19", "8", 200.0),
        ("23", "12", 50.0),
    ] {
        let details = format!("{{\"id\":{id}}}");
        store.meeting(id, &[("clientid", client), ("details", &details)]);
        store.score("date", id, date);
    }
    store
}

fn run(store: &InMemoryStore, words: &str) -> (u64, Vec<String>) {
    let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
    let page = execute(store, &parse_query(&args, 1000).unwrap()).unwrap();
    let ids = page
        .meetings
        .iter()
        .map(|(id, _)| String::from_utf8(id.clone()).unwrap())
        .collect();
    (page.total, ids)
}

#[test]
fn seed_example() {
    let store = seed();
    let filters = "FILTER type email FILTER status open";
    assert_eq!(run(&store, &format!("10 1 {filters}")), (0, vec![]));
    assert_eq!(
        run(&store, &format!("10 2 {filters}")),
        (2, vec!["19".into(), "11".into()])
    );
    assert_eq!(
        run(&store, &format!("10 3 {filters}")),
        (1, vec!["19".into()])
    );
    assert_eq!(run(&store, &format!("10 4 {filters}")), (0, vec![]));
    assert_eq!(run(&store, &format!("10 5 {filters}")), (0, vec![]));
    assert_eq!(run(&store, &format!("11 2 {filters}")), (0, vec![]));
}

#[test]
fn exclude_drops_the_meetings_of_each_excluded_set() {
    let store = seed();
    let email = "10 2 FILTER type email";
    assert_eq!(
        run(&store, &format!("{email} EXCLUDE status close")),
        (2, vec!["19".into(), "11".into()])
    );
    assert_eq!(
        run(&store, &format!("{email} EXCLUDE status open")),
        (0, vec![])
    );
    // A missing set drops nothing; a field may be filtered and excluded at once.
    assert_eq!(
        run(&store, &format!("{email} EXCLUDE status fax")),
        (2, vec!["19".into(), "11".into()])
    );
    assert_eq!(
        run(&store, &format!("{email} FILTER type sms EXCLUDE type sms")),
        (0, vec![])
    );
    // Several EXCLUDEs drop each.
    let open = "FILTER status open EXCLUDE type email EXCLUDE type sms";
    assert_eq!(run(&store, &format!("10 2 {open}")), (0, vec![]));
    assert_eq!(run(&store, &format!("10 3 {open}")), (1, vec!["23".into()]));
}

#[test]
fn range_keeps_the_scores_between_its_bounds() {
    let store = seed();
    // User 3 sees 19 (date 200) and 23 (date 50); user 2 sees 11 (300) and 19 (200).
    let open = "FILTER status open";
    let run_range = |user: &str, range: &str| run(&store, &format!("10 {user} {open} {range}"));
    assert_eq!(
        run_range("2", "RANGE date 200 300"),
        (2, vec!["19".into(), "11".into()])
    );
    assert_eq!(
        run_range("2", "RANGE date (200 300"),
        (1, vec!["11".into()])
    );
    assert_eq!(
        run_range("2", "RANGE date 200 (300"),
        (1, vec!["19".into()])
    );
    assert_eq!(
        run_range("2", "RANGE date -inf +inf"),
        (2, vec!["19".into(), "11".into()])
    );
    assert_eq!(run_range("2", "RANGE date 300 200"), (0, vec![]));
    assert_eq!(
        run_range("3", "RANGE date -inf (200"),
        (1, vec!["23".into()])
    );
    // Dates: 1970-01-01T00:05:00Z is 300 seconds, 1970-01-01 is 0.
    assert_eq!(
        run_range("2", "RANGE date 1970-01-01 (1970-01-01T00:05:00Z"),
        (1, vec!["19".into()])
    );
    // Several RANGEs must all hold.
    assert_eq!(
        run_range("2", "RANGE date 100 +inf RANGE date -inf 250"),
        (1, vec!["19".into()])
    );
    // A field without a sorted set: no meeting has a value.
    assert_eq!(run_range("2", "RANGE rank -inf +inf"), (0, vec![]));
}

#[test]
fn after_pages_from_a_meeting_in_the_query_order() {
    let store = seed();
    // User 2 sees 19 (date 200) and 11 (date 300); 23 (date 50) exists but is not theirs.
    let open = "10 2 FILTER status open";
    assert_eq!(
        run(&store, &format!("{open} AFTER 19 5")),
        (2, vec!["11".into()])
    );
    assert_eq!(run(&store, &format!("{open} AFTER 11 5")), (2, vec![]));
    assert_eq!(
        run(&store, &format!("{open} AFTER 23 5")),
        (2, vec!["19".into(), "11".into()])
    );
    assert_eq!(
        run(&store, &format!("{open} SORTBY date DESC AFTER 11 1")),
        (2, vec!["19".into()])
    );
    let words = format!("{open} AFTER 99 5");
    let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
    let error = execute(&store, &parse_query(&args, 1000).unwrap()).unwrap_err();
    assert_eq!(error.to_string(), "ERR AFTER: meeting '99' does not exist");
}

#[test]
fn facets_count_the_visible_matches_in_each_value_set() {
    let store = seed();
    let facets = |words: &str| {
        let args: Vec<&[u8]> = words.split(' ').map(str::as_bytes).collect();
        let page = execute(&store, &parse_facets(&args).unwrap()).unwrap();
        (page.total, page.facets)
    };
    // User 2 sees 11 and 19: both open, both email and sms.
    let fields = "FIELD status 2 open close FIELD type 3 email sms call";
    assert_eq!(
        facets(&format!("10 2 FILTER status open {fields}")),
        (2, vec![vec![2, 0], vec![2, 2, 0]])
    );
    // User 3 sees 19 (date 200) and 23 (date 50, open, in no type set).
    assert_eq!(
        facets(&format!(
            "10 3 FILTER status open RANGE date 100 +inf {fields}"
        )),
        (1, vec![vec![1, 0], vec![1, 1, 0]])
    );
    assert_eq!(
        facets(&format!(
            "10 3 FILTER status open EXCLUDE type email {fields}"
        )),
        (1, vec![vec![1, 0], vec![0, 0, 0]])
    );
    // No match: every count is 0.
    assert_eq!(
        facets(&format!("10 nobody {fields}")),
        (0, vec![vec![0, 0], vec![0, 0, 0]])
    );
}

#[test]
fn union_within_a_field_sort_and_limit() {
    let store = seed();
    let query = "10 2 FILTER type email FILTER type sms FILTER status open SORTBY date DESC";
    assert_eq!(run(&store, query), (2, vec!["11".into(), "19".into()]));
    assert_eq!(
        run(&store, &format!("{query} LIMIT 1 5")),
        (2, vec!["19".into()])
    );
    assert_eq!(run(&store, &format!("{query} LIMIT 0 0")), (2, vec![]));
    assert_eq!(run(&store, &format!("{query} LIMIT 9 1")), (2, vec![]));
}

#[test]
fn details_come_with_the_page() {
    let store = seed();
    // User 3 sees 23 (client 12, date 50) and 19 (client 8, date 200); page two of size one.
    let args: Vec<&[u8]> = vec![
        b"10", b"3", b"FILTER", b"status", b"open", b"LIMIT", b"1", b"1",
    ];
    let page = execute(&store, &parse_query(&args, 1000).unwrap()).unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(
        page.meetings,
        vec![(b"19".to_vec(), vec![Some(b"{\"id\":19}".to_vec())])]
    );
}

#[test]
fn return_names_the_fields_and_explain_traces_each_step() {
    let store = seed();
    let args: Vec<&[u8]> = vec![
        b"10",
        b"2",
        b"FILTER",
        b"type",
        b"email",
        b"FILTER",
        b"status",
        b"open",
        b"RETURN",
        b"2",
        b"clientid",
        b"nope",
    ];
    let query = parse_query(&args, 1000).unwrap();
    let mut trace = Trace::recording();
    let page = execute_traced(&store, &query, &mut trace).unwrap();
    assert_eq!(
        page.meetings[0],
        (b"19".to_vec(), vec![Some(b"8".to_vec()), None])
    );
    let steps: Vec<(&str, u64)> = trace
        .steps
        .iter()
        .map(|step| (step.name, step.actual))
        .collect();
    // status (5 ids) is read whole, type (6 ids) filters it to 11 and 19, both visible.
    assert_eq!(
        steps,
        [
            ("plan", 2),
            ("candidates", 5),
            ("filter", 2),
            ("client security", 2),
            ("sort values", 2),
            ("page", 2),
            ("fields", 2)
        ]
    );
    assert_eq!(trace.steps[1].estimated, 5);
}

#[test]
fn no_filter_lists_the_installation_and_skips_dangling_ids() {
    let mut store = seed();
    store.meeting_sets.insert(
        b"10".to_vec(),
        ["11", "15", "19", "23", "99"]
            .iter()
            .map(|id| id.as_bytes().to_vec())
            .collect(),
    );
    // 99 has no hash; 15's client 7 is not user 2's.
    assert_eq!(run(&store, "10 2"), (2, vec!["19".into(), "11".into()]));
    store.meeting("99", &[("details", "{}")]);
    store.clients("9", &["2", "7", "8", "12"]);
    // 99 has a hash without clientid: never shown, never counted.
    assert_eq!(
        run(&store, "10 9"),
        (4, vec!["23".into(), "15".into(), "19".into(), "11".into()])
    );
}

#[test]
fn hash_field_sorts_when_there_is_no_sorted_set() {
    let mut store = seed();
    store.sort_indexes.clear();
    store.clients("9", &["2", "7", "8", "12"]);
    store.meeting("11", &[("clientid", "2"), ("rank", "5")]);
    store.meeting("15", &[("clientid", "7"), ("rank", "tbd")]);
    store.meeting("19", &[("clientid", "8"), ("rank", "-1.5")]);
    store.meeting("23", &[("clientid", "12")]);
    let query = "10 9 FILTER status open FILTER status close SORTBY rank";
    assert_eq!(
        run(&store, query),
        (3, vec!["19".into(), "11".into(), "23".into()])
    );
    let query = "10 9 FILTER type email FILTER type sms SORTBY rank DESC";
    assert_eq!(
        run(&store, query),
        (3, vec!["11".into(), "19".into(), "15".into()])
    );
}
