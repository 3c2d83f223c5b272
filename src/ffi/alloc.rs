//! The module's allocator: the server's own (so every byte the module holds shows in
//! `used_memory` and counts toward `maxmemory`), counting the bytes held as the server
//! counts them (each allocation's usable size), so that `crm.index-max-memory` caps what
//! `used_memory` sees rather than an estimate.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

use redis_module::alloc::RedisAlloc;
use redis_module::raw;

/// Bytes the module holds now.
static HELD: AtomicUsize = AtomicUsize::new(0);

pub struct CountingAlloc;

/// The usable size of an allocation, as `used_memory` counts it.
fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: the function table is written once at load; `ptr` is a live allocation.
    match unsafe { raw::RedisModule_MallocSize } {
        Some(size) if !ptr.is_null() => unsafe { size(ptr.cast()) },
        _ => 0,
    }
}

// SAFETY: every call is passed on to RedisAlloc unchanged; only the count is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { RedisAlloc.alloc(layout) };
        HELD.fetch_add(usable_size(ptr), Ordering::Relaxed);
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(usable_size(ptr), Ordering::Relaxed);
        unsafe { RedisAlloc.dealloc(ptr, layout) };
    }
}

/// The bytes the module holds (0 where this allocator is not installed: unit tests).
pub fn held_bytes() -> usize {
    HELD.load(Ordering::Relaxed)
}
