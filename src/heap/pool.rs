//! The pool: libtorch's CPU allocator replaced by a size-keyed cache of large blocks, in
//! `pool.cpp` beside this file (C++, since c10's allocator interface is a C++ class;
//! build.rs compiles it against libtorch's headers, on Linux).

/// The pool's state, for tests and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes mapped for tensors in use.
    pub live: u64,
    /// Bytes mapped and free, kept for the next request of their size.
    pub cached: u64,
    /// The most bytes live at once since the last trim; `live + cached` never exceeds
    /// twice it.
    pub peak: u64,
    pub hits: u64,
    pub misses: u64,
    /// Cached blocks given back to the kernel.
    pub unmapped: u64,
}

#[cfg(tlab_pool)]
mod imp {
    use super::PoolStats;
    use std::sync::atomic::{AtomicBool, Ordering};

    extern "C" {
        fn tlab_pool_install(on: i32, min_block: usize, huge_pages: i32);
        fn tlab_pool_trim();
        fn tlab_pool_stats(out: *mut u64);
    }

    pub const BUILT: bool = true;
    // Under the 2 MiB of a huge page, over the small tensors and buffers that churn.
    const MIN_BLOCK: usize = 1 << 20;
    static HUGE: AtomicBool = AtomicBool::new(false);

    pub fn install(on: bool) -> bool {
        // The user's `THP_MEM_ALLOC_ENABLE=0` turns huge pages off here too.
        let huge = on
            && !super::super::thp_refused()
            && matches!(super::super::kernel_thp().as_deref(), Some("always" | "madvise"));
        HUGE.store(huge, Ordering::Relaxed);
        // SAFETY: plain C calls; the pool locks its own state.
        unsafe { tlab_pool_install(on as i32, MIN_BLOCK, huge as i32) };
        true
    }

    pub fn huge_pages() -> bool {
        HUGE.load(Ordering::Relaxed)
    }

    pub fn trim() {
        // SAFETY: as above.
        unsafe { tlab_pool_trim() }
    }

    pub fn stats() -> Option<PoolStats> {
        let mut v = [0u64; 6];
        // SAFETY: writes six u64s into `v`.
        unsafe { tlab_pool_stats(v.as_mut_ptr()) };
        let [live, cached, peak, hits, misses, unmapped] = v;
        Some(PoolStats { live, cached, peak, hits, misses, unmapped })
    }
}

#[cfg(not(tlab_pool))]
mod imp {
    pub const BUILT: bool = false;

    pub fn install(on: bool) -> bool {
        !on
    }

    pub fn huge_pages() -> bool {
        false
    }

    pub fn trim() {}

    pub fn stats() -> Option<super::PoolStats> {
        None
    }
}

pub use imp::{huge_pages, install, stats, trim, BUILT};
