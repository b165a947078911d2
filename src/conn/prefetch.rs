//! Asking the CPU to start loading memory that is about to be used.
//!
//! A publish to thousands of subscribers touches each one's connection state
//! once, between system calls; without a hint, each of those first touches
//! waits for memory. Hinting a few subscribers ahead lets the loads run
//! during the previous subscribers' sends. The hint never faults and changes
//! nothing a program can observe, only timing.

/// Cache lines hinted per object at most.
const MAX_LINES: usize = 8;
const LINE: usize = 64;

/// Hints every cache line of the `T` at `p` (up to [`MAX_LINES`]). `p`
/// need not be valid: a prefetch is never a memory access the program can
/// observe.
#[inline(always)]
pub(crate) fn object<T>(p: *const T) {
    let lines = std::mem::size_of::<T>().div_ceil(LINE).clamp(1, MAX_LINES);
    for i in 0..lines {
        line(p.cast::<u8>().wrapping_add(i * LINE));
    }
}

#[inline(always)]
fn line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is a hint: it never faults, whatever the
    // address, and reads nothing the program sees. `unsafe` only because
    // the intrinsic carries `#[target_feature(enable = "sse")]`, which
    // every x86_64 target has.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
