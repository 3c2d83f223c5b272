//! CRM.MEETINGS and CRM.FACETS = the Lua reference script = a naive in-memory model, on 500
//! random datasets (fixed seeds) with several queries each.

mod common;

use common::dataset::{Dataset, Rng, DATASET_SETTINGS};
use common::{decode, Server, REFERENCE_LUA};
use redis::Value;

const DATASETS: u64 = 500;
const QUERIES_PER_DATASET: usize = 8;

#[test]
fn module_lua_and_model_agree() {
    let server = Server::start_with(&DATASET_SETTINGS, &[]);
    let mut con = server.connect();
    let script = redis::Script::new(REFERENCE_LUA);
    let mut compared = 0;
    let mut non_empty_pages = 0;
    let mut with_matches = 0;
    // Queries with EXCLUDE or RANGE, counted apart: they match less by design.
    let mut narrowed = 0;
    let mut narrowed_matches = 0;
    // CRM.FACETS queries, and those with a count above zero.
    let mut facets = 0;
    let mut counted = 0;
    for seed in 0..DATASETS {
        let mut rng = Rng::new(seed);
        let data = Dataset::generate(&mut rng);
        data.load(&mut con);
        let keys_before: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        for n in 0..QUERIES_PER_DATASET {
            let mut query = data.random_query(&mut rng);
            // One query in each dataset is CRM.FACETS with the same clauses.
            if n == 0 {
                query.facets = true;
                query.after = None;
            }
            let module = decode(
                redis::cmd(query.command())
                    .arg(query.module_args())
                    .query(&mut con)
                    .unwrap(),
            );
            let lua = decode(script.arg(query.lua_args()).invoke(&mut con).unwrap());
            let model = data.model(&query);
            assert_eq!(
                module, model,
                "module vs model, seed {seed}, {query:?}\n{data:#?}"
            );
            assert_eq!(
                lua, model,
                "Lua vs model, seed {seed}, {query:?}\n{data:#?}"
            );
            if query.facets {
                facets += 1;
                counted += usize::from(
                    module
                        .facets
                        .iter()
                        .any(|(_, counts)| counts.iter().any(|(_, count)| *count > 0)),
                );
            } else if query.excludes.is_empty() && query.ranges.is_empty() {
                compared += 1;
                non_empty_pages += usize::from(!module.page.is_empty());
                with_matches += usize::from(module.total > 0);
            } else {
                narrowed += 1;
                narrowed_matches += usize::from(module.total > 0);
            }
        }
        // AFTER a meeting without a hash: the same error from the module and the reference.
        let mut query = data.random_query(&mut rng);
        query.after = Some("no-such-meeting".into());
        let module = redis::cmd("CRM.MEETINGS")
            .arg(query.module_args())
            .query::<Value>(&mut con)
            .map_err(|e| e.to_string());
        let lua = script
            .arg(query.lua_args())
            .invoke::<Value>(&mut con)
            .map_err(|e| e.to_string());
        let expected = "AFTER: meeting 'no-such-meeting' does not exist";
        assert!(
            module.as_ref().is_err_and(|e| e.contains(expected)),
            "seed {seed}: {module:?}"
        );
        assert_eq!(module, lua, "seed {seed}");
        let keys_after: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
        assert_eq!(
            keys_before, keys_after,
            "a query left keys behind (seed {seed})"
        );
    }
    // The generator must exercise real answers, not only empty ones.
    eprintln!("{compared} queries: {with_matches} with matches, {non_empty_pages} non-empty pages");
    eprintln!("{narrowed} with EXCLUDE or RANGE: {narrowed_matches} with matches");
    eprintln!("{facets} CRM.FACETS: {counted} with a count above zero");
    assert!(
        counted * 3 > facets,
        "only {counted} of {facets} CRM.FACETS queries counted anything"
    );
    assert!(
        narrowed * 5 > compared && narrowed_matches * 5 > narrowed,
        "only {narrowed_matches} of {narrowed} queries with EXCLUDE or RANGE matched"
    );
    assert!(
        with_matches * 20 > compared * 9,
        "only {with_matches} of {compared} queries matched"
    );
    assert!(
        non_empty_pages * 4 > compared,
        "only {non_empty_pages} of {compared} pages had rows"
    );
}
