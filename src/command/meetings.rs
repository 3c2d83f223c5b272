//! `CRM.MEETINGS <installation> <user> [FILTER f v]... [SORTBY f [ASC|DESC]] [LIMIT off cnt]
//! [RETURN n f...] [FORMAT JSON|RESP]` and `CRM.EXPLAIN` with the same arguments.
//!
//! Reply: `[total, [id, details], ...]` (the same under RESP2 and RESP3); with RETURN,
//! `[total, [id, [field, value, ...]], ...]`; with FORMAT JSON, one bulk string
//! `{"total":N,"meetings":[{"id":"11","details":{...}}]}`.

use std::time::Instant;

use redis_module::{Context, RedisValue};

use super::{caller_store, integer, stats};
use crate::config;
use crate::core::index::plan::PlanSetting;
use crate::core::keyspace_path;
use crate::core::page::Page;
use crate::core::query::{parse_query, Format, Query};
use crate::core::trace::Trace;
use crate::core::types::DETAILS_FIELD;
use crate::core::values::is_json;
use crate::error::CrmError;
use crate::store::index;
use crate::store::index::answer::try_answer;
use crate::store::keyspace::KeyspaceStore;

pub fn meetings(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let query = parse_query(args, config::max_page())?;
    let store = caller_store(ctx, &query.installation)?;
    let page = answer(ctx, &store, &query, &mut Trace::default())?;
    stats::rows_returned(page.meetings.len());
    Ok(match query.format {
        Format::Resp => resp_reply(&query, page),
        Format::Json => RedisValue::BulkString(json_reply(&query, &page)),
    })
}

/// The plan of the same query, each step with its estimated and actual rows and time.
pub fn explain(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let query = parse_query(args, config::max_page())?;
    let store = caller_store(ctx, &query.installation)?;
    let mut trace = Trace::recording();
    let page = answer(ctx, &store, &query, &mut trace)?;
    let steps = trace
        .steps
        .into_iter()
        .map(|step| {
            RedisValue::Array(vec![
                RedisValue::SimpleStringStatic("step"),
                RedisValue::SimpleStringStatic(step.name),
                RedisValue::SimpleStringStatic("detail"),
                RedisValue::BulkString(step.detail),
                RedisValue::SimpleStringStatic("estimated"),
                integer(step.estimated),
                RedisValue::SimpleStringStatic("actual"),
                integer(step.actual),
                RedisValue::SimpleStringStatic("time_us"),
                integer(step.micros),
            ])
        })
        .collect();
    Ok(RedisValue::Array(vec![
        RedisValue::SimpleStringStatic("total"),
        integer(page.total),
        RedisValue::SimpleStringStatic("plan"),
        RedisValue::Array(steps),
    ]))
}

/// The route of one query: from the installation's in-memory index when it is ready for
/// the query, otherwise from the keyspace (the trace says why).
fn answer(
    ctx: &Context,
    store: &KeyspaceStore,
    query: &Query,
    trace: &mut Trace,
) -> Result<Page, CrmError> {
    let started = Instant::now();
    let forced = match config::index_plan() {
        PlanSetting::Auto => None,
        PlanSetting::Forced(kind) => Some(kind),
        PlanSetting::Keyspace => {
            if !config::index_enabled() {
                index::drop_all();
            }
            return keyspace(
                store,
                query,
                trace,
                started,
                "crm.index is no or crm.index-plan is keyspace",
            );
        }
    };
    match try_answer(ctx, store, query, forced, trace)? {
        Ok(page) => Ok(page),
        Err(reason) => keyspace(store, query, trace, started, reason),
    }
}

/// The answer of the keyspace path, with the reason the index did not answer.
fn keyspace(
    store: &KeyspaceStore,
    query: &Query,
    trace: &mut Trace,
    started: Instant,
    reason: &str,
) -> Result<Page, CrmError> {
    index::count_keyspace_answer();
    trace.record(
        "index",
        || format!("keyspace path: {reason}"),
        0,
        0,
        started,
    );
    keyspace_path::execute_traced(store, query, trace)
}

fn resp_reply(query: &Query, page: Page) -> RedisValue {
    let fields = query.returned_fields();
    let mut items = Vec::with_capacity(page.meetings.len() + 1);
    items.push(integer(page.total));
    items.extend(page.meetings.into_iter().map(|(id, values)| {
        let values = values
            .into_iter()
            .map(|value| value.map_or(RedisValue::Null, RedisValue::StringBuffer));
        let returned = if query.returns.is_some() {
            // RETURN: the named fields as field/value pairs.
            let pairs = fields
                .iter()
                .zip(values)
                .flat_map(|(field, value)| [RedisValue::StringBuffer(field.to_vec()), value])
                .collect();
            RedisValue::Array(pairs)
        } else {
            values.into_iter().next().unwrap_or(RedisValue::Null)
        };
        RedisValue::Array(vec![RedisValue::StringBuffer(id), returned])
    }));
    RedisValue::Array(items)
}

/// The page as one JSON document, keys in the documented order. `details` that is valid
/// JSON is embedded verbatim (the application's own formatting), anything else as a
/// string, so a bad value never breaks the document; other fields are strings; bytes that
/// are not UTF-8 are replaced (JSON carries text only).
fn json_reply(query: &Query, page: &Page) -> String {
    let fields = query.returned_fields();
    let mut out = format!("{{\"total\":{},\"meetings\":[", page.total);
    for (index, (id, values)) in page.meetings.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str("{\"id\":");
        out.push_str(&json_string(id));
        for (field, value) in fields.iter().zip(values) {
            out.push(',');
            out.push_str(&json_string(field));
            out.push(':');
            match value {
                None => out.push_str("null"),
                Some(bytes) if *field == DETAILS_FIELD && is_json(bytes) => {
                    out.push_str(&String::from_utf8_lossy(bytes));
                }
                Some(bytes) => out.push_str(&json_string(bytes)),
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

fn json_string(bytes: &[u8]) -> String {
    serde_json::Value::String(text(bytes)).to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
