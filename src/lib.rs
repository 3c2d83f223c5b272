//! crm-meetings: a Redis module that answers "which meetings may this user see, filtered,
//! sorted, one page at a time" natively. This file only registers commands and settings;
//! `command/` is the edge, `core/` the pure query engine, `store/` the keyspace access.

// Input must never reach a panic inside a server: denied for the module's code only (the
// tests and tools panic freely); `clippy.toml` lets unit tests inside `src/` use them.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod command;
pub mod config;
pub mod core;
pub mod error;
pub mod store;

// Not in unit tests or fuzz targets: the macro installs Redis's allocator as the global one,
// which works only inside a server (any other program linking the rlib must leave it out).
#[cfg(not(any(test, fuzzing)))]
mod module {
    use redis_module::{redis_module, Context, RedisResult, RedisString, Status};

    use crate::command::{self, audit, info, meeting_write, meetings};
    use crate::config;
    use crate::store::indexes;

    fn crm_meetings(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &info::MEETINGS, meetings::meetings)
    }

    fn crm_meeting_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &info::MEETING_SET, meeting_write::meeting_set)
    }

    fn crm_meeting_del(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &info::MEETING_DEL, meeting_write::meeting_del)
    }

    fn crm_check(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &info::CHECK, audit::check)
    }

    fn crm_repair(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &info::REPAIR, audit::repair)
    }

    fn crm_explain(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &info::EXPLAIN, meetings::explain)
    }

    /// Debug builds only: `CRM.DEBUG.PANIC` panics inside a command, so the tests can prove
    /// that a bug answers an error instead of taking the server down.
    ///
    /// # Safety
    /// Only from OnLoad, with the module's context (the macro calls the raw API).
    #[cfg(debug_assertions)]
    unsafe fn register_debug_commands(ctx: &Context) -> std::os::raw::c_int {
        use std::ffi::CString;
        use std::os::raw::c_int;

        #[allow(clippy::panic)]
        fn crm_debug_panic(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
            command::run_guarded(ctx, &args, &info::MEETINGS, |_, _| {
                panic!("CRM.DEBUG.PANIC was called")
            })
        }
        redis_module::redis_command!(ctx.ctx, "crm.debug.panic", crm_debug_panic, "", 0, 0, 0, "");
        0
    }

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        command::install_panic_hook();
        // SAFETY: init runs inside OnLoad with the module's context.
        #[cfg(debug_assertions)]
        if unsafe { register_debug_commands(ctx) } != 0 {
            return Status::Err;
        }
        let with_crm_category = info::add_acl_category(ctx);
        for command in &info::ALL {
            if let Err(reason) = info::describe(ctx, command, with_crm_category) {
                ctx.log_warning(&format!("crm-meetings: {reason}"));
                return Status::Err;
            }
        }
        if let Err(reason) = indexes::subscribe_server_events(ctx) {
            ctx.log_warning(&format!("crm-meetings: {reason}"));
            return Status::Err;
        }
        if let Err(reason) = command::stats::register(ctx) {
            ctx.log_warning(&format!("crm-meetings: {reason}"));
            return Status::Err;
        }
        match config::register(ctx, args) {
            Ok(()) => Status::Ok,
            Err(reason) => {
                ctx.log_warning(&format!("crm-meetings: {reason}"));
                Status::Err
            }
        }
    }

    fn deinit(_ctx: &Context) -> Status {
        indexes::drop_all();
        config::release();
        Status::Ok
    }

    redis_module! {
        name: "crm",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [],
        init: init,
        deinit: deinit,
        commands: [
            [info::MEETINGS.name, crm_meetings, info::MEETINGS.flags, 0, 0, 0, ""],
            [info::MEETING_SET.name, crm_meeting_set, info::MEETING_SET.flags, 0, 0, 0, ""],
            [info::MEETING_DEL.name, crm_meeting_del, info::MEETING_DEL.flags, 0, 0, 0, ""],
            [info::CHECK.name, crm_check, info::CHECK.flags, 0, 0, 0, ""],
            [info::REPAIR.name, crm_repair, info::REPAIR.flags, 0, 0, 0, ""],
            [info::EXPLAIN.name, crm_explain, info::EXPLAIN.flags, 0, 0, 0, ""],
        ],
        // Every class of keyspace event keeps the indexes exact (see store::indexes).
        event_handlers: [
            [@ALL: indexes::on_key_event],
        ],
    }
}
