//! Key handles for reading sets, hashes and sorted sets directly (no command call per
//! element), and scan cursors that outlive the handles they scan.

use std::ffi::c_void;
use std::os::raw::c_int;
use std::ptr;

use redis_module::{raw, Context};

use super::api;
use super::string::{copy_bytes, ModuleString};
use crate::core::types::Bytes;
use crate::error::{CrmError, KeyKind};

/// A scan cursor for ScanKey or the keyspace Scan, destroyed on drop.
pub struct ScanCursor(*mut raw::RedisModuleScanCursor);

impl ScanCursor {
    pub fn new() -> Result<Self, CrmError> {
        let create = api!(RedisModule_ScanCursorCreate);
        // SAFETY: creates an independent cursor that we destroy in Drop.
        Ok(ScanCursor(unsafe { create() }))
    }
}

// SAFETY: a cursor is created, used and destroyed on the main thread only (commands,
// timers); the index registry that keeps it between steps is a static behind a mutex.
unsafe impl Send for ScanCursor {}

impl Drop for ScanCursor {
    fn drop(&mut self) {
        // SAFETY: we own the cursor.
        if let Some(destroy) = unsafe { raw::RedisModule_ScanCursorDestroy } {
            unsafe { destroy(self.0) };
        }
    }
}

/// One keyspace Scan call: appends some key names of the selected database to `out` and
/// says whether more remain.
pub fn scan_keyspace_step(
    ctx: &Context,
    cursor: &ScanCursor,
    out: &mut Vec<Bytes>,
) -> Result<bool, CrmError> {
    let scan = api!(RedisModule_Scan);

    extern "C" fn collect(
        _ctx: *mut raw::RedisModuleCtx,
        key_name: *mut raw::RedisModuleString,
        _key: *mut raw::RedisModuleKey,
        data: *mut c_void,
    ) {
        // SAFETY: `data` is the `out` vector, alive for the whole call.
        let out = unsafe { &mut *data.cast::<Vec<Bytes>>() };
        if !key_name.is_null() {
            out.push(copy_bytes(key_name));
        }
    }

    let data = ptr::from_mut(out).cast::<c_void>();
    // SAFETY: a live context and cursor; the callback only pushes bytes.
    Ok(unsafe { scan(ctx.ctx, cursor.0, Some(collect), data) } != 0)
}

/// A key opened for reading. A missing key has a NULL handle, which the raw API must never
/// see for anything but KeyType/ValueLength; the methods check it.
pub struct ReadKey {
    handle: *mut raw::RedisModuleKey,
    name: Bytes,
}

impl ReadKey {
    /// Opens `key_name`, whose bytes are `name` (kept for error messages).
    pub fn open(ctx: &Context, key_name: &ModuleString, name: &[u8]) -> Result<Self, CrmError> {
        let open_key = api!(RedisModule_OpenKey);
        // SAFETY: valid context and key name; READ mode returns NULL for a missing key.
        let handle =
            unsafe { open_key(ctx.ctx, key_name.as_ptr(), raw::REDISMODULE_READ as c_int) };
        Ok(ReadKey {
            handle,
            name: name.to_vec(),
        })
    }

    /// Whether the key exists; an error when it exists with another type than `kind`.
    pub fn exists_as(&self, kind: KeyKind) -> Result<bool, CrmError> {
        if self.handle.is_null() {
            return Ok(false);
        }
        let key_type = api!(RedisModule_KeyType);
        // SAFETY: non-NULL handle of an open key.
        let actual = unsafe { key_type(self.handle) } as isize;
        let wanted = match kind {
            KeyKind::Set => raw::REDISMODULE_KEYTYPE_SET,
            KeyKind::Hash => raw::REDISMODULE_KEYTYPE_HASH,
            KeyKind::SortedSet => raw::REDISMODULE_KEYTYPE_ZSET,
        };
        if actual == raw::REDISMODULE_KEYTYPE_EMPTY {
            Ok(false)
        } else if actual == wanted {
            Ok(true)
        } else {
            Err(CrmError::WrongType {
                key: self.name.clone(),
                expected: kind,
            })
        }
    }

    /// Number of elements (0 for a missing key). Call after `exists_as`.
    pub fn cardinality(&self) -> Result<usize, CrmError> {
        if self.handle.is_null() {
            return Ok(0);
        }
        let value_length = api!(RedisModule_ValueLength);
        // SAFETY: non-NULL handle of an open key.
        Ok(unsafe { value_length(self.handle) })
    }

    /// Every member of a set (call after `exists_as(KeyKind::Set)` returned true).
    pub fn set_members(&self) -> Result<Vec<Bytes>, CrmError> {
        let mut members = Vec::with_capacity(self.cardinality()?);
        let cursor = ScanCursor::new()?;
        while self.scan_step(&cursor, &mut members)? {}
        Ok(members)
    }

    /// One ScanKey call: appends some members (of a set or sorted set) to `out` and says
    /// whether more remain. The cursor resumes across calls, also after the key is reopened.
    pub fn scan_step(&self, cursor: &ScanCursor, out: &mut Vec<Bytes>) -> Result<bool, CrmError> {
        extern "C" fn collect(
            _key: *mut raw::RedisModuleKey,
            field: *mut raw::RedisModuleString,
            _value: *mut raw::RedisModuleString,
            data: *mut c_void,
        ) {
            // SAFETY: `data` is the `out` vector of `scan_into`, alive for the whole call.
            let out = unsafe { &mut *data.cast::<Vec<Bytes>>() };
            if !field.is_null() {
                out.push(copy_bytes(field));
            }
        }
        self.scan_into(cursor, out, collect)
    }

    /// One ScanKey call whose callback `collect` appends to `out` (its `data` argument).
    fn scan_into<T>(
        &self,
        cursor: &ScanCursor,
        out: &mut Vec<T>,
        collect: extern "C" fn(
            *mut raw::RedisModuleKey,
            *mut raw::RedisModuleString,
            *mut raw::RedisModuleString,
            *mut c_void,
        ),
    ) -> Result<bool, CrmError> {
        if self.handle.is_null() {
            return Ok(false);
        }
        let scan_key = api!(RedisModule_ScanKey);
        let data = ptr::from_mut(out).cast::<c_void>();
        // SAFETY: a live cursor and key; `collect` casts `data` back to this `out`.
        Ok(unsafe { scan_key(self.handle, cursor.0, Some(collect), data) } != 0)
    }

    /// Whether the key will expire (`false` for a missing key).
    pub fn has_expire(&self) -> Result<bool, CrmError> {
        if self.handle.is_null() {
            return Ok(false);
        }
        let get_expire = api!(RedisModule_GetExpire);
        // SAFETY: non-NULL handle of an open key.
        Ok(unsafe { get_expire(self.handle) } != i64::from(raw::REDISMODULE_NO_EXPIRE))
    }

    /// Whether a field of the hash will expire (HEXPIRE); `None` where the server cannot
    /// tell a module (`RedisModule_HashFieldMinExpire` is Redis 7.4 and later; Valkey has
    /// field TTLs without it). Call on a hash (after `exists_as(KeyKind::Hash)`).
    pub fn has_field_expire(&self) -> Option<bool> {
        if self.handle.is_null() {
            return Some(false);
        }
        // SAFETY: the function table is loaded before any command runs.
        let min_expire = unsafe { raw::RedisModule_HashFieldMinExpire }?;
        // SAFETY: non-NULL handle of an open hash.
        Some(unsafe { min_expire(self.handle) } != i64::from(raw::REDISMODULE_NO_EXPIRE))
    }

    /// Whether the key is missing (or expired).
    pub fn is_missing(&self) -> bool {
        self.handle.is_null()
    }

    /// One field of a hash (call after `exists_as(KeyKind::Hash)` returned true).
    pub fn hash_field(&self, field: &ModuleString) -> Result<Option<Bytes>, CrmError> {
        if self.handle.is_null() {
            return Ok(None);
        }
        let hash_get = api!(RedisModule_HashGet);
        let mut value: *mut raw::RedisModuleString = ptr::null_mut();
        let end = ptr::null_mut::<raw::RedisModuleString>();
        // SAFETY: varargs are one (field, out pointer) pair ending with NULL, as HashGet wants;
        // the value it returns is ours to free.
        unsafe {
            hash_get(
                self.handle,
                raw::REDISMODULE_HASH_NONE as c_int,
                field.as_ptr(),
                &mut value,
                end,
            )
        };
        Ok((!value.is_null()).then(|| {
            // SAFETY: HashGet hands over a new string that nothing else frees.
            unsafe { ModuleString::adopt(value) }.to_bytes()
        }))
    }

    /// The score of `member` in a sorted set (call after `exists_as(KeyKind::SortedSet)`).
    pub fn zset_score(&self, member: &ModuleString) -> Result<Option<f64>, CrmError> {
        if self.handle.is_null() {
            return Ok(None);
        }
        let zset_score = api!(RedisModule_ZsetScore);
        let mut score = 0f64;
        // SAFETY: non-NULL handle of a sorted set and a live member string.
        let status = unsafe { zset_score(self.handle, member.as_ptr(), &mut score) };
        Ok((status == raw::REDISMODULE_OK as c_int).then_some(score))
    }
}

impl Drop for ReadKey {
    fn drop(&mut self) {
        if !self.handle.is_null() {
            // SAFETY: we opened the handle and close it once.
            if let Some(close) = unsafe { raw::RedisModule_CloseKey } {
                unsafe { close(self.handle) };
            }
        }
    }
}

/// Whether reading a hash tells its field TTLs ([`ReadKey::has_field_expire`] answers).
pub fn field_ttls_readable() -> bool {
    // SAFETY: the function table is loaded before any callback runs.
    unsafe { raw::RedisModule_HashFieldMinExpire }.is_some()
}
