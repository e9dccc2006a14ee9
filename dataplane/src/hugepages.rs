//! Memory helpers for large lookup arrays: transparent huge pages, and a
//! prefetch hint.
//!
//! A full IPv4 route table's 24-bit direct array is 16 to 64 MiB (by the width
//! of its entries); looked up at random destinations it misses the TLB on
//! almost every lookup when it sits in 4 KiB pages. Asking the kernel to back it with 2 MiB pages (`MADV_HUGEPAGE`, honoured
//! when transparent huge pages are in `madvise` or `always` mode) removes those
//! misses. It is advice only: where the kernel declines, nothing changes.
//!
//! The `madvise` call (FFI) and the prefetch intrinsic are the only `unsafe`
//! here.
#![allow(unsafe_code)]

/// Size of a transparent huge page on x86-64.
const HUGE_PAGE: usize = 2 << 20;

/// A vector of `len` copies of `value`, asking for huge pages before the memory
/// is first touched when it spans at least two of them.
pub fn filled_vec<T: Copy>(value: T, len: usize) -> Vec<T> {
    let mut v = advised::<T>(len);
    v.resize(len, value);
    v
}

/// A copy of `src`, with huge pages asked for as in [`filled_vec`] (a plain
/// `clone` would land in ordinary pages).
pub fn copied_vec<T: Copy>(src: &[T]) -> Vec<T> {
    let mut v = advised::<T>(src.len());
    v.extend_from_slice(src);
    v
}

/// An empty vector with room for `len` elements, its memory advised to use
/// huge pages.
fn advised<T>(len: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes >= 2 * HUGE_PAGE {
        let addr = v.as_mut_ptr() as usize;
        let start = addr.next_multiple_of(HUGE_PAGE);
        let end = (addr + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: [start, end) lies inside the allocation `v` owns and nothing
            // else refers to it; MADV_HUGEPAGE only changes how its pages are
            // backed, never their contents, so no Rust value is affected.
            let rc = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
            };
            if rc != 0 {
                tracing::debug!(
                    "madvise(MADV_HUGEPAGE) declined: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
    v
}

/// Asks the processor to bring the cache line holding `r` into the cache. A
/// hint: unlike a load, it retires at once, so a loop of them over a batch of
/// random addresses starts all their cache misses without waiting for any.
#[inline(always)]
pub fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault; the
    // address comes from a live reference anyway. SSE is part of x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}
