//! The terminal loop: raw mode and the alternate screen, rereading, keys, capped redraws;
//! one loop for a run's dashboard and an extraction's board.
//!
//! The terminal is restored on every way out: return, error (a guard's `Drop`), panic
//! (a hook, also for panics on other threads while the dashboard is up), Ctrl-C (a key in
//! raw mode), SIGINT, SIGTERM (they wake the loop, which returns
//! [`DashExit::Signalled`]: the caller stops the work and ends by the signal), and the
//! terminal's loss (SIGHUP, end of input, a failed draw: [`DashExit::Detached`], the work
//! goes on).
use super::app::{Action, App};
use super::board::{Board, Screen as BoardView, BOARD_INTENTS};
use super::device::{watched_pid, Sampler};
use super::input::{Input, Keyboard};
use super::keys::{self, Intent};
use super::tail::Tail;
use super::{DashExit, DashOptions, RunFiles};
use crate::error::IoContext;
use crate::events::now_ms;
use crate::{interrupt, Result};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::KeyEvent;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
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

struct Guard;

impl Guard {
    fn enter() -> Result<(Guard, Terminal<CrosstermBackend<Stdout>>)> {
        install_panic_hook();
        // A lost terminal detaches the dashboard; the keyboard wakes on resizes.
        interrupt::detach_on_hangup();
        interrupt::watch_resize();
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

/// What the loop shows: a run's dashboard, or a sharded extraction's board.
trait Screen {
    /// How often its files are reread.
    const TICK: Duration;
    /// The screen's keys, from the one table.
    const INTENTS: &'static [Intent];
    /// Rereads its files; true when something changed.
    fn refresh(&mut self) -> Result<bool>;
    /// True when the screen should be redrawn for the time alone (a clock).
    fn stale(&self) -> bool {
        false
    }
    fn draw(&mut self, f: &mut ratatui::Frame);
    /// A key of one of [`Self::INTENTS`]; `Some` leaves the dashboard.
    fn key(&mut self, k: KeyEvent) -> Option<DashExit>;
}

/// The one terminal loop. Everything it waits on wakes it: a key, a resize, a signal,
/// the terminal's loss, the next reread or frame. It never spins: each turn blocks in
/// [`Keyboard::wait`].
fn show<S: Screen>(screen: &mut S, opts: &DashOptions) -> Result<DashExit> {
    let frame_gap = Duration::from_secs_f64(1.0 / f64::from(opts.fps.clamp(1, 60)));
    let mut keyboard = Keyboard::open();
    let (_guard, mut term) = Guard::enter()?;
    let mut last_draw: Option<Instant> = None;
    let mut dirty = true;
    let mut next_tick = Instant::now();
    loop {
        if !ACTIVE.load(Ordering::SeqCst) {
            // A panic elsewhere restored the terminal.
            return Ok(DashExit::Closed);
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + S::TICK;
            dirty |= screen.refresh()?;
        }
        dirty |= screen.stale();
        if dirty && last_draw.is_none_or(|t| t.elapsed() >= frame_gap) {
            if term.draw(|f| screen.draw(f)).is_err() {
                // Drawing fails once the terminal is gone (its size cannot be read).
                return Ok(detached());
            }
            last_draw = Some(Instant::now());
            dirty = false;
        }
        // Wait until the next reread, or the next allowed frame when one is due.
        let mut wait = next_tick.saturating_duration_since(Instant::now());
        if dirty {
            wait = wait.min(last_draw.map_or(Duration::ZERO, |t| frame_gap.saturating_sub(t.elapsed())));
        }
        match keyboard.wait(wait) {
            Input::Keys(keys) => {
                // A burst of keys costs one redraw.
                for k in keys {
                    dirty = true;
                    if let Some(exit) = screen.key(k) {
                        return Ok(exit);
                    }
                }
            }
            Input::Resized => dirty = true,
            Input::Gone => return Ok(detached()),
            Input::Signal => return Ok(DashExit::Signalled),
            Input::Timeout => {}
        }
    }
}

/// The terminal went away: give the terminal back as far as it can be, then send
/// output nowhere, so that the work finishing on another thread cannot fail on it.
fn detached() -> DashExit {
    restore();
    interrupt::silence_lost_terminal();
    DashExit::Detached
}

/// A run's dashboard: its events file and stop file, reread every tick.
struct RunScreen<'a> {
    files: &'a RunFiles,
    tail: Tail,
    app: App,
    sampler: Sampler,
}

impl Screen for RunScreen<'_> {
    const TICK: Duration = Duration::from_millis(100);
    const INTENTS: &'static [Intent] = App::INTENTS;

    fn refresh(&mut self) -> Result<bool> {
        let mut changed = poll_files(&mut self.tail, self.files, &mut self.app)?;
        let device = self.sampler.latest();
        if device != self.app.device {
            self.app.device = device;
            changed = true;
        }
        Ok(changed)
    }

    /// The clock in the header ticks once a second even without events.
    fn stale(&self) -> bool {
        now_ms() / 1000 != self.app.now_ms / 1000
    }

    fn draw(&mut self, f: &mut ratatui::Frame) {
        self.app.now_ms = now_ms();
        f.render_widget(&self.app, f.area());
    }

    fn key(&mut self, k: KeyEvent) -> Option<DashExit> {
        match self.app.handle_key(k)? {
            Action::Quit => return Some(DashExit::Quit { stop_requested: self.app.stop_requested }),
            Action::RequestStop => request_stop(self.files, &mut self.app),
        }
        None
    }
}

pub fn run(files: &RunFiles, opts: &DashOptions) -> Result<DashExit> {
    let (pid, label) = watched_pid(&files.dir, opts.pid);
    let mut screen = RunScreen {
        files,
        tail: Tail::new(&files.events),
        app: App::new(files.dir.path().display().to_string()),
        sampler: Sampler::start(pid, label, Duration::from_secs(2)),
    };
    show(&mut screen, opts)
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
struct BoardScreen<'a> {
    dir: &'a std::path::Path,
    board: Board,
    /// The last read error, shown while the last good board stays on screen.
    message: Option<String>,
}

impl Screen for BoardScreen<'_> {
    const TICK: Duration = Duration::from_millis(500);
    const INTENTS: &'static [Intent] = BOARD_INTENTS;

    fn refresh(&mut self) -> Result<bool> {
        // Workers rename files in and out while we read: a failed read is shown and
        // retried.
        match Board::read(self.dir) {
            Ok(b) => {
                self.board = b;
                self.message = None;
            }
            Err(e) => self.message = Some(format!("{e} (retrying)")),
        }
        Ok(true)
    }

    fn draw(&mut self, f: &mut ratatui::Frame) {
        f.render_widget(BoardView { board: &self.board, message: self.message.as_deref() }, f.area());
    }

    fn key(&mut self, k: KeyEvent) -> Option<DashExit> {
        (keys::intent_of(&k, Self::INTENTS) == Some(Intent::Quit)).then_some(DashExit::Quit { stop_requested: false })
    }
}

pub fn run_board(dir: &std::path::Path, opts: &DashOptions) -> Result<DashExit> {
    let mut screen = BoardScreen { dir, board: Board::read(dir)?, message: None };
    show(&mut screen, opts)
}
