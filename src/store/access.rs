//! Who may touch which key. Every key the module derives passes here before it is read or
//! written: the calling user's ACL key permissions are checked (the server checks only the
//! keys a command declares, and this module's keys are all derived), and in cluster mode
//! the key must hash to the slot the command was routed by (its installation), since a
//! key of another slot would read as missing and give a silently partial answer.

use std::os::raw::c_int;
use std::ptr;

use redis_module::{raw, Context, ContextFlags};

use super::redis_key::ModuleString;
use crate::error::{printable, CrmError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

/// The calling user (freed on drop) and, in cluster mode, the routing slot.
pub struct KeyGuard {
    user: *mut raw::RedisModuleUser,
    routing: Option<(u16, Vec<u8>)>,
}

/// The name of the user calling the command; `None` without a client (or ACL support).
pub fn caller(ctx: &Context) -> Option<Vec<u8>> {
    // SAFETY: a live context; the returned name is ours to free (ModuleString does).
    let name = unsafe { raw::RedisModule_GetCurrentUserName.map(|get| get(ctx.ctx)) }?;
    if name.is_null() {
        return None;
    }
    Some(ModuleString::adopt(name).to_bytes())
}

impl KeyGuard {
    /// The guard of a command called by a client: its user, its routing key.
    pub fn for_caller(ctx: &Context, routing_key: &[u8]) -> Result<Self, CrmError> {
        Self::new(ctx, caller(ctx).as_deref(), routing_key)
    }

    /// The guard for a named user (a job that outlives its command keeps the name), or
    /// for no user at all (nothing to check permissions against).
    pub fn new(
        ctx: &Context,
        user_name: Option<&[u8]>,
        routing_key: &[u8],
    ) -> Result<Self, CrmError> {
        let mut guard = Self::unchecked(ctx, routing_key);
        let Some(user_name) = user_name else {
            return Ok(guard);
        };
        let find = unsafe { raw::RedisModule_GetModuleUserFromUserName }
            .ok_or_else(|| CrmError::Internal("no ACL support".into()))?;
        let name = ModuleString::new(user_name)?;
        // SAFETY: a live name; the user is freed in Drop.
        let user = unsafe { find(name.as_ptr()) };
        if user.is_null() {
            return Err(CrmError::NoPermission {
                key: b"(the user no longer exists)".to_vec(),
            });
        }
        guard.user = user;
        Ok(guard)
    }

    fn unchecked(ctx: &Context, routing_key: &[u8]) -> Self {
        let routing = ctx
            .get_flags()
            .contains(ContextFlags::CLUSTER)
            .then(|| (key_slot(routing_key), routing_key.to_vec()));
        KeyGuard {
            user: ptr::null_mut(),
            routing,
        }
    }

    /// `Ok` when the user may `need` the key and it lives in the routing slot. `setting`
    /// names the template the key came from, for the error.
    pub fn check(
        &self,
        key: &[u8],
        key_name: &ModuleString,
        setting: &str,
        need: Need,
    ) -> Result<(), CrmError> {
        if let Some((slot, installation)) = &self.routing {
            let key_slot = key_slot(key);
            if key_slot != *slot {
                return Err(CrmError::CrossSlot(format!(
                    "key '{}' from crm.{setting} is in slot {key_slot}, not in slot {slot} of installation '{}': put <installation> in a hash tag, as in {{<installation>}}",
                    printable(key),
                    printable(installation)
                )));
            }
        }
        if self.user.is_null() {
            return Ok(());
        }
        let flags = match need {
            Need::Read => raw::REDISMODULE_CMD_KEY_ACCESS,
            Need::Write => {
                raw::REDISMODULE_CMD_KEY_INSERT
                    | raw::REDISMODULE_CMD_KEY_DELETE
                    | raw::REDISMODULE_CMD_KEY_UPDATE
            }
        };
        let check = unsafe { raw::RedisModule_ACLCheckKeyPermissions }
            .ok_or_else(|| CrmError::Internal("no ACL support".into()))?;
        // SAFETY: a live user and key name.
        let status = unsafe { check(self.user, key_name.as_ptr(), flags as c_int) };
        if status != raw::REDISMODULE_OK as c_int {
            return Err(CrmError::NoPermission { key: key.to_vec() });
        }
        Ok(())
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        if !self.user.is_null() {
            // SAFETY: we own the user handle.
            if let Some(free) = unsafe { raw::RedisModule_FreeModuleUser } {
                unsafe { free(self.user) };
            }
        }
    }
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| rest.get(..close)).flatten()
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"10"), 247);
        assert_eq!(key_slot(b"12"), 8373);
        assert_eq!(key_slot(b"{10}:meeting:5"), 247);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{}foo"), key_slot(b"{}foo"));
        assert_eq!(key_slot(b"a{}b{c}"), key_slot(b"a{}b{c}"));
        assert_eq!(key_slot(b"x{user1000}.following"), key_slot(b"user1000"));
    }
}
