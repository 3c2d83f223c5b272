//! The one room for raw FFI: every call of the module API through a raw pointer, and every
//! raw pointer the module keeps, behind safe wrappers. `unsafe` is denied everywhere else
//! in the crate (see `lib.rs`).
//!
//! Where the redis-module crate has a safe wrapper that fits, the module uses it instead
//! (contexts, calls, timers, blocked clients, the INFO builder, configuration
//! registration). What is here has none that fits:
//! - key handles that outlive nothing: [`key::ReadKey`] reads sets, hashes and sorted
//!   sets without a command call per element; the crate's `ScanKeyCursor` owns its key,
//!   but a loading index reopens its key every slice (a key handle may not outlive one
//!   callback) and keeps only the cursor ([`key::ScanCursor`]);
//! - ACL checks against a user looked up once per command ([`user::ModuleUser`]); the
//!   crate's `acl_check_key_permission` looks the user up again for every key;
//! - command info with key specs and arguments on Redis 7.0 ([`command_info`]); the
//!   crate's `#[command]` macro needs 7.2;
//! - an allocator that counts the bytes the module holds ([`alloc`]), which the crate's
//!   does not;
//! - the command filter, the server events SWAPDB, REPL_ASYNC_LOAD and client changes, and
//!   key-space notifications of classes chosen at load ([`hooks`]): the crate does not wrap
//!   the first ones, and subscribes notification classes fixed at compile time; the names
//!   of the commands the filter follows, told apart in a few instructions ([`verb`]).

pub mod alloc;
pub mod block;
pub mod command_info;
pub mod hooks;
pub mod key;
pub mod string;
pub mod user;
pub mod verb;

use redis_module::{raw, Context};

use crate::error::CrmError;

/// A module API function pointer, or an internal error when the server lacks it.
macro_rules! api {
    ($name:ident) => {
        // SAFETY: the function table is written once by RedisModule_Init, before any command runs.
        unsafe { redis_module::raw::$name }.ok_or_else(|| {
            crate::error::CrmError::Internal(
                concat!(stringify!($name), " is not available").to_string(),
            )
        })?
    };
}
pub(crate) use api;

/// Loads the `crm.*` values of the configuration file (or the defaults) into the settings
/// registered before; called once from OnLoad.
pub fn load_configs(ctx: &Context) -> Result<(), String> {
    // SAFETY: the function table is loaded before OnLoad runs.
    let load = unsafe { raw::RedisModule_LoadConfigs }
        .ok_or("this server has no module configurations (Redis 7.0 or later is needed)")?;
    // SAFETY: called from OnLoad with the module's context, after every registration.
    if unsafe { load(ctx.ctx) } != raw::REDISMODULE_OK as i32 {
        return Err("the crm.* values in the configuration file are invalid".to_string());
    }
    Ok(())
}

/// The database the context works on.
pub fn selected_db(ctx: &Context) -> Result<i32, CrmError> {
    let get = api!(RedisModule_GetSelectedDb);
    // SAFETY: a live context.
    Ok(unsafe { get(ctx.ctx) })
}

/// Makes the context work on `db` (timer callbacks start on database 0).
pub fn select_db(ctx: &Context, db: i32) -> Result<(), CrmError> {
    let select = api!(RedisModule_SelectDb);
    // SAFETY: a live context; the server checks the number.
    if unsafe { select(ctx.ctx, db) } != raw::REDISMODULE_OK as i32 {
        return Err(CrmError::Internal(format!("cannot select database {db}")));
    }
    Ok(())
}
