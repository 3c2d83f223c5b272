//! `CRM.MEETINGS <installation> <user> [FILTER f v]... [SORTBY f [ASC|DESC]] [LIMIT off cnt]`
//!
//! Reply: `[total, [id, details], ...]`, the same under RESP2 and RESP3.

use redis_module::{Context, RedisValue};

use crate::config;
use crate::core::{execute, parse_query, Page};
use crate::error::CrmError;
use crate::store::access::KeyGuard;
use crate::store::keyspace::KeyspaceStore;

pub fn meetings(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let query = parse_query(args, config::max_page())?;
    let guard = KeyGuard::for_caller(ctx, &query.installation)?;
    let store = KeyspaceStore::new(ctx, config::key_templates()?, guard);
    Ok(reply(execute(&store, &query)?))
}

fn reply(page: Page) -> RedisValue {
    let mut items = Vec::with_capacity(page.meetings.len() + 1);
    items.push(RedisValue::Integer(
        i64::try_from(page.total).unwrap_or(i64::MAX),
    ));
    items.extend(page.meetings.into_iter().map(|(id, details)| {
        RedisValue::Array(vec![
            RedisValue::StringBuffer(id),
            details.map_or(RedisValue::Null, RedisValue::StringBuffer),
        ])
    }));
    RedisValue::Array(items)
}
