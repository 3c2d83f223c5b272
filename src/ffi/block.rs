//! Blocked clients: a query whose index is still loading waits for it without holding the
//! server (`RedisModule_BlockClient`), and runs again when woken, or answers an error when
//! the module times it out. The crate's `BlockedClient` has no reply callback, so it lives
//! here. The module keeps the timeouts itself: Redis 7.0 drops the reply of a client woken
//! in the same turn its server-side timeout passes, which would leave it blocked forever.

use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use redis_module::{decode_args, raw, Context, ContextFlags, RedisResult, RedisString};

use super::api;
use crate::error::CrmError;

/// What a woken client runs: its command again (`ready`), or the answer of a wait past its
/// timeout (`timed_out`).
pub struct Resume {
    pub ready: fn(&Context, &[RedisString]) -> RedisResult,
    pub timed_out: fn(&Context, &[RedisString]) -> RedisResult,
}

/// The private data a client timed out is woken with (never read or freed, only compared).
static TIMED_OUT: u8 = 0;

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
    /// Wakes the client to be answered that its wait timed out.
    pub fn time_out(self) {
        let handle = self.0;
        std::mem::forget(self);
        let marker = ptr::from_ref(&TIMED_OUT).cast_mut().cast::<c_void>();
        // SAFETY: the handle is unblocked once, here, instead of in Drop.
        if let Some(unblock) = unsafe { raw::RedisModule_UnblockClient } {
            unsafe { unblock(handle.as_ptr(), marker) };
        }
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

/// Blocks the calling client until the [`Blocked`] is dropped or timed out (call
/// [`may_block`] first); the command then returns without a reply.
pub fn block(ctx: &Context) -> Result<Blocked, CrmError> {
    let block_client = api!(RedisModule_BlockClient);
    // SAFETY: a live command context; the callback lives forever; no server-side timeout.
    let handle = unsafe { block_client(ctx.ctx, Some(reply_trampoline), None, None, 0) };
    NonNull::new(handle)
        .map(Blocked)
        .ok_or_else(|| CrmError::Internal("the client could not be blocked".to_string()))
}

extern "C" fn reply_trampoline(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: a live context of a blocked client's reply.
    let privdata = unsafe {
        raw::RedisModule_GetBlockedClientPrivateData.map_or(ptr::null_mut(), |get| get(ctx))
    };
    let timed_out = ptr::eq(privdata.cast_const().cast::<u8>(), &TIMED_OUT);
    answer(ctx, argv, argc, |resume, context, args| {
        if timed_out {
            (resume.timed_out)(context, args)
        } else {
            (resume.ready)(context, args)
        }
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
