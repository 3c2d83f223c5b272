//! The edge between Redis and the core: argument decoding, panic containment, the caller's
//! store, and the conversion of [`CrmError`] into error replies. One file per command
//! beside this one; `spec.rs` declares them to the server, `stats.rs` counts them.

pub mod audit;
pub mod facets;
pub mod meeting_write;
pub mod meetings;
pub mod spec;
pub mod stats;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use redis_module::{Context, RedisError, RedisResult, RedisString, RedisValue};

use crate::config;
use crate::error::CrmError;
use crate::store::keyspace::KeyspaceStore;

/// A command body: the arguments after the command name, as bytes.
pub type Handler = fn(&Context, &[&[u8]]) -> Result<RedisValue, CrmError>;

/// Runs a handler so that nothing it does can take the server down: a panic (a bug) is
/// caught here, logged by the panic hook with its location, and answered with an error.
/// Each call is counted in the INFO section.
pub fn run_guarded(
    ctx: &Context,
    args: &[RedisString],
    command: &spec::CommandInfo,
    handler: Handler,
) -> RedisResult {
    let started = Instant::now();
    let args: Vec<&[u8]> = args.iter().skip(1).map(RedisString::as_slice).collect();
    let outcome = catch_unwind(AssertUnwindSafe(|| handler(ctx, &args)));
    let result = match outcome {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(CrmError::Internal(
            "the command failed; see the server log".to_string(),
        )),
    };
    // A query waiting for its index is counted once, when it runs again and answers.
    if !matches!(result, Ok(RedisValue::NoReply)) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats::record(command.name, micros, result.is_err());
    }
    result.map_err(|error| RedisError::String(error.to_string()))
}

/// The keyspace as the caller of a command on `installation` may see it: the templates in
/// force now, the caller's ACL user, the installation's cluster slot.
pub fn caller_store<'a>(
    ctx: &'a Context,
    installation: &[u8],
) -> Result<KeyspaceStore<'a>, CrmError> {
    KeyspaceStore::for_caller(ctx, config::key_templates()?, installation)
}

/// A count as a Redis integer (saturating: a count never exceeds i64 in practice).
pub fn integer(value: u64) -> RedisValue {
    RedisValue::Integer(i64::try_from(value).unwrap_or(i64::MAX))
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
