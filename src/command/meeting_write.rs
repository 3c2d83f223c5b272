//! `CRM.MEETING.SET <installation> <id> <field> <value> [<field> <value> ...]` (reply 1 when
//! created, 0 when updated), `CRM.MEETING.MSET <installation> <id> <count> <field> <value>
//! ... [<id> <count> ...]` (the same for many meetings, one reply each) and
//! `CRM.MEETING.DEL <installation> <id>` (reply 1 or 0): parse, apply the write's effects to
//! the keyspace and to the installation's index, reply.

use redis_module::{Context, RedisValue};

use super::caller_store;
use crate::config;
use crate::core::types::Bytes;
use crate::core::write::{
    delete_meeting, parse_meeting_del, parse_meeting_mset, parse_meeting_set, set_meetings,
    MeetingWrite,
};
use crate::error::CrmError;
use crate::store::index::writes::write_through;

pub fn meeting_set(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let created = write_meetings(ctx, vec![parse_meeting_set(args)?])?;
    Ok(created.into_iter().next().unwrap_or(RedisValue::Integer(0)))
}

pub fn meeting_mset(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    Ok(RedisValue::Array(write_meetings(
        ctx,
        parse_meeting_mset(args)?,
    )?))
}

/// Writes meetings of one installation in one step: for each, 1 when it was created.
fn write_meetings(ctx: &Context, writes: Vec<MeetingWrite>) -> Result<Vec<RedisValue>, CrmError> {
    let Some(installation) = writes.first().map(|write| write.installation.clone()) else {
        return Ok(Vec::new());
    };
    let store = caller_store(ctx, &installation)?;
    let schema = config::schema()?;
    let ids: Vec<Bytes> = writes.iter().map(|write| write.id.clone()).collect();
    let ids: Vec<&[u8]> = ids.iter().map(Vec::as_slice).collect();
    let mut created = Vec::with_capacity(writes.len());
    write_through(ctx, &store, &installation, &ids, || {
        let written = set_meetings(&store, writes, &schema)?;
        let (new, effects): (Vec<bool>, Vec<_>) = written.into_iter().unzip();
        created = new;
        Ok(effects)
    })?;
    Ok(created
        .into_iter()
        .map(|new| RedisValue::Integer(i64::from(new)))
        .collect())
}

pub fn meeting_del(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let (installation, id) = parse_meeting_del(args)?;
    let store = caller_store(ctx, &installation)?;
    let schema = config::schema()?;
    let mut deleted = false;
    write_through(ctx, &store, &installation, &[&id], || {
        let (existed, effects) = delete_meeting(&store, &installation, &id, &schema)?;
        deleted = existed;
        Ok(vec![effects])
    })?;
    Ok(RedisValue::Integer(i64::from(deleted)))
}
