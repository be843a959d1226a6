//! Keeps freed memory in the process's heap instead of handing it back to the kernel.
//!
//! glibc's malloc serves every block over its mmap threshold (at most 32 MiB) with a fresh
//! `mmap` and returns it with `munmap` on free. A ResNet50 forward pass at batch 32 and
//! 200x200 allocates activations of up to ~330 MB, so every pass page-faults them in again
//! (a PyTorch script spent 7.1 s of a 20.9 s run in the kernel; 1.5 s of 17.2 s with these
//! settings). With mmap off and trimming off, the second pass reuses the first one's pages.
//! `tlab bench` measures both settings side by side: 1.06x for our net on 2 cores. Opt-in
//! (see [`reuse_freed_memory`]) because the reused heap fragments.
//! TensorFlow avoids the cost with its own allocator; PyTorch users get it from tcmalloc or
//! jemalloc via `LD_PRELOAD`.
use std::sync::atomic::{AtomicBool, Ordering};

static REUSING: AtomicBool = AtomicBool::new(false);

/// Turns heap reuse on when the environment says `TLAB_HEAP=reuse` (once per process;
/// cheap to call again). Best called before other threads start (`tlab` does, first
/// thing). Off by default: it is ~1.07x faster, but the reused heap fragments and peak RSS
/// grew 15.7 MB per 1,000 images at 200x200 (2.1 GB projected at 60,000) against 4.9 MB
/// (1.4 GB) under glibc's defaults (`tlab bench --only e2e-ours --e2e-images 2048,10240`).
pub fn reuse_freed_memory() {
    if std::env::var("TLAB_HEAP").is_ok_and(|v| v == "reuse") && !REUSING.load(Ordering::Relaxed) {
        set_reuse(true);
    }
}

/// Switches between reuse (`true`) and glibc's defaults (`false`); returns whether the
/// platform honoured it. Blocks already in the heap stay there until freed and trimmed.
pub fn set_reuse(on: bool) -> bool {
    let ok = platform::set(on);
    if ok {
        REUSING.store(on, Ordering::Relaxed);
    }
    ok
}

/// Whether reuse is on.
pub fn reusing() -> bool {
    REUSING.load(Ordering::Relaxed)
}

/// With reuse on, gives the heap's free pages back to the kernel: at the start and end of
/// a long job in a long-lived process (a notebook kernel). Nothing to give under glibc's
/// defaults, which trim by themselves.
pub fn release_free_pages() {
    if reusing() {
        platform::trim();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod platform {
    // glibc's defaults: 65536 mmapped blocks at most, trim above 128 KiB.
    const DEFAULT_MMAP_MAX: i32 = 65536;
    const DEFAULT_TRIM: i32 = 128 * 1024;

    pub fn set(on: bool) -> bool {
        // One arena: a thread's own arena maps any block over 64 MiB whatever M_MMAP_MAX
        // says, so threads started after this share the main heap (0: glibc's default count).
        let (mmap_max, trim, arenas) = if on { (0, i32::MAX, 1) } else { (DEFAULT_MMAP_MAX, DEFAULT_TRIM, 0) };
        // SAFETY: mallopt only changes malloc's tunables; it is thread-safe in glibc.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, mmap_max) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
                && libc::mallopt(libc::M_ARENA_MAX, arenas) == 1
        }
    }

    pub fn trim() {
        // SAFETY: malloc_trim only returns free memory to the kernel.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod platform {
    pub fn set(_on: bool) -> bool {
        false
    }

    pub fn trim() {}
}
