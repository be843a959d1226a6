//! The terminal loop: raw mode and the alternate screen, tailing, keys, capped redraws.
//!
//! The terminal is restored on every way out: return, error (a guard's `Drop`), panic
//! (a hook, also for panics on other threads while the dashboard is up), Ctrl-C (a key in
//! raw mode), and SIGTERM or SIGHUP (noted by a handler, acted on within a tick: the
//! terminal is restored, then the signal's default action ends the process as it would
//! have without the dashboard).
use super::app::{Action, App};
use super::device::{watched_pid, Sampler};
use super::tail::Tail;
use super::{DashExit, DashOptions, RunFiles};
use crate::error::IoContext;
use crate::events::now_ms;
use crate::Result;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use std::io::Stdout;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

/// True while this process has the terminal in raw mode on the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Leaves raw mode and the alternate screen and shows the cursor; once, whoever calls.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(std::io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    }
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        // Restore first, so the panic message lands on the normal screen, readable.
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// The terminating signal received while the dashboard is up; 0 for none.
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

#[cfg(unix)]
extern "C" fn note_signal(sig: libc::c_int) {
    // Only an atomic store: the handler may run between any two instructions.
    SIGNALLED.store(sig, Ordering::SeqCst);
}

#[cfg(unix)]
fn install_signal_handlers() {
    static HANDLERS: Once = Once::new();
    HANDLERS.call_once(|| {
        for sig in [libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
            unsafe { libc::signal(sig, note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
        }
    });
}

#[cfg(not(unix))]
fn install_signal_handlers() {}

/// After a terminating signal: restores the terminal, then lets the signal's default
/// action end the process (exit status "killed by SIGTERM", as without the dashboard).
fn end_by_signal() {
    let sig = SIGNALLED.load(Ordering::SeqCst);
    if sig == 0 {
        return;
    }
    restore();
    #[cfg(unix)]
    // SAFETY: resetting a handler and raising a signal are plain libc calls.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

struct Guard;

impl Guard {
    fn enter() -> Result<(Guard, Terminal<CrosstermBackend<Stdout>>)> {
        install_panic_hook();
        install_signal_handlers();
        terminal::enable_raw_mode().ctx(|| "entering raw mode".into())?;
        ACTIVE.store(true, Ordering::SeqCst);
        let guard = Guard; // from here on, any early return restores
        execute!(std::io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
            .ctx(|| "entering the alternate screen".into())?;
        let term = Terminal::new(CrosstermBackend::new(std::io::stdout())).ctx(|| "opening the terminal".into())?;
        Ok((guard, term))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// How often the events file and the stop file are looked at.
const TICK: Duration = Duration::from_millis(100);

pub fn run(files: &RunFiles, opts: &DashOptions) -> Result<DashExit> {
    let (pid, label) = watched_pid(&files.dir, opts.pid);
    let sampler = Sampler::start(pid, label, Duration::from_secs(2));
    let mut tail = Tail::new(&files.events);
    let mut app = App::new(files.dir.path().display().to_string());
    let frame_gap = Duration::from_secs_f64(1.0 / f64::from(opts.fps.clamp(1, 60)));
    let (_guard, mut term) = Guard::enter()?;
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    let mut next_tick = Instant::now();
    loop {
        end_by_signal();
        if !ACTIVE.load(Ordering::SeqCst) || opts.close.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            // A panic elsewhere restored the terminal, or the owner closed us.
            return Ok(DashExit::Closed);
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + TICK;
            dirty |= poll_files(&mut tail, files, &mut app)?;
            let device = sampler.latest();
            if device != app.device {
                app.device = device;
                dirty = true;
            }
        }
        let now = now_ms();
        // The clock in the header ticks once a second even without events.
        if now / 1000 != app.now_ms / 1000 {
            dirty = true;
        }
        let due = last_draw.is_none_or(|t| t.elapsed() >= frame_gap);
        if dirty && due {
            app.now_ms = now;
            term.draw(|f| f.render_widget(&app, f.area())).ctx(|| "drawing".into())?;
            last_draw = Some(Instant::now());
            dirty = false;
        }
        // Sleep in the key wait until the next tick or the next allowed frame.
        let mut wait = next_tick.saturating_duration_since(Instant::now());
        if dirty {
            wait = wait.min(last_draw.map_or(Duration::ZERO, |t| frame_gap.saturating_sub(t.elapsed())));
        }
        if event::poll(wait).ctx(|| "reading the keyboard".into())? {
            // Drain everything queued, so a key burst costs one redraw.
            while event::poll(Duration::ZERO).ctx(|| "reading the keyboard".into())? {
                match event::read().ctx(|| "reading the keyboard".into())? {
                    Event::Key(k) => {
                        dirty = true;
                        match app.handle_key(k) {
                            Some(Action::Quit) => return Ok(DashExit::Quit { stop_requested: app.stop_requested }),
                            Some(Action::RequestStop) => request_stop(files, &mut app),
                            None => {}
                        }
                    }
                    Event::Resize(..) => dirty = true,
                    _ => {}
                }
            }
        }
    }
}

/// Applies new events and notices a `STOP` file; true when something changed.
fn poll_files(tail: &mut Tail, files: &RunFiles, app: &mut App) -> Result<bool> {
    let p = tail.poll().ctx(|| format!("reading {}", files.events.display()))?;
    let mut changed = p.reset || !p.events.is_empty() || p.skipped > 0;
    if p.gone {
        let text = format!("{}; what was read stays on screen (q quits)", super::gone(files));
        changed |= app.message.as_deref() != Some(text.as_str());
        app.message = Some(text);
    }
    if p.reset {
        app.state = Default::default();
    }
    for e in &p.events {
        app.state.apply(e);
    }
    app.state.skipped += p.skipped as u64;
    let stop = files.dir.stop_requested();
    changed |= stop != app.stop_requested;
    app.stop_requested = stop;
    Ok(changed)
}

fn request_stop(files: &RunFiles, app: &mut App) {
    match files.dir.request_stop("tlab dash") {
        Ok(()) => {
            app.stop_requested = true;
            app.message = Some("stop requested: the run stops after its current batch or epoch".into());
        }
        Err(e) => app.message = Some(format!("could not request a stop: {e}")),
    }
}

/// `tlab dash FOLDER` on a sharded extraction: the folder is reread twice a second.
pub fn run_board(dir: &std::path::Path, opts: &DashOptions) -> Result<DashExit> {
    use super::board::{Board, Screen};
    let mut board = Board::read(dir)?;
    let mut message: Option<String> = None;
    let (_guard, mut term) = Guard::enter()?;
    let mut next_read = Instant::now() + BOARD_TICK;
    loop {
        end_by_signal();
        if !ACTIVE.load(Ordering::SeqCst) || opts.close.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Ok(DashExit::Closed);
        }
        if Instant::now() >= next_read {
            next_read = Instant::now() + BOARD_TICK;
            // Workers rename files in and out while we read: a failed read is shown and
            // retried, the last good board stays on screen.
            match Board::read(dir) {
                Ok(b) => {
                    board = b;
                    message = None;
                }
                Err(e) => message = Some(format!("{e} (retrying)")),
            }
        }
        term.draw(|f| f.render_widget(Screen { board: &board, message: message.as_deref() }, f.area()))
            .ctx(|| "drawing".into())?;
        let wait = next_read.saturating_duration_since(Instant::now());
        if event::poll(wait).ctx(|| "reading the keyboard".into())? {
            while event::poll(Duration::ZERO).ctx(|| "reading the keyboard".into())? {
                if let Event::Key(k) = event::read().ctx(|| "reading the keyboard".into())? {
                    use ratatui::crossterm::event::{KeyCode, KeyModifiers};
                    let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        return Ok(DashExit::Quit { stop_requested: false });
                    }
                }
            }
        }
    }
}

const BOARD_TICK: Duration = Duration::from_millis(500);
