//! Who may touch which key. Every key the module derives passes here before it is read or
//! written: the calling user's ACL key permissions are checked (the server checks only the
//! keys a command declares, and this module's keys are all derived), and in cluster mode
//! the key must hash to the slot the command was routed by (its installation), since a
//! key of another slot would read as missing and give a silently partial answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use redis_module::{CallOptionsBuilder, CallReply, CallResult, Context, ContextFlags};

use super::keys::KeyRole;
use crate::error::{printable, CrmError};
use crate::ffi::string::ModuleString;
use crate::ffi::user::{caller_name, ModuleUser};

pub use crate::ffi::user::Need;

/// The calling user and, in cluster mode, the routing slot.
pub struct KeyGuard {
    /// `None`: nothing to check permissions against (no calling user).
    user: Option<ModuleUser>,
    routing: Option<(u16, Vec<u8>)>,
}

impl KeyGuard {
    /// The guard of a command called by a client: its user, its routing key.
    pub fn for_caller(ctx: &Context, routing_key: &[u8]) -> Result<Self, CrmError> {
        Self::new(ctx, caller_name(ctx).as_deref(), routing_key)
    }

    /// The guard for a named user (a job that outlives its command keeps the name), or
    /// for no user at all (nothing to check permissions against).
    pub fn new(
        ctx: &Context,
        user_name: Option<&[u8]>,
        routing_key: &[u8],
    ) -> Result<Self, CrmError> {
        let user = match user_name {
            Some(name) => Some(
                ModuleUser::find(name)?.ok_or_else(|| CrmError::NoPermission {
                    key: b"(the user no longer exists)".to_vec(),
                })?,
            ),
            None => None,
        };
        let routing = ctx
            .get_flags()
            .contains(ContextFlags::CLUSTER)
            .then(|| (key_slot(routing_key), routing_key.to_vec()));
        Ok(KeyGuard { user, routing })
    }

    /// `Ok` when the user may `need` the key and it lives in the routing slot. `role` names
    /// the template the key came from, for the error.
    pub fn check(
        &self,
        key: &[u8],
        key_name: &ModuleString,
        role: KeyRole,
        need: Need,
    ) -> Result<(), CrmError> {
        if let Some((slot, installation)) = &self.routing {
            let key_slot = key_slot(key);
            if key_slot != *slot {
                return Err(CrmError::CrossSlot(format!(
                    "key '{}' from crm.{} is in slot {key_slot}, not in slot {slot} of installation '{}': put <installation> in a hash tag, as in {{<installation>}}",
                    printable(key),
                    role.setting(),
                    printable(installation)
                )));
            }
        }
        match &self.user {
            Some(user) if !user.may(key_name, need)? => {
                Err(CrmError::NoPermission { key: key.to_vec() })
            }
            _ => Ok(()),
        }
    }
}

/// What a user's root key patterns let it read, as far as the index needs to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadPatterns {
    /// `~*` (or `%R~*`): every key.
    pub every_key: bool,
    /// Patterns that are a literal prefix and one trailing `*` (`~meeting:*`,
    /// `%R~{10}:*`): every key starting with one of these may be read.
    pub prefixes: Vec<Vec<u8>>,
}

impl ReadPatterns {
    /// Whether the patterns prove that every key starting with `prefix` may be read.
    pub fn cover_prefix(&self, prefix: &[u8]) -> bool {
        self.every_key || self.prefixes.iter().any(|p| prefix.starts_with(p))
    }

    /// Reads the `keys` field of ACL GETUSER (`~* %R~foo:* %W~bar`); selectors are not
    /// read (keys they grant are checked one by one).
    fn parse(keys: &[u8]) -> Self {
        let mut patterns = ReadPatterns::default();
        for pattern in keys.split(|&byte| byte == b' ') {
            let body = [b"%RW~".as_slice(), b"%WR~", b"%R~", b"~"]
                .iter()
                .find_map(|flag| pattern.strip_prefix(*flag));
            let Some(literal) = body.and_then(|body| body.strip_suffix(b"*")) else {
                continue;
            };
            if literal.is_empty() {
                patterns.every_key = true;
            } else if !literal
                .iter()
                .any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
            {
                patterns.prefixes.push(literal.to_vec());
            }
        }
        patterns
    }
}

/// Who calls: a user whose ACL may limit the keys it reads, or no user at all (a
/// replica's stream, the AOF), which may read everything.
pub enum Reader {
    Everything,
    User {
        name: Vec<u8>,
        patterns: ReadPatterns,
    },
}

/// Per user name: its read patterns (ACL GETUSER), until the next ACL command.
static READ_PATTERNS: Mutex<Option<HashMap<Vec<u8>, ReadPatterns>>> = Mutex::new(None);
/// Counts the times ACL rules may have changed: what was proven under another count is
/// proven again.
static ACL_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Clients that sent an ACL command, perhaps queued in a transaction: their next EXEC
/// may run it.
static ACL_SENDERS: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// An ACL command, about to run or to be queued (the filter cannot tell): what users may
/// read may change now, and again when the client's EXEC runs it. `None`: the server
/// cannot name the client (Redis 7.0), so every EXEC counts.
#[cold]
pub fn acl_command(client: Option<u64>) {
    forget_acl_cache();
    if let Some(client) = client {
        let mut senders = ACL_SENDERS.lock().unwrap_or_else(PoisonError::into_inner);
        if !senders.contains(&client) {
            senders.push(client);
        }
    }
}

/// An EXEC: it may run a queued ACL command when its client sent one (or when the server
/// cannot name the client).
#[cold]
pub fn exec_command(client: Option<u64>) {
    let sent_acl = match client {
        Some(client) => {
            let mut senders = ACL_SENDERS.lock().unwrap_or_else(PoisonError::into_inner);
            let before = senders.len();
            senders.retain(|&sender| sender != client);
            senders.len() != before
        }
        None => true,
    };
    if sent_acl {
        forget_acl_cache();
    }
}

/// The module unloads: nothing may stay allocated in its statics.
pub fn release() {
    *ACL_SENDERS.lock().unwrap_or_else(PoisonError::into_inner) = Vec::new();
    *READ_PATTERNS.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// ACL rules may have changed: ask again, prove again.
fn forget_acl_cache() {
    ACL_GENERATION.fetch_add(1, Ordering::Relaxed);
    *READ_PATTERNS.lock().unwrap_or_else(PoisonError::into_inner) = None;
}

/// The count of possible ACL changes so far.
pub fn acl_generation() -> u64 {
    ACL_GENERATION.load(Ordering::Relaxed)
}

/// Who calls, with the user's read patterns.
pub fn reader(ctx: &Context) -> Result<Reader, CrmError> {
    let Some(name) = caller_name(ctx) else {
        return Ok(Reader::Everything);
    };
    let cached =
        |cache: &Option<HashMap<Vec<u8>, ReadPatterns>>| cache.as_ref()?.get(&name).cloned();
    if let Some(patterns) = cached(&READ_PATTERNS.lock().unwrap_or_else(PoisonError::into_inner)) {
        return Ok(Reader::User { name, patterns });
    }
    let reply: CallResult = ctx.call_ext(
        "ACL",
        &CallOptionsBuilder::new().errors_as_replies().build(),
        &[b"GETUSER".as_slice(), &name],
    );
    let patterns = match &reply {
        Ok(CallReply::Array(fields)) => {
            let fields: Vec<_> = fields.iter().collect();
            fields
                .chunks(2)
                .find_map(|pair| match pair {
                    [Ok(CallReply::String(field)), Ok(CallReply::String(keys))]
                        if field.as_bytes() == b"keys" =>
                    {
                        Some(ReadPatterns::parse(keys.as_bytes()))
                    }
                    _ => None,
                })
                .unwrap_or_default()
        }
        _ => ReadPatterns::default(),
    };
    // Inside MULTI an ACL command may follow in the same transaction: no caching there.
    if !ctx.get_flags().contains(ContextFlags::MULTI) {
        READ_PATTERNS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashMap::new)
            .insert(name.clone(), patterns.clone());
    }
    Ok(Reader::User { name, patterns })
}

/// The Redis Cluster slot of a key: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, when not empty) or of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = key.get(open + 1..)?;
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| rest.get(..close)).flatten()
    });
    crc16(tagged.unwrap_or(key)) % 16384
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::{key_slot, ReadPatterns};

    #[test]
    fn read_patterns_prove_prefixes_only() {
        let patterns = ReadPatterns::parse(b"~meeting:* %R~{10}:* %W~secret:* ~a?b* ~exact");
        assert!(!patterns.every_key);
        assert_eq!(
            patterns.prefixes,
            vec![b"meeting:".to_vec(), b"{10}:".to_vec()]
        );
        assert!(patterns.cover_prefix(b"meeting:"));
        assert!(patterns.cover_prefix(b"{10}:meeting:"));
        assert!(!patterns.cover_prefix(b"secret:"));
        assert!(!patterns.cover_prefix(b"meet"));
        assert!(ReadPatterns::parse(b"%R~*").every_key);
        assert!(ReadPatterns::parse(b"~foo ~*").every_key);
        assert!(!ReadPatterns::parse(b"%W~*").every_key);
    }

    #[test]
    fn slots_match_redis_cluster() {
        // Values from CLUSTER KEYSLOT.
        assert_eq!(key_slot(b"10"), 247);
        assert_eq!(key_slot(b"12"), 8373);
        assert_eq!(key_slot(b"{10}:meeting:5"), 247);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{}foo"), key_slot(b"{}foo"));
        assert_eq!(key_slot(b"a{}b{c}"), key_slot(b"a{}b{c}"));
        assert_eq!(key_slot(b"x{user1000}.following"), key_slot(b"user1000"));
    }
}
