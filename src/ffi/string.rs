//! Module strings: owned ones freed on drop, and the copy of a string the server lends.

use std::os::raw::c_char;
use std::ptr;

use redis_module::{raw, RedisString};

use super::api;
use crate::error::CrmError;

/// An owned `RedisModuleString`, freed on drop.
pub struct ModuleString(*mut raw::RedisModuleString);

impl ModuleString {
    pub fn new(bytes: &[u8]) -> Result<Self, CrmError> {
        let create = api!(RedisModule_CreateString);
        // SAFETY: a NULL context makes an unmanaged string that we free in Drop.
        let inner = unsafe {
            create(
                ptr::null_mut(),
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
        Ok(ModuleString(inner))
    }

    /// Takes ownership of a string the server handed over.
    ///
    /// # Safety
    /// `inner` is a live, unmanaged string (created with no context, or retained) that
    /// nothing else frees: it is freed when the `ModuleString` drops.
    pub unsafe fn adopt(inner: *mut raw::RedisModuleString) -> Self {
        ModuleString(inner)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        copy_bytes(self.0)
    }

    pub(super) fn as_ptr(&self) -> *mut raw::RedisModuleString {
        self.0
    }
}

impl Drop for ModuleString {
    fn drop(&mut self) {
        // SAFETY: we own the string; see `new` and `adopt`.
        if let Some(free) = unsafe { raw::RedisModule_FreeString } {
            unsafe { free(ptr::null_mut(), self.0) };
        }
    }
}

/// A setting's value as CONFIG GET shows it. Redis copies what a getter returns and never
/// frees it, so a setting keeps one string per value and lends it on every call.
pub struct SharedString(ModuleString);

// SAFETY: configuration callbacks and commands run on the main thread with the GIL held;
// the string is created, read and freed only there.
unsafe impl Send for SharedString {}
unsafe impl Sync for SharedString {}

impl SharedString {
    pub fn new(bytes: &[u8]) -> Result<Self, CrmError> {
        ModuleString::new(bytes).map(SharedString)
    }

    /// The string, lent: the crate passes the pointer on and Redis only copies it.
    pub fn lend(&self) -> RedisString {
        RedisString::from_redis_module_string(ptr::null_mut(), self.0.as_ptr())
    }
}

/// The bytes of a string the server lends, for as long as it lends it (`'a` is the
/// caller's promise).
pub(super) fn lend_bytes<'a>(string: *const raw::RedisModuleString) -> &'a [u8] {
    // SAFETY: the function table is loaded.
    let Some(ptr_len) = (unsafe { raw::RedisModule_StringPtrLen }) else {
        return &[];
    };
    if string.is_null() {
        return &[];
    }
    let mut len = 0usize;
    // SAFETY: `string` is live for `'a`; the server keeps its bytes unchanged meanwhile.
    let data = unsafe { ptr_len(string, &mut len) };
    if data.is_null() {
        return &[];
    }
    unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
}

pub(super) fn copy_bytes(string: *const raw::RedisModuleString) -> Vec<u8> {
    lend_bytes(string).to_vec()
}
