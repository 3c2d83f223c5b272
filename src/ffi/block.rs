//! Blocked clients: a query whose index is still loading waits for it without holding the
//! server (`RedisModule_BlockClient`), and runs again when woken, or answers an error when
//! its timeout passes. The crate's `BlockedClient` has neither a reply nor a timeout
//! callback, so both live here.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;
use std::time::Duration;

use redis_module::{decode_args, raw, Context, ContextFlags, RedisResult, RedisString};

use super::api;
use crate::error::CrmError;

/// What a woken client runs: its command again (`ready`), or the answer past its timeout
/// (`timed_out`, given the client's [`Blocked::id`]).
pub struct Resume {
    pub ready: fn(&Context, &[RedisString]) -> RedisResult,
    pub timed_out: fn(&Context, usize, &[RedisString]) -> RedisResult,
}

static RESUME: OnceLock<Resume> = OnceLock::new();

/// Sets what blocked clients run when woken; called once from OnLoad.
pub fn on_resume(resume: Resume) {
    let _ = RESUME.set(resume);
}

/// A client waiting. Dropping it wakes the client: it runs its command again, or nothing
/// when it timed out or left meanwhile (the server frees it either way).
#[derive(Debug)]
pub struct Blocked(NonNull<raw::RedisModuleBlockedClient>);

// SAFETY: a handle is used and dropped on the main thread only (the registry holding it
// is a `Mutex` static, which wants `Send`).
unsafe impl Send for Blocked {}

impl Blocked {
    /// The client's identity, as the timeout callback names it.
    pub fn id(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: each handle is unblocked once, here; the server then calls the reply
        // callback (unless the client timed out or left) and frees the handle.
        if let Some(unblock) = unsafe { raw::RedisModule_UnblockClient } {
            unsafe { unblock(self.0.as_ptr(), ptr::null_mut()) };
        }
    }
}

/// Whether the command may block its client: not inside MULTI/EXEC, a script, a call from
/// another module, or a run that is itself the answer of a woken client.
pub fn may_block(ctx: &Context) -> bool {
    let flags = ctx.get_flags();
    if flags.intersects(ContextFlags::DENY_BLOCKING | ContextFlags::MULTI | ContextFlags::LUA) {
        return false;
    }
    !is_resumed(ctx)
}

/// Whether this run is a woken client's (its reply or timeout callback).
pub fn is_resumed(ctx: &Context) -> bool {
    // SAFETY: a live context.
    unsafe {
        raw::RedisModule_IsBlockedReplyRequest.is_none_or(|is| is(ctx.ctx) != 0)
            || raw::RedisModule_IsBlockedTimeoutRequest.is_none_or(|is| is(ctx.ctx) != 0)
    }
}

/// Blocks the calling client for at most `timeout` (call [`may_block`] first); the command
/// then returns without a reply.
pub fn block(ctx: &Context, timeout: Duration) -> Result<Blocked, CrmError> {
    let block_client = api!(RedisModule_BlockClient);
    let millis = i64::try_from(timeout.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    // SAFETY: a live command context; the callbacks live forever.
    let handle = unsafe {
        block_client(
            ctx.ctx,
            Some(reply_trampoline),
            Some(timeout_trampoline),
            None,
            millis,
        )
    };
    NonNull::new(handle)
        .map(Blocked)
        .ok_or_else(|| CrmError::Internal("the client could not be blocked".to_string()))
}

extern "C" fn reply_trampoline(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    answer(ctx, argv, argc, |resume, context, args| {
        (resume.ready)(context, args)
    })
}

extern "C" fn timeout_trampoline(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: a live context of a blocked client's timeout.
    let id =
        unsafe { raw::RedisModule_GetBlockedClientHandle.map_or(ptr::null_mut(), |get| get(ctx)) }
            as usize;
    answer(ctx, argv, argc, |resume, context, args| {
        (resume.timed_out)(context, id, args)
    })
}

/// Runs one of the [`Resume`] functions on the blocked command's arguments and replies
/// with what it returns (an error if it panicked).
fn answer(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
    run: impl FnOnce(&Resume, &Context, &[RedisString]) -> RedisResult,
) -> c_int {
    let context = Context::new(ctx);
    let args = decode_args(ctx, argv, argc);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        RESUME.get().map(|resume| run(resume, &context, &args))
    }));
    reply(&context, outcome)
}

fn reply(context: &Context, outcome: std::thread::Result<Option<RedisResult>>) -> c_int {
    let result = match outcome {
        Ok(Some(result)) => result,
        _ => Err(redis_module::RedisError::Str(
            "ERR the command failed; see the server log",
        )),
    };
    context.reply(result) as c_int
}
