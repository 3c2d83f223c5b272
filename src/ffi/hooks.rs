//! What the server calls the module for outside its commands and key-space notifications:
//! the INFO section, a command filter (every command, before it runs), and the server
//! events that replace the data of a database. Each callback is a plain Rust `fn` kept
//! here; the trampolines contain any panic.

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use redis_module::{raw, Context, InfoContext};

use super::string::copy_bytes;

static INFO: OnceLock<fn(&InfoContext)> = OnceLock::new();
static FILTER: OnceLock<fn(&FilteredCommand)> = OnceLock::new();
static DATA_REPLACED: OnceLock<fn()> = OnceLock::new();

/// Makes `render` the module's INFO callback (replacing the crate's default); it writes
/// through the crate's INFO builder.
pub fn register_info(ctx: &Context, render: fn(&InfoContext)) -> Result<(), String> {
    let _ = INFO.set(render);
    // SAFETY: the function table is loaded; called from OnLoad with the module's context.
    let register = unsafe { raw::RedisModule_RegisterInfoFunc }.ok_or("no INFO callbacks")?;
    if unsafe { register(ctx.ctx, Some(info_trampoline)) } != raw::REDISMODULE_OK as c_int {
        return Err("cannot register the INFO section".into());
    }
    Ok(())
}

extern "C" fn info_trampoline(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: c_int) {
    if let Some(render) = INFO.get() {
        let _ = catch_unwind(AssertUnwindSafe(|| render(&InfoContext::new(ctx))));
    }
}

/// A command as a filter sees it, before it runs; its arguments are read, never changed.
pub struct FilteredCommand(*mut raw::RedisModuleCommandFilterCtx);

impl FilteredCommand {
    /// The number of words, the command name included.
    pub fn word_count(&self) -> usize {
        // SAFETY: the filter context is valid during the callback.
        let count =
            unsafe { raw::RedisModule_CommandFilterArgsCount.map_or(0, |count| count(self.0)) };
        usize::try_from(count).unwrap_or(0)
    }

    /// Word `pos` (0 is the command name); empty past the end.
    pub fn arg(&self, pos: usize) -> Vec<u8> {
        let Ok(pos) = c_int::try_from(pos) else {
            return Vec::new();
        };
        // SAFETY: the filter context is valid during the callback; the argument is lent.
        match unsafe { raw::RedisModule_CommandFilterArgGet } {
            Some(get) => copy_bytes(unsafe { get(self.0, pos) }),
            None => Vec::new(),
        }
    }
}

/// Calls `on_command` for every command the server runs (not the module's own calls).
/// It runs before ACL checks and on the hot path of every command: keep it cheap.
pub fn register_command_filter(
    ctx: &Context,
    on_command: fn(&FilteredCommand),
) -> Result<(), String> {
    let _ = FILTER.set(on_command);
    // SAFETY: the function table is loaded; called from OnLoad with the module's context.
    let register = unsafe { raw::RedisModule_RegisterCommandFilter }.ok_or("no command filters")?;
    let filter = unsafe {
        register(
            ctx.ctx,
            Some(filter_trampoline),
            raw::REDISMODULE_CMDFILTER_NOSELF as c_int,
        )
    };
    if filter.is_null() {
        return Err("cannot register the command filter".into());
    }
    Ok(())
}

extern "C" fn filter_trampoline(fctx: *mut raw::RedisModuleCommandFilterCtx) {
    if let Some(on_command) = FILTER.get() {
        let _ = catch_unwind(AssertUnwindSafe(|| on_command(&FilteredCommand(fctx))));
    }
}

/// Calls `replaced` whenever the data of a database is replaced behind the module's back:
/// FLUSHDB/FLUSHALL, SWAPDB, loading (RDB, AOF, a replica's full sync, DEBUG RELOAD) and a
/// replica's asynchronous load (where the server has that event).
pub fn on_data_replaced(ctx: &Context, replaced: fn()) -> Result<(), String> {
    let _ = DATA_REPLACED.set(replaced);
    // SAFETY: the function table is loaded.
    let subscribe = unsafe { raw::RedisModule_SubscribeToServerEvent }
        .ok_or("no server events on this server")?;
    for id in [
        raw::REDISMODULE_EVENT_FLUSHDB,
        raw::REDISMODULE_EVENT_LOADING,
        raw::REDISMODULE_EVENT_SWAPDB,
        raw::REDISMODULE_EVENT_REPL_ASYNC_LOAD,
    ] {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: called from OnLoad with the module's context; the callback lives forever.
        if unsafe { subscribe(ctx.ctx, event, Some(event_trampoline)) }
            != raw::REDISMODULE_OK as c_int
            && id != raw::REDISMODULE_EVENT_REPL_ASYNC_LOAD
        {
            return Err(format!("cannot subscribe to server event {id}"));
        }
    }
    Ok(())
}

extern "C" fn event_trampoline(
    _ctx: *mut raw::RedisModuleCtx,
    _event: raw::RedisModuleEvent,
    _subevent: u64,
    _data: *mut c_void,
) {
    if let Some(replaced) = DATA_REPLACED.get() {
        let _ = catch_unwind(replaced);
    }
}
