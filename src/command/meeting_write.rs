//! `CRM.MEETING.SET <installation> <id> <field> <value> [<field> <value> ...]` (reply 1 when
//! created, 0 when updated) and `CRM.MEETING.DEL <installation> <id>` (reply 1 or 0): parse,
//! apply the write's effects to the keyspace and to the installation's index, reply.

use redis_module::{Context, RedisValue};

use super::caller_store;
use crate::config;
use crate::core::write::{delete_meeting, parse_meeting_del, parse_meeting_set, set_meeting};
use crate::error::CrmError;
use crate::store::index::writes::write_through;

pub fn meeting_set(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let write = parse_meeting_set(args)?;
    let store = caller_store(ctx, &write.installation)?;
    let schema = config::schema()?;
    let mut created = false;
    write_through(ctx, &store, &write.installation, &write.id, || {
        let (new, effects) = set_meeting(&store, &write, &schema)?;
        created = new;
        Ok(effects)
    })?;
    Ok(RedisValue::Integer(i64::from(created)))
}

pub fn meeting_del(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let (installation, id) = parse_meeting_del(args)?;
    let store = caller_store(ctx, &installation)?;
    let schema = config::schema()?;
    let mut deleted = false;
    write_through(ctx, &store, &installation, &id, || {
        let (existed, effects) = delete_meeting(&store, &installation, &id, &schema)?;
        deleted = existed;
        Ok(effects)
    })?;
    Ok(RedisValue::Integer(i64::from(deleted)))
}
