//! The edge between Redis and the core: argument decoding, panic containment and the
//! conversion of [`CrmError`] into error replies. One file per command beside this one.

pub mod audit;
pub mod info;
pub mod meeting_write;
pub mod meetings;

use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::error::CrmError;

/// A command body: the arguments after the command name, as bytes.
pub type Handler = fn(&Context, &[&[u8]]) -> Result<RedisValue, CrmError>;

/// Runs a handler so that nothing it does can take the server down: a panic (a bug) is
/// caught here, logged by the panic hook with its location, and answered with an error.
pub fn run_guarded(ctx: &Context, args: &[RedisString], handler: Handler) -> RedisResult {
    let args: Vec<&[u8]> = args.iter().skip(1).map(RedisString::as_slice).collect();
    let outcome = catch_unwind(AssertUnwindSafe(|| handler(ctx, &args)));
    let error = match outcome {
        Ok(Ok(reply)) => return Ok(reply),
        Ok(Err(error)) => error,
        Err(_) => CrmError::Internal("the command failed; see the server log".to_string()),
    };
    Err(RedisError::String(error.to_string()))
}

/// Logs every panic with its location before `run_guarded` turns it into a reply.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or_else(String::new, |at| format!(" at {}:{}", at.file(), at.line()));
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        redis_module::logging::log_warning(format!("crm-meetings: panic{location}: {payload}"));
    }));
}
