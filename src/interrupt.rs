//! Ctrl-C (SIGINT), SIGTERM and SIGHUP as a request to stop cleanly: the training loop
//! checkpoints after its batch, extraction keeps the shards it wrote, a download keeps its
//! part file; each then ends with [`Error::Interrupted`], saying how to resume. A second
//! SIGINT or SIGTERM ends the process at once (a hang-up often arrives twice, from the
//! kernel and from the shell, so a repeated SIGHUP does not). Only a binary installs the
//! handlers ([`install`]); in a notebook the kernel owns the signals.
//!
//! While a dashboard shows a run in this process ([`detach_on_hangup`]), SIGHUP means
//! "the terminal went away": the dashboard detaches and the run goes on.
//!
//! Every handler also writes a byte into a pipe, so a loop that waits ([`wait`], the
//! dashboard's keyboard) wakes at once instead of polling a flag.
use crate::{Error, Result};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;
use std::time::Duration;

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static HUNG_UP: AtomicBool = AtomicBool::new(false);
static DETACH_ON_HANGUP: AtomicBool = AtomicBool::new(false);
static RESIZED: AtomicBool = AtomicBool::new(false);
/// The signal pipe's ends; -1 until [`install`].
static WAKE_READ: AtomicI32 = AtomicI32::new(-1);
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: atomics, write(2), _exit(2).
    match sig {
        libc::SIGWINCH => RESIZED.store(true, Ordering::SeqCst),
        libc::SIGHUP => {
            HUNG_UP.store(true, Ordering::SeqCst);
            // Writes to a hung-up terminal fail, and Rust's printing panics on that:
            // output goes nowhere instead, and the work can finish or stop cleanly.
            silence_lost_terminal();
            if !DETACH_ON_HANGUP.load(Ordering::SeqCst) {
                let _ = SIGNAL.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
        _ => {
            if SIGNAL.swap(sig, Ordering::SeqCst) != 0 {
                unsafe { libc::_exit(128 + sig) }
            }
        }
    }
    wake();
}

fn wake() {
    let fd = WAKE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: a one-byte write to our own non-blocking pipe; a full pipe already wakes.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

fn handle(sig: libc::c_int) {
    // SAFETY: the handler only touches atomics and calls write and _exit.
    unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
}

/// Routes SIGINT, SIGTERM and SIGHUP to [`requested`]. Call once, early, from `main`.
pub fn install() {
    static PIPE: Once = Once::new();
    PIPE.call_once(|| {
        let mut fds = [-1; 2];
        // SAFETY: pipe2 fills two descriptors we own from here on.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } == 0 {
            WAKE_READ.store(fds[0], Ordering::SeqCst);
            WAKE_WRITE.store(fds[1], Ordering::SeqCst);
        }
    });
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        handle(sig);
    }
}

/// From now on SIGHUP detaches a dashboard instead of stopping the work: the terminal
/// that sends it is gone, and the run it showed should finish. Never undone: once a
/// terminal has gone, later hang-ups are only its echoes.
pub fn detach_on_hangup() {
    DETACH_ON_HANGUP.store(true, Ordering::SeqCst);
}

/// Wakes [`wait`] on terminal resizes too (SIGWINCH), for a full-screen dashboard.
pub fn watch_resize() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| handle(libc::SIGWINCH));
}

/// Points stdout and stderr at `/dev/null` where they are a terminal that hung up; a
/// live terminal (a SIGHUP sent by hand) keeps them. Async-signal-safe: `poll`, `open`,
/// `dup2` and `close` only.
pub fn silence_lost_terminal() {
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        let mut p = libc::pollfd { fd, events: 0, revents: 0 };
        // SAFETY: plain syscalls on descriptors this process owns, no allocation.
        unsafe {
            if libc::poll(&mut p, 1, 0) == 1 && p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup2(null, fd);
                    libc::close(null);
                }
            }
        }
    }
}

/// Ends the process by the signal that asked it to stop, if one did, with the signal's
/// default action, so a parent sees "killed by SIGTERM" as it would without our handler.
pub fn end_by_signal() {
    let sig = SIGNAL.load(Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: resetting a handler and raising a signal are plain libc calls.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
}

/// The terminal hung up (SIGHUP) since the process started.
pub fn hung_up() -> bool {
    HUNG_UP.load(Ordering::SeqCst)
}

/// True once after each resize of the terminal.
pub fn take_resized() -> bool {
    RESIZED.swap(false, Ordering::SeqCst)
}

/// The read end of the signal pipe, for a loop that waits on it with other descriptors
/// (`poll(2)`); `None` when [`install`] was not called (a library user).
pub fn wake_fd() -> Option<RawFd> {
    Some(WAKE_READ.load(Ordering::SeqCst)).filter(|&fd| fd >= 0)
}

/// Empties the signal pipe after a wake-up.
pub fn drain() {
    if let Some(fd) = wake_fd() {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer from our own non-blocking pipe.
        while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// Blocks for `timeout` or until a signal comes; true when a stop was requested.
/// Without [`install`] it simply sleeps.
pub fn wait(timeout: Duration) -> bool {
    if requested().is_some() {
        return true;
    }
    match wake_fd() {
        Some(fd) => {
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one pollfd on the stack; EINTR just returns early.
            unsafe { libc::poll(&mut p, 1, ms) };
            drain();
        }
        None => std::thread::sleep(timeout),
    }
    requested().is_some()
}

/// The signal received, by name, if one was.
pub fn requested() -> Option<&'static str> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        libc::SIGINT => Some("Ctrl-C (SIGINT)"),
        libc::SIGTERM => Some("SIGTERM"),
        libc::SIGHUP => Some("a hang-up (SIGHUP)"),
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
