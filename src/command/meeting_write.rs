//! `CRM.MEETING.SET <installation> <id> <field> <value> [<field> <value> ...]` (reply 1 when
//! created, 0 when updated) and `CRM.MEETING.DEL <installation> <id>` (reply 1 or 0).

use redis_module::{Context, RedisValue};

use crate::config;
use crate::core::write::{delete_meeting, parse_meeting_del, parse_meeting_set, set_meeting};
use crate::error::CrmError;
use crate::store::access::KeyGuard;
use crate::store::indexes;
use crate::store::keyspace::KeyspaceStore;

pub fn meeting_set(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let write = parse_meeting_set(args)?;
    let guard = KeyGuard::for_caller(ctx, &write.installation)?;
    let store = KeyspaceStore::new(ctx, config::key_templates()?, guard);
    let schema = config::schema()?;
    let mut created = false;
    indexes::write(ctx, &write.installation, &write.id, || {
        let (new, effects) = set_meeting(&store, &write, &schema)?;
        created = new;
        Ok(effects)
    })?;
    Ok(RedisValue::Integer(i64::from(created)))
}

pub fn meeting_del(ctx: &Context, args: &[&[u8]]) -> Result<RedisValue, CrmError> {
    let (installation, id) = parse_meeting_del(args)?;
    let guard = KeyGuard::for_caller(ctx, &installation)?;
    let store = KeyspaceStore::new(ctx, config::key_templates()?, guard);
    let schema = config::schema()?;
    let mut deleted = false;
    indexes::write(ctx, &installation, &id, || {
        let (existed, effects) = delete_meeting(&store, &installation, &id, &schema)?;
        deleted = existed;
        Ok(effects)
    })?;
    Ok(RedisValue::Integer(i64::from(deleted)))
}
