//! `CRM.MEETINGS <installation> <user> [FILTER f v]... [SORTBY f [ASC|DESC]] [LIMIT off cnt]
//! [RETURN n f...] [FORMAT JSON|RESP]` and `CRM.EXPLAIN` with the same arguments.
//!
//! Reply: `[total, [id, details], ...]` (the same under RESP2 and RESP3); with RETURN,
//! `[total, [id, [field, value, ...]], ...]`; with FORMAT JSON, one bulk string
//! `{"total":N,"meetings":[{"id":"11","details":{...}}]}`.

use std::time::Instant;

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use super::{caller_store, facets, integer, run_guarded, spec, stats};
use crate::config;
use crate::core::index::plan::PlanSetting;
use crate::core::keyspace_path;
use crate::core::page::Page;
use crate::core::query::{check_fields, parse_query, Format, Query};
use crate::core::trace::Trace;
use crate::core::types::DETAILS_FIELD;
use crate::error::CrmError;
use crate::ffi::block::{is_resumed, may_block};
use crate::store::index;
use crate::store::index::answer::{try_answer, Route};
use crate::store::index::waiting;
use crate::store::keyspace::KeyspaceStore;

/// While its index loads, a query reading at most this many meeting hashes (see
/// [`keyspace_path::estimated_reads`]) is answered from the keyspace, in about a
/// millisecond; a bigger one waits for the index.
const SMALL_QUERY_READS: usize = 300;
/// The same where the client cannot wait (MULTI/EXEC, scripts): a few milliseconds at
/// most; a bigger query is answered `LOADING ...`.
const SMALL_QUERY_READS_UNBLOCKABLE: usize = 1500;

/// The query of CRM.MEETINGS and CRM.EXPLAIN, checked against the settings.
fn query_of(args: &[&[u8]]) -> Result<Query, CrmError> {
    let query = parse_query(args, config::max_page())?;
    check_fields(&query, &config::query_fields()?)?;
    Ok(query)
}

pub fn meetings(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let query = query_of(args)?;
    let store = caller_store(ctx, &query.installation)?;
    let Some(page) = answer(ctx, &store, &query, &mut Trace::default())? else {
        // The client waits for the index; it runs the command again when woken.
        return Ok(RedisValue::NoReply);
    };
    stats::rows_returned(page.meetings.len());
    Ok(match query.format {
        Format::Resp => resp_reply(&query, page),
        Format::Json => RedisValue::BulkString(json_reply(&query, &page)?),
    })
}

/// The plan of the same query, each step with its estimated and actual rows and time.
pub fn explain(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let query = query_of(args)?;
    let store = caller_store(ctx, &query.installation)?;
    let mut trace = Trace::recording();
    let Some(page) = answer(ctx, &store, &query, &mut trace)? else {
        return Ok(RedisValue::NoReply);
    };
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

/// A blocked `CRM.MEETINGS`, `CRM.EXPLAIN` or `CRM.FACETS` woken: its index is ready (or
/// gone), so it runs again; it cannot block a second time.
pub fn resume(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let name = args.first().map(RedisString::to_string_lossy);
    let is = |command: &spec::CommandInfo| {
        name.as_ref()
            .is_some_and(|name| name.eq_ignore_ascii_case(command.name))
    };
    if is(&spec::EXPLAIN) {
        run_guarded(ctx, args, &spec::EXPLAIN, explain)
    } else if is(&spec::FACETS) {
        run_guarded(ctx, args, &spec::FACETS, facets::facets)
    } else {
        run_guarded(ctx, args, &spec::MEETINGS, meetings)
    }
}

/// A blocked query past `crm.index-wait-ms`: `LOADING ...` with the progress, to retry.
pub fn wait_timed_out(ctx: &Context, args: &[RedisString]) -> RedisResult {
    let installation = args.get(1).map_or(&[][..], RedisString::as_slice);
    Err(RedisError::String(
        waiting::timed_out(ctx, installation).to_string(),
    ))
}

/// The route of one query: from the installation's in-memory index when it is ready for
/// the query; while it loads, the client waits for it (`None`: no reply yet), unless the
/// query is small; otherwise from the keyspace (the trace says why).
pub(super) fn answer(
    ctx: &Context,
    store: &KeyspaceStore,
    query: &Query,
    trace: &mut Trace,
) -> Result<Option<Page>, CrmError> {
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
            )
            .map(Some);
        }
    };
    match try_answer(ctx, store, query, forced, !is_resumed(ctx), trace)? {
        Route::Page(page) => Ok(Some(page)),
        Route::Keyspace(reason) => keyspace(store, query, trace, started, reason).map(Some),
        Route::Loading => {
            let can_wait = may_block(ctx) && !config::index_wait().is_zero();
            let small = if can_wait {
                SMALL_QUERY_READS
            } else {
                SMALL_QUERY_READS_UNBLOCKABLE
            };
            if keyspace_path::estimated_reads(store, query)? <= small {
                let reason = "the index is loading and the query is small";
                keyspace(store, query, trace, started, reason).map(Some)
            } else if can_wait {
                waiting::wait(ctx, query, config::index_wait())?;
                Ok(None)
            } else {
                Err(waiting::loading_error(ctx, &query.installation))
            }
        }
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

/// The page as one JSON document, keys in the documented order: `total`, then each
/// meeting's `id` and its returned fields (a field named `id` is not repeated: the key is
/// the meeting's id). `details` that is valid JSON is embedded verbatim (the application's
/// own formatting), anything else as a string, so a bad value never breaks the document;
/// other fields are strings; bytes that are not UTF-8 are replaced (JSON carries text only).
fn json_reply(query: &Query, page: &Page) -> Result<String, CrmError> {
    let document = JsonPage {
        fields: &query.returned_fields(),
        page,
    };
    serde_json::to_string(&document)
        .map_err(|e| CrmError::Internal(format!("cannot write the JSON reply: {e}")))
}

struct JsonPage<'a> {
    fields: &'a [&'a [u8]],
    page: &'a Page,
}

struct JsonMeeting<'a> {
    fields: &'a [&'a [u8]],
    id: &'a [u8],
    values: &'a [Option<Vec<u8>>],
}

impl Serialize for JsonPage<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("total", &self.page.total)?;
        let meetings: Vec<JsonMeeting> = self
            .page
            .meetings
            .iter()
            .map(|(id, values)| JsonMeeting {
                fields: self.fields,
                id,
                values,
            })
            .collect();
        map.serialize_entry("meetings", &meetings)?;
        map.end()
    }
}

impl Serialize for JsonMeeting<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("id", &String::from_utf8_lossy(self.id))?;
        for (field, value) in self.fields.iter().zip(self.values) {
            if *field == ID_KEY {
                continue;
            }
            let key = String::from_utf8_lossy(field);
            match value {
                None => map.serialize_entry(&key, &())?,
                Some(bytes) => match serde_json::from_slice::<&RawValue>(bytes) {
                    Ok(raw) if *field == DETAILS_FIELD => map.serialize_entry(&key, raw)?,
                    _ => map.serialize_entry(&key, &String::from_utf8_lossy(bytes))?,
                },
            }
        }
        map.end()
    }
}

/// The key of a meeting's id in a JSON reply.
const ID_KEY: &[u8] = b"id";
