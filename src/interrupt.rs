//! Ctrl-C (SIGINT) and SIGTERM as a request to stop cleanly: the training loop
//! checkpoints after its batch, extraction keeps the shards it wrote, a download keeps its
//! part file; each then ends with [`Error::Interrupted`], saying how to resume. A second
//! signal ends the process at once. Only a binary installs the handler ([`install`]); in
//! a notebook the kernel owns the signals.
use crate::{Error, Result};
use std::sync::atomic::{AtomicI32, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: an atomic swap, `_exit`.
    if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
        unsafe { libc::_exit(128 + sig) }
    }
}

/// Routes SIGINT and SIGTERM to [`requested`]. Call once, early, from `main`.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls `_exit`.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

/// The signal received, by name, if one was.
pub fn requested() -> Option<&'static str> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("Ctrl-C (SIGINT)"),
        libc::SIGTERM => Some("SIGTERM"),
        _ => Some("a signal"),
    }
}

/// The exit status a shell expects of a process a signal stopped (128 + signal number).
pub fn exit_code() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(128 + s),
    }
}

/// `Err(Interrupted)` once a signal has come; `kept` says what is saved and how to resume.
pub fn check(kept: impl FnOnce() -> String) -> Result<()> {
    match requested() {
        Some(by) => Err(Error::Interrupted { by: by.to_string(), kept: kept() }),
        None => Ok(()),
    }
}
