//! crm-meetings: a Redis module that answers "which meetings may this user see, filtered,
//! sorted, one page at a time" natively. This file only registers commands and settings;
//! `command/` is the edge, `core/` the pure query engine, `store/` the keyspace access.

pub mod command;
pub mod config;
pub mod core;
pub mod error;
pub mod store;

#[cfg(not(test))]
mod module {
    use redis_module::{redis_module, Context, RedisResult, RedisString, Status};

    use crate::command::{self, audit, meeting_write, meetings};
    use crate::config;

    fn crm_meetings(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, meetings::meetings)
    }

    fn crm_meeting_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, meeting_write::meeting_set)
    }

    fn crm_meeting_del(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, meeting_write::meeting_del)
    }

    fn crm_check(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, audit::check)
    }

    fn crm_repair(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, audit::repair)
    }

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        command::install_panic_hook();
        match config::register(ctx, args) {
            Ok(()) => Status::Ok,
            Err(reason) => {
                ctx.log_warning(&format!("crm-meetings: {reason}"));
                Status::Err
            }
        }
    }

    redis_module! {
        name: "crm",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [],
        init: init,
        commands: [
            [meetings::NAME, crm_meetings, "readonly", 0, 0, 0, ""],
            [meeting_write::SET_NAME, crm_meeting_set, "write deny-oom", 0, 0, 0, ""],
            [meeting_write::DEL_NAME, crm_meeting_del, "write", 0, 0, 0, ""],
            [audit::CHECK_NAME, crm_check, "readonly", 0, 0, 0, ""],
            [audit::REPAIR_NAME, crm_repair, "write deny-oom", 0, 0, 0, ""],
        ],
    }
}
