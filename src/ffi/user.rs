//! ACL users: the name of the user calling a command, and a user handle to check key
//! permissions against.

use std::os::raw::c_int;

use redis_module::{raw, Context};

use super::api;
use super::string::ModuleString;
use crate::error::CrmError;

/// What the module is about to do with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

/// The name of the user calling the command; `None` without a client (or ACL support).
pub fn caller_name(ctx: &Context) -> Option<Vec<u8>> {
    // SAFETY: a live context; the function table is loaded.
    let name = unsafe { raw::RedisModule_GetCurrentUserName.map(|get| get(ctx.ctx)) }?;
    if name.is_null() {
        return None;
    }
    // SAFETY: GetCurrentUserName hands over a new string that the caller frees.
    Some(unsafe { ModuleString::adopt(name) }.to_bytes())
}

/// A user handle, freed on drop.
pub struct ModuleUser(*mut raw::RedisModuleUser);

impl ModuleUser {
    /// The user named `name`; `None` when no such user exists (any more).
    pub fn find(name: &[u8]) -> Result<Option<Self>, CrmError> {
        let find = api!(RedisModule_GetModuleUserFromUserName);
        let name = ModuleString::new(name)?;
        // SAFETY: a live name; the user returned is ours to free (Drop).
        let user = unsafe { find(name.as_ptr()) };
        Ok((!user.is_null()).then_some(ModuleUser(user)))
    }

    /// Whether the user may `need` the key.
    pub fn may(&self, key_name: &ModuleString, need: Need) -> Result<bool, CrmError> {
        let flags = match need {
            Need::Read => raw::REDISMODULE_CMD_KEY_ACCESS,
            Need::Write => {
                raw::REDISMODULE_CMD_KEY_INSERT
                    | raw::REDISMODULE_CMD_KEY_DELETE
                    | raw::REDISMODULE_CMD_KEY_UPDATE
            }
        };
        let check = api!(RedisModule_ACLCheckKeyPermissions);
        // SAFETY: a live user and key name.
        let status = unsafe { check(self.0, key_name.as_ptr(), flags as c_int) };
        Ok(status == raw::REDISMODULE_OK as c_int)
    }
}

impl Drop for ModuleUser {
    fn drop(&mut self) {
        // SAFETY: we own the user handle.
        if let Some(free) = unsafe { raw::RedisModule_FreeModuleUser } {
            unsafe { free(self.0) };
        }
    }
}
