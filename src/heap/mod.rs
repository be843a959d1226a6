//! How the process's heap serves a forward pass's large blocks.
//!
//! A ResNet50 pass at batch 32 and 200x200 allocates activations of up to ~330 MB. glibc's
//! malloc `mmap`s blocks over its threshold and `munmap`s them on free, so every pass
//! page-faults its activations in again, 4 KiB at a time (a PyTorch script spent 7.1 s of
//! a 20.9 s run in the kernel). Its threshold also rises with each freed block, up to
//! 32 MiB, and blocks under it stay in the heap, which fragments and grows. Four modes
//! (`TLAB_HEAP`, read by [`configure_process`]); figures from `tlab bench` and `tlab
//! extract` on this project's 2-core build machine, in `bench/README.md`:
//!
//! - `pool` (default): libtorch's CPU allocator is replaced by a size-keyed cache of
//!   blocks of 1 MiB and more (`src/heap/pool.cpp`). Each block is its own mapping, on
//!   transparent huge pages where the kernel allows, and goes back to its size's free list,
//!   so the next pass finds its blocks faulted in and nothing fragments; the cache never
//!   maps more than twice the peak of live bytes. As fast as `reuse`, with flat memory.
//! - `reuse`: glibc's mmap and trimming off, so the next pass reuses the last one's pages
//!   in the heap. Fast, but the heap fragments: peak RSS grows with the dataset.
//! - `huge`: libtorch backs tensors of 2 MiB and more with transparent huge pages (faults
//!   2 MiB at a time), and the mmap threshold is fixed at 1 MiB, so large blocks always go
//!   back to the kernel: little memory, slower.
//! - `system`: glibc's and libtorch's defaults.
//!
//! TensorFlow avoids the cost with its own allocator; PyTorch users get it from tcmalloc or
//! jemalloc via `LD_PRELOAD`, or from `THP_MEM_ALLOC_ENABLE=1`.
mod pool;

use crate::{Error, Result};
pub use pool::PoolStats;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

/// See the module's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    System,
    Huge,
    Reuse,
    Pool,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::Huge => "huge",
            Mode::Reuse => "reuse",
            Mode::Pool => "pool",
        }
    }

    /// `TLAB_HEAP`'s value; unset means `pool`.
    pub fn from_env() -> Result<Mode> {
        match std::env::var("TLAB_HEAP").as_deref() {
            Err(_) | Ok("pool") => Ok(Mode::Pool),
            Ok("reuse") => Ok(Mode::Reuse),
            Ok("huge") => Ok(Mode::Huge),
            Ok("system") => Ok(Mode::System),
            Ok(other) => Err(Error::invalid("TLAB_HEAP", format!("`{other}`; expected pool, huge, reuse or system"))),
        }
    }
}

static MODE: AtomicU8 = AtomicU8::new(0);
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// The pool's counters; `None` where it is not built (not Linux).
pub fn pool_stats() -> Option<PoolStats> {
    pool::stats()
}

/// Applies `TLAB_HEAP`'s mode to this process. Call it first thing, before any tensor
/// exists and any thread starts (`tlab`'s `main` does, and the tutorial notebooks' first
/// cells): library loops never switch it. c10 reads its huge-page setting once, at
/// its first CPU allocation, and threads started later share the settings.
pub fn configure_process() -> Result<Mode> {
    let mode = Mode::from_env()?;
    if mode == Mode::Huge {
        huge_pages_for_tensors();
    }
    set_mode(mode);
    Ok(mode)
}

/// Switches malloc's settings and libtorch's CPU allocator to `mode`'s; returns whether
/// the platform honoured them. `huge` without huge pages (the kernel's THP is `never`, or
/// the user set `THP_MEM_ALLOC_ENABLE=0`) is `system`: a fixed threshold only pays with
/// huge pages. Blocks already allocated go back to the allocator that made them.
pub fn set_mode(mode: Mode) -> bool {
    let effective = match mode {
        Mode::Huge if !HUGE_PAGES.load(Ordering::Relaxed) => Mode::System,
        Mode::Pool if !pool::BUILT => Mode::Reuse,
        m => m,
    };
    let ok = match effective {
        Mode::Pool => platform::set(Mode::System) && pool::install(true),
        m => platform::set(m) && pool::install(false),
    };
    if ok {
        MODE.store(effective as u8, Ordering::Relaxed);
    }
    ok
}

/// The mode in effect.
pub fn mode() -> Mode {
    match MODE.load(Ordering::Relaxed) {
        x if x == Mode::Pool as u8 => Mode::Pool,
        x if x == Mode::Reuse as u8 => Mode::Reuse,
        x if x == Mode::Huge as u8 => Mode::Huge,
        _ => Mode::System,
    }
}

/// Whether reuse is on.
pub fn reusing() -> bool {
    mode() == Mode::Reuse
}

/// Asks libtorch to back CPU tensors of 2 MiB and more with transparent huge pages
/// (`THP_MEM_ALLOC_ENABLE`). A value already in the environment is the user's and wins
/// (`0` turns it off). The variable is set only while c10 reads it, so child processes
/// (the bench's Python peers) see the user's environment. Returns whether huge pages are
/// on: asked for, and the kernel's THP mode allows them.
/// The user's `THP_MEM_ALLOC_ENABLE=0`: no huge pages, for tensors or the pool.
fn thp_refused() -> bool {
    std::env::var("THP_MEM_ALLOC_ENABLE").is_ok_and(|v| v == "0")
}

fn huge_pages_for_tensors() -> bool {
    let asked = match std::env::var("THP_MEM_ALLOC_ENABLE") {
        Ok(v) => v == "1",
        Err(_) => {
            std::env::set_var("THP_MEM_ALLOC_ENABLE", "1");
            // The first CPU allocation latches c10's setting.
            drop(tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu)));
            std::env::remove_var("THP_MEM_ALLOC_ENABLE");
            true
        }
    };
    let on = asked && matches!(kernel_thp().as_deref(), Some("always" | "madvise"));
    HUGE_PAGES.store(on, Ordering::Relaxed);
    on
}

/// Whether libtorch's large tensors are on huge pages (`huge` and `pool` ask for them),
/// and the kernel's THP mode (`always`, `madvise` or `never`; `None` where the kernel has
/// no THP).
pub fn huge_pages() -> (bool, Option<String>) {
    let on = match mode() {
        Mode::Huge => HUGE_PAGES.load(Ordering::Relaxed),
        Mode::Pool => pool::huge_pages(),
        _ => false,
    };
    (on, kernel_thp())
}

/// Read once: `set_mode` runs per bench batch, and the setting is the administrator's.
fn kernel_thp() -> Option<String> {
    static THP: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    THP.get_or_init(|| {
        let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
        text.split_whitespace().find(|w| w.starts_with('[')).map(|w| w.trim_matches(['[', ']']).to_string())
    })
    .clone()
}

/// With `pool` or `reuse` on, gives cached blocks and the heap's free pages back to the
/// kernel: at the start and end of a long job in a long-lived process (a notebook kernel).
/// The other modes trim by themselves.
pub fn release_free_pages() {
    match mode() {
        Mode::Pool => {
            pool::trim();
            platform::trim();
        }
        Mode::Reuse => platform::trim(),
        _ => {}
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod platform {
    use super::Mode;
    // glibc's defaults: 65536 mmapped blocks at most, trim above 128 KiB, mmap from 128 KiB
    // (glibc then raises that threshold as blocks are freed; once set, it stays fixed).
    const DEFAULT_MMAP_MAX: i32 = 65536;
    const DEFAULT_TRIM: i32 = 128 * 1024;
    const DEFAULT_MMAP_THRESHOLD: i32 = 128 * 1024;
    // Under the 2 MiB of a huge page, over the small tensors and buffers that churn.
    const HUGE_MMAP_THRESHOLD: i32 = 1 << 20;

    pub fn set(mode: Mode) -> bool {
        // Arenas stay at glibc's count (0): with one, the worker threads' small blocks land
        // between the pass's large ones and the heap fragments (1,349 vs 1,121 MB peak on
        // 3,072 images, same speed). The pass's large blocks come from the calling thread.
        let (mmap_max, trim, threshold, arenas) = match mode {
            Mode::Reuse => (0, i32::MAX, DEFAULT_MMAP_THRESHOLD, 0),
            Mode::Huge => (DEFAULT_MMAP_MAX, DEFAULT_TRIM, HUGE_MMAP_THRESHOLD, 0),
            Mode::System | Mode::Pool => (DEFAULT_MMAP_MAX, DEFAULT_TRIM, DEFAULT_MMAP_THRESHOLD, 0),
        };
        // SAFETY: mallopt only changes malloc's tunables; it is thread-safe in glibc.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, mmap_max) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
                && libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1
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
    pub fn set(_mode: super::Mode) -> bool {
        false
    }

    pub fn trim() {}
}
