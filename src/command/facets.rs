//! `CRM.FACETS <installation> <user> [FILTER f v]... [EXCLUDE f v]... [RANGE f min max]...
//! FIELD f n v... [FIELD f n v...]... [FORMAT JSON|RESP]`: the matches of the same clauses
//! as CRM.MEETINGS (client security included), counted in each named value's set.
//!
//! Reply: `[total, [field, [value, count, ...]], ...]` (the same under RESP2 and RESP3);
//! with FORMAT JSON, one bulk string `{"total":N,"facets":{"status":{"open":12}}}`.

use redis_module::{Context, RedisValue};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::meetings::answer;
use super::{caller_store, integer};
use crate::config;
use crate::core::page::Page;
use crate::core::query::{check_fields, parse_facets, Format, Query};
use crate::core::trace::Trace;
use crate::error::CrmError;

pub fn facets(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let query = parse_facets(args)?;
    check_fields(&query, &config::query_fields()?)?;
    let store = caller_store(ctx, &query.installation)?;
    let Some(page) = answer(ctx, &store, &query, &mut Trace::default())? else {
        // The client waits for the index; it runs the command again when woken.
        return Ok(RedisValue::NoReply);
    };
    Ok(match query.format {
        Format::Resp => resp_reply(&query, &page),
        Format::Json => RedisValue::BulkString(json_reply(&query, &page)?),
    })
}

/// Each FIELD with its values and their counts, in the order named.
fn counted<'a>(query: &'a Query, page: &'a Page) -> impl Iterator<Item = Counted<'a>> {
    query.facets.iter().enumerate().map(|(at, facet)| Counted {
        field: &facet.field,
        values: facet
            .values
            .iter()
            .enumerate()
            .map(|(n, value)| {
                let count = page
                    .facets
                    .get(at)
                    .and_then(|counts| counts.get(n))
                    .copied()
                    .unwrap_or(0);
                (value.as_slice(), count)
            })
            .collect(),
    })
}

struct Counted<'a> {
    field: &'a [u8],
    values: Vec<(&'a [u8], u64)>,
}

fn resp_reply(query: &Query, page: &Page) -> RedisValue {
    let mut items = vec![integer(page.total)];
    items.extend(counted(query, page).map(|facet| {
        let counts = facet
            .values
            .into_iter()
            .flat_map(|(value, count)| [RedisValue::StringBuffer(value.to_vec()), integer(count)])
            .collect();
        RedisValue::Array(vec![
            RedisValue::StringBuffer(facet.field.to_vec()),
            RedisValue::Array(counts),
        ])
    }));
    RedisValue::Array(items)
}

/// `{"total":N,"facets":{"<field>":{"<value>":N,...},...}}`, fields and values in the order
/// named; bytes that are not UTF-8 are replaced (JSON carries text only).
fn json_reply(query: &Query, page: &Page) -> Result<String, CrmError> {
    let document = JsonFacets { query, page };
    serde_json::to_string(&document)
        .map_err(|e| CrmError::Internal(format!("cannot write the JSON reply: {e}")))
}

struct JsonFacets<'a> {
    query: &'a Query,
    page: &'a Page,
}

struct JsonCounts<'a>(&'a [(&'a [u8], u64)]);

impl Serialize for JsonFacets<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let facets: Vec<Counted> = counted(self.query, self.page).collect();
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("total", &self.page.total)?;
        map.serialize_entry("facets", &JsonFields(&facets))?;
        map.end()
    }
}

struct JsonFields<'a>(&'a [Counted<'a>]);

impl Serialize for JsonFields<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for facet in self.0 {
            map.serialize_entry(
                &String::from_utf8_lossy(facet.field),
                &JsonCounts(&facet.values),
            )?;
        }
        map.end()
    }
}

impl Serialize for JsonCounts<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (value, count) in self.0 {
            map.serialize_entry(&String::from_utf8_lossy(value), count)?;
        }
        map.end()
    }
}
