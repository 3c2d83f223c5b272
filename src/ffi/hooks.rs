//! What the server calls the module for outside its commands: key-space notifications of
//! the classes asked for, the INFO section, a command filter (every command, before it
//! runs), the server events that replace the data of a database, and work run on the next
//! turn of the event loop. Each callback is a plain Rust `fn` kept here; the trampolines
//! contain any panic.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use redis_module::{raw, Context, InfoContext, NotifyEvent};

use super::string::lend_bytes;

static INFO: OnceLock<fn(&InfoContext)> = OnceLock::new();
static KEY_EVENT: OnceLock<fn(&Context, &str, &[u8])> = OnceLock::new();
static FILTER: OnceLock<fn(&FilteredCommand)> = OnceLock::new();
static DATA_REPLACED: OnceLock<fn(DataEvent)> = OnceLock::new();
/// End-of-turn callbacks added and not yet run: the module must not unload under them.
static SOON_PENDING: AtomicUsize = AtomicUsize::new(0);
/// The context [`run_soon`] work runs with: detached from any client, made once at load.
static SOON_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(ptr::null_mut());

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

/// The notification classes this server has, of those in `wanted`.
pub fn available_classes(wanted: NotifyEvent) -> NotifyEvent {
    wanted.intersection(raw::get_keyspace_notification_flags_all())
}

/// Calls `on_event(ctx, event, key)` for each key-space notification of `classes` (the
/// crate's `event_handlers` subscribes a fixed set at compile time; the classes here
/// depend on what the server lets the command filter stand in for).
pub fn on_key_events(
    ctx: &Context,
    classes: NotifyEvent,
    on_event: fn(&Context, &str, &[u8]),
) -> Result<(), String> {
    let _ = KEY_EVENT.set(on_event);
    // SAFETY: the function table is loaded; called from OnLoad with the module's context.
    let subscribe = unsafe { raw::RedisModule_SubscribeToKeyspaceEvents }
        .ok_or("no key-space notifications")?;
    let classes = c_int::try_from(classes.bits()).map_err(|e| e.to_string())?;
    if unsafe { subscribe(ctx.ctx, classes, Some(key_event_trampoline)) }
        != raw::REDISMODULE_OK as c_int
    {
        return Err("cannot subscribe to key-space notifications".into());
    }
    Ok(())
}

extern "C" fn key_event_trampoline(
    ctx: *mut raw::RedisModuleCtx,
    _class: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    if let Some(on_event) = KEY_EVENT.get() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the server passes a NUL-terminated event name and a live key name.
            let event = unsafe { CStr::from_ptr(event) }
                .to_str()
                .unwrap_or_default();
            on_event(&Context::new(ctx), event, lend_bytes(key));
        }));
    }
    raw::REDISMODULE_OK as c_int
}

/// Whether a command filter can name the client of a command (Redis 7.2 and later): the
/// commands a client queues in MULTI can then be told from the ones it runs.
pub fn filter_names_clients() -> bool {
    // SAFETY: the function table is loaded before any callback runs.
    unsafe { raw::RedisModule_CommandFilterGetClientId }.is_some()
}

/// The flags of client `id` (`REDISMODULE_CLIENTINFO_FLAG_*`), or `None` for a client
/// the server does not list (gone, or a script's).
fn client_flags(id: u64) -> Option<u64> {
    // SAFETY: the function table is loaded before any callback runs.
    let get = unsafe { raw::RedisModule_GetClientInfoById }?;
    let mut info = raw::RedisModuleClientInfo {
        version: 1,
        flags: 0,
        id: 0,
        addr: [0; 46],
        port: 0,
        db: 0,
    };
    // SAFETY: a version-1 structure the server fills in.
    let found = unsafe { get((&mut info as *mut raw::RedisModuleClientInfo).cast(), id) };
    (found == raw::REDISMODULE_OK as c_int).then_some(info.flags)
}

/// Whether client `id` is blocked: a command the server postponed (CLIENT PAUSE, a
/// failover) has not run yet. `false` for a client the server does not list.
pub fn client_is_blocked(id: u64) -> bool {
    client_flags(id)
        .is_some_and(|flags| flags & u64::from(raw::REDISMODULE_CLIENTINFO_FLAG_BLOCKED) != 0)
}

/// Whether client `id` is still connected.
pub fn client_exists(id: u64) -> bool {
    client_flags(id).is_some()
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

    /// The id of the client sending the command; `None` where the server cannot tell
    /// (Redis 7.0).
    pub fn client_id(&self) -> Option<u64> {
        // SAFETY: the filter context is valid during the callback.
        unsafe { raw::RedisModule_CommandFilterGetClientId }.map(|get| unsafe { get(self.0) })
    }

    /// Word `pos` (0 is the command name); empty past the end. Lent for the callback.
    pub fn arg(&self, pos: usize) -> &[u8] {
        let Ok(pos) = c_int::try_from(pos) else {
            return &[];
        };
        // SAFETY: the filter context is valid during the callback, and so are its
        // arguments: the filter reads them, never changes them.
        match unsafe { raw::RedisModule_CommandFilterArgGet } {
            Some(get) => lend_bytes(unsafe { get(self.0, pos) }),
            None => &[],
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

/// What happened to the data of the databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEvent {
    /// Replaced (or about to be): a flush, SWAPDB, the start of a load.
    Replaced,
    /// A load (RDB, AOF, full sync, DEBUG RELOAD) ended: the data is all there.
    Loaded,
}

/// Calls `on_event` whenever the data of a database is replaced behind the module's back:
/// FLUSHDB/FLUSHALL, SWAPDB, loading (RDB, AOF, a replica's full sync, DEBUG RELOAD) and a
/// replica's asynchronous load (where the server has that event), and when a load ends.
pub fn on_data_replaced(ctx: &Context, on_event: fn(DataEvent)) -> Result<(), String> {
    let _ = DATA_REPLACED.set(on_event);
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
    event: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    let loaded = event.id == raw::REDISMODULE_EVENT_LOADING
        && subevent == raw::REDISMODULE_SUBEVENT_LOADING_ENDED;
    let kind = if loaded {
        DataEvent::Loaded
    } else {
        DataEvent::Replaced
    };
    if let Some(on_event) = DATA_REPLACED.get() {
        let _ = catch_unwind(|| on_event(kind));
    }
}

/// Makes the context [`run_soon`] work runs with (database 0, no client).
pub fn register_run_soon(ctx: &Context) -> Result<(), String> {
    // SAFETY: the function table is loaded; called from OnLoad with the module's context.
    let detached = unsafe { raw::RedisModule_GetDetachedThreadSafeContext }
        .ok_or("no detached contexts on this server")?;
    let soon_ctx = unsafe { detached(ctx.ctx) };
    if soon_ctx.is_null() {
        return Err("cannot make a detached context".to_string());
    }
    SOON_CTX.store(soon_ctx, Ordering::Relaxed);
    Ok(())
}

/// Runs `work` on the main thread at the next turn of the event loop, after the clients
/// ready by then are served, without sleeping first (a plain timer sleeps at least a
/// millisecond): at the end of this turn, a timer due at once is armed. `false` when the
/// server cannot.
pub fn run_soon(work: fn(&Context)) -> bool {
    at_end_of_turn(timer_trampoline, work)
}

/// Runs `work` on the main thread when this turn of the event loop ends (after the
/// commands of this turn); `false` when the server cannot.
pub fn run_at_end_of_turn(work: fn(&Context)) -> bool {
    at_end_of_turn(direct_trampoline, work)
}

fn run_now(ctx: &Context, work: fn(&Context)) {
    work(ctx);
}

/// The server runs the end-of-turn callbacks until none is left, including those added
/// meanwhile: work that schedules itself again must go through a timer.
fn arm_timer_now(ctx: &Context, work: fn(&Context)) {
    ctx.create_timer(Duration::ZERO, |ctx, work: fn(&Context)| work(ctx), work);
}

fn at_end_of_turn(trampoline: extern "C" fn(*mut c_void), work: fn(&Context)) -> bool {
    if SOON_CTX.load(Ordering::Relaxed).is_null() {
        return false;
    }
    // SAFETY: the function table is loaded; the callback lives forever and gets back the
    // function pointer passed here as its data.
    unsafe { raw::RedisModule_EventLoopAddOneShot }.is_some_and(|add| {
        let data = work as *mut c_void;
        SOON_PENDING.fetch_add(1, Ordering::Relaxed);
        let added = unsafe { add(Some(trampoline), data) } == raw::REDISMODULE_OK as c_int;
        if !added {
            SOON_PENDING.fetch_sub(1, Ordering::Relaxed);
        }
        added
    })
}

/// Whether end-of-turn work is still to run (an unload now would leave the server a
/// callback into unmapped code).
pub fn work_pending() -> bool {
    SOON_PENDING.load(Ordering::Relaxed) > 0
}

extern "C" fn timer_trampoline(data: *mut c_void) {
    run_with(data, arm_timer_now);
}

extern "C" fn direct_trampoline(data: *mut c_void) {
    run_with(data, run_now);
}

fn run_with(data: *mut c_void, how: fn(&Context, fn(&Context))) {
    SOON_PENDING.fetch_sub(1, Ordering::Relaxed);
    let soon_ctx = SOON_CTX.load(Ordering::Relaxed);
    if data.is_null() || soon_ctx.is_null() {
        return;
    }
    // SAFETY: `data` is the `fn(&Context)` that `at_end_of_turn` was given.
    let work = unsafe { std::mem::transmute::<*mut c_void, fn(&Context)>(data) };
    let _ = catch_unwind(AssertUnwindSafe(|| how(&Context::new(soon_ctx), work)));
}

/// Frees the context of [`run_soon`] when the module unloads.
pub fn release_run_soon() {
    let soon_ctx = SOON_CTX.swap(ptr::null_mut(), Ordering::Relaxed);
    // SAFETY: made by GetDetachedThreadSafeContext, freed once.
    if let (false, Some(free)) = (soon_ctx.is_null(), unsafe {
        raw::RedisModule_FreeThreadSafeContext
    }) {
        unsafe { free(soon_ctx) };
    }
}
