//! crm-meetings: a Redis module that answers "which meetings may this user see, filtered,
//! sorted, one page at a time" natively. This file only registers commands, settings and
//! event handlers. Layers, each importing only those after it: `command/` (the edge, one
//! file per command), `config` (the crm.* settings), `store/` (the keyspace and the index
//! glue), `ffi/` (every raw module-API call), `core/` (the pure engine), `error`.

// Input must never reach a panic inside a server: denied for the module's code only (the
// tests and tools panic freely); `clippy.toml` lets unit tests inside `src/` use them.
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// Raw pointers and their unchecked calls live in `ffi/` alone.
#![deny(unsafe_code)]

pub mod command;
pub mod config;
pub mod core;
pub mod error;
#[allow(unsafe_code)]
pub mod ffi;
pub mod store;

// Not in unit tests or fuzz targets: the macro installs Redis's allocator as the global one,
// which works only inside a server (any other program linking the rlib must leave it out).
#[cfg(not(any(test, fuzzing)))]
mod module {
    use redis_module::{redis_module, Context, RedisResult, RedisString, Status};

    use crate::command::{self, audit, facets, meeting_write, meetings, spec};
    use crate::config;
    use crate::ffi::block;
    use crate::ffi::command_info;
    use crate::ffi::hooks::{
        available_classes, on_data_replaced, on_key_events, register_run_soon, release_run_soon,
        work_pending,
    };
    use crate::store::{access, index};

    fn crm_meetings(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::MEETINGS, meetings::meetings)
    }

    fn crm_meeting_set(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::MEETING_SET, meeting_write::meeting_set)
    }

    fn crm_meeting_mset(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::MEETING_MSET, meeting_write::meeting_mset)
    }

    fn crm_meeting_del(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::MEETING_DEL, meeting_write::meeting_del)
    }

    fn crm_check(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::CHECK, audit::check)
    }

    fn crm_repair(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::REPAIR, audit::repair)
    }

    fn crm_explain(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::EXPLAIN, meetings::explain)
    }

    fn crm_facets(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::FACETS, facets::facets)
    }

    /// Debug builds only: `CRM.DEBUG.PANIC` panics inside a command, so the tests can prove
    /// that a bug answers an error instead of taking the server down.
    #[cfg(debug_assertions)]
    #[allow(clippy::panic)]
    fn crm_debug_panic(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
        command::run_guarded(ctx, &args, &spec::MEETINGS, |_, _| {
            panic!("CRM.DEBUG.PANIC was called")
        })
    }

    fn init(ctx: &Context, args: &[RedisString]) -> Status {
        command::install_panic_hook();
        #[cfg(debug_assertions)]
        if let Err(reason) =
            command_info::register_debug_command(ctx, "crm.debug.panic", crm_debug_panic)
        {
            ctx.log_warning(&format!("crm-meetings: {reason}"));
            return Status::Err;
        }
        let extra_category =
            command_info::add_acl_category(ctx, spec::ACL_CATEGORY).then_some(spec::ACL_CATEGORY);
        for command in &spec::ALL {
            if let Err(reason) = command_info::describe(ctx, command, extra_category) {
                ctx.log_warning(&format!("crm-meetings: {reason}"));
                return Status::Err;
            }
        }
        index::follow_settings(config::index_max_memory, config::index_enabled);
        block::on_resume(block::Resume {
            ready: meetings::resume,
            timed_out: meetings::wait_timed_out,
        });
        // Every class of keyspace event the command filter does not stand in for keeps the
        // indexes exact (see store::index).
        let classes = available_classes(index::events::classes());
        let hooks = on_key_events(ctx, classes, index::events::on_key_event)
            .and_then(|()| on_data_replaced(ctx, config::on_data_event))
            .and_then(|()| register_run_soon(ctx));
        if let Err(reason) = hooks {
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

    fn deinit(ctx: &Context) -> Status {
        // MODULE UNLOAD in the middle of a turn, with end-of-turn work queued: refused.
        if work_pending() {
            ctx.log_warning("crm-meetings: index work is queued for this turn; unload again");
            return Status::Err;
        }
        index::free_all();
        index::members::release();
        access::release();
        release_run_soon();
        config::release();
        Status::Ok
    }

    redis_module! {
        name: "crm",
        version: 1,
        allocator: (crate::ffi::alloc::CountingAlloc, crate::ffi::alloc::CountingAlloc),
        data_types: [],
        init: init,
        deinit: deinit,
        commands: [
            [spec::MEETINGS.name, crm_meetings, spec::MEETINGS.flags, 0, 0, 0, ""],
            [spec::MEETING_SET.name, crm_meeting_set, spec::MEETING_SET.flags, 0, 0, 0, ""],
            [spec::MEETING_MSET.name, crm_meeting_mset, spec::MEETING_MSET.flags, 0, 0, 0, ""],
            [spec::MEETING_DEL.name, crm_meeting_del, spec::MEETING_DEL.flags, 0, 0, 0, ""],
            [spec::CHECK.name, crm_check, spec::CHECK.flags, 0, 0, 0, ""],
            [spec::REPAIR.name, crm_repair, spec::REPAIR.flags, 0, 0, 0, ""],
            [spec::EXPLAIN.name, crm_explain, spec::EXPLAIN.flags, 0, 0, 0, ""],
            [spec::FACETS.name, crm_facets, spec::FACETS.flags, 0, 0, 0, ""],
        ],
    }
}
