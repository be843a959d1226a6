//! The dashboard: whole-screen snapshots from recorded runs, plain output without a
//! terminal, and the real binary in a pseudo-terminal (screen advances, `q` restores).

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use transfer_lab::events::{Envelope, RunEvent, SCHEMA_VERSION};
use transfer_lab::tui::app::{App, ChartTab, Overlay};
use transfer_lab::tui::device::{DeviceInfo, GpuStats, ProcessInfo};
use transfer_lab::tui::tail::Tail;

/// Until `tlab dash` is wired, the pty tests drive the helper binary.
const DASH_BIN: &str = env!("CARGO_BIN_EXE_tlab");

/// `tlab dash ...` as a command.
fn dash_cmd() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(DASH_BIN);
    c.arg("dash");
    c
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events").join(format!("{name}.jsonl"))
}

/// An `App` fed a recorded run, with a fixed clock and a made-up machine.
fn app_from(name: &str) -> App {
    let mut app = App::new("runs/20260301-101500-linear-probe");
    let p = Tail::new(fixture(name)).poll().unwrap();
    for e in &p.events {
        app.state.apply(e);
    }
    app.state.skipped += p.skipped as u64;
    app.now_ms = app.state.last_t_ms.unwrap() + 1_500;
    app.device = DeviceInfo {
        name: "NVIDIA H200".into(),
        gpu: Some(GpuStats { util_pct: 93.0, mem_used_mib: 21_504.0, mem_total_mib: 143_771.0 }),
        process: ProcessInfo { label: "run pid 4242".into(), rss_bytes: Some(1_873_000_000), cpu_pct: Some(104.0) },
    };
    app
}

fn screen(app: &App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| f.render_widget(app, f.area())).unwrap();
    term.backend().to_string()
}

fn snapshots(name: &str, app: &App) {
    insta::assert_snapshot!(format!("{name}_80x24"), screen(app, 80, 24));
    insta::assert_snapshot!(format!("{name}_120x40"), screen(app, 120, 40));
}

#[test]
fn mid_extraction() {
    let app = app_from("mid_extraction");
    assert_eq!(app.state.skipped, 1, "the unknown `gpu_sampled` line is skipped");
    let p = app.state.progress.as_ref().unwrap();
    assert_eq!((p.done, p.total), (33_024, Some(50_000)));
    assert!(p.eta_ms().is_some());
    snapshots("mid_extraction", &app);
}

#[test]
fn mid_training() {
    let mut app = app_from("mid_training");
    assert!(app.state.synthetic, "synthetic data must be flagged");
    assert_eq!(app.state.curves.last_step.unwrap().1, 259, "the half-written last line waits");
    snapshots("mid_training", &app);
    app.chart = ChartTab::StepLoss;
    insta::assert_snapshot!("mid_training_step_loss_80x24", screen(&app, 80, 24));
}

#[test]
fn finished() {
    let mut app = app_from("finished");
    snapshots("finished", &app);
    app.chart = ChartTab::EpochAccuracy;
    app.overlay = Overlay::Help;
    insta::assert_snapshot!("finished_help_80x24", screen(&app, 80, 24));
}

#[test]
fn failed() {
    snapshots("failed", &app_from("failed"));
}

#[test]
fn confirm_stop_and_small_terminal() {
    let mut app = app_from("mid_extraction");
    app.overlay = Overlay::ConfirmStop;
    insta::assert_snapshot!("mid_extraction_confirm_stop_80x24", screen(&app, 80, 24));
    insta::assert_snapshot!("too_small_40x10", screen(&app, 40, 10));
}

#[test]
fn plain_output_when_not_a_terminal() {
    // stdout is a pipe here: no TUI, plain lines, and exit when the run has ended.
    let out = dash_cmd().arg(fixture("finished")).timeout(Duration::from_secs(60)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains('\x1b'), "no escape codes in plain mode");
    assert!(text.contains("run linear-probe: CIFAR-10; pretrained weights"), "{text}");
    assert!(text.contains("test accuracy: 87.12% on 10000 samples"), "{text}");
    assert!(text.lines().count() < 120, "progress is throttled: {} lines", text.lines().count());
    let out = dash_cmd().args([fixture("mid_training").to_str().unwrap(), "--once"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("[SYNTHETIC DATA]"));
}

#[test]
fn missing_run_directory_is_a_named_error() {
    let out = dash_cmd().arg("runs/no-such-run").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("runs/no-such-run"), "{err}");
}

// ---- the real binary in a pseudo-terminal ----

fn line(t_ms: u64, event: RunEvent) -> String {
    serde_json::to_string(&Envelope { v: SCHEMA_VERSION, t_ms, event }).unwrap() + "\n"
}

/// Appends extraction progress (and training steps) to `path` until `stop`;
/// `per_tick` events every 10 ms.
fn writer(path: PathBuf, stop: Arc<AtomicBool>, per_tick: u64) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        let t0 = transfer_lab::events::now_ms();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let mut buf = String::new();
            for _ in 0..per_tick {
                n += 1;
                let t = t0 + n * 10 / per_tick;
                buf += &line(
                    t,
                    RunEvent::ExtractionProgressed {
                        split: "train".into(),
                        done_images: n,
                        total_images: 100_000_000,
                        images_per_s: 100.0 * per_tick as f64,
                    },
                );
                if n % 2 == 0 {
                    buf += &line(t, RunEvent::StepFinished { epoch: 1, step: n, loss: 1.0 / n as f64 });
                }
            }
            f.write_all(buf.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
        n
    })
}

struct Pty {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    parser: Arc<Mutex<vt100::Parser>>,
    /// A plain descriptor of the master: portable-pty's own writer types Ctrl-D when
    /// dropped, which would quit the dashboard in a test of a lost terminal.
    keys: std::fs::File,
    master: Box<dyn portable_pty::MasterPty + Send>,
    /// The screen reader's own descriptor of the master, closed when it stops.
    reading: Arc<AtomicBool>,
    reader: std::thread::JoinHandle<()>,
}

impl Pty {
    fn spawn(run_dir: &Path) -> Pty {
        Self::spawn_with(run_dir, &[])
    }

    fn spawn_with(run_dir: &Path, env: &[(&str, &str)]) -> Pty {
        Self::command(&["dash".as_ref(), run_dir.as_os_str()], env)
    }

    /// `tlab ARGS` in a fresh 80x24 pseudo-terminal (its own session, the terminal its
    /// controlling one, as a shell in a terminal window would start it).
    fn command(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Pty {
        use portable_pty::{native_pty_system, CommandBuilder, PtySize};
        let pair =
            native_pty_system().openpty(PtySize { rows: 24, cols: 80, pixel_width: 0, pixel_height: 0 }).unwrap();
        let mut cmd = CommandBuilder::new(DASH_BIN);
        cmd.args(args);
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        use std::os::fd::FromRawFd;
        let fd = pair.master.as_raw_fd().unwrap();
        // SAFETY: dup returns a new descriptor that the File owns.
        let dup = || unsafe { std::fs::File::from_raw_fd(libc::dup(fd)) };
        let (parser, reading) = (Arc::new(Mutex::new(vt100::Parser::new(24, 80, 0))), Arc::new(AtomicBool::new(true)));
        let reader = {
            let (p, r, mut f) = (parser.clone(), reading.clone(), dup());
            std::thread::spawn(move || {
                use std::io::Read;
                use std::os::fd::AsRawFd;
                let mut buf = [0u8; 65536];
                while r.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                    // SAFETY: one pollfd on the stack.
                    if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 {
                        continue;
                    }
                    match f.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => p.lock().unwrap().process(&buf[..n]),
                    }
                }
            })
        };
        Pty { child, parser, keys: dup(), master: pair.master, reading, reader }
    }

    /// Resizes the terminal (the child gets SIGWINCH) and our model of it.
    fn resize(&self, rows: u16, cols: u16) {
        use portable_pty::PtySize;
        self.parser.lock().unwrap().set_size(rows, cols);
        self.master.resize(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 }).unwrap();
    }

    fn contents(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows something `pick` accepts.
    fn wait_for<T>(&self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = pick(&self.contents()) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{}", self.contents());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Closes the terminal as a killed tmux pane or a dropped SSH session does: the
    /// master side goes, the child's terminal hangs up. Returns the child.
    fn hang_up(self) -> Box<dyn portable_pty::Child + Send + Sync> {
        self.reading.store(false, Ordering::Relaxed);
        self.reader.join().unwrap();
        drop(self.keys);
        // The last descriptor of the master: the child's terminal hangs up.
        drop(self.master);
        self.child
    }

    fn quit(mut self) {
        self.keys.write_all(b"q").unwrap();
        self.keys.flush().unwrap();
        self.expect_restored_exit();
    }

    fn expect_restored_exit(self) {
        self.expect_restored_exit_status(|s| s.success(), "success");
    }

    fn expect_restored_exit_status(mut self, ok: impl Fn(&portable_pty::ExitStatus) -> bool, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the dashboard did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(ok(&status), "exit status {status:?}, expected {want}");
        // The last bytes may still be on their way through the reader thread.
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.parser.lock().unwrap().screen().alternate_screen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let p = self.parser.lock().unwrap();
        assert!(!p.screen().alternate_screen(), "alternate screen left");
        assert!(!p.screen().hide_cursor(), "cursor shown again");
    }
}

/// The count before " / 100,000,000" on the progress line.
fn done_count(screen: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.contains(" / 100,000,000"))?;
    line.split(" / ").next()?.split_whitespace().last()?.replace(',', "").parse().ok()
}

fn run_dir_with_start() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let t = transfer_lab::events::now_ms();
    let start = line(t, RunEvent::RunStarted { name: "pty".into(), synthetic: true, note: "SYNTHETIC data".into() })
        + &line(t, RunEvent::StageStarted { stage: "extract".into() });
    std::fs::write(dir.path().join("events.jsonl"), start).unwrap();
    dir
}

#[test]
fn pty_dashboard_advances_and_q_restores_the_terminal() {
    let dir = run_dir_with_start();
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(dir.path().join("events.jsonl"), stop.clone(), 2);
    let pty = Pty::spawn(dir.path());
    let first = pty.wait_for("a progress count", done_count);
    assert!(pty.contents().contains("SYNTHETIC DATA"));
    let second = pty.wait_for("the count to advance", |s| done_count(s).filter(|&n| n > first));
    assert!(second > first);
    pty.resize(40, 120);
    pty.wait_for("a redraw at 120x40", |s| {
        let footer = s.lines().find(|l| l.contains("? help"))?;
        // The progress gauge spans the wider screen and the logs get more rows.
        (s.lines().any(|l| l.chars().count() > 100) && s.lines().count() > 30).then_some(footer.len())
    });
    pty.quit();
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    assert!(!dir.path().join("STOP").exists(), "q alone does not stop the run");
}

#[test]
fn pty_stop_key_writes_the_stop_file_after_confirmation() {
    let dir = run_dir_with_start();
    let mut pty = Pty::spawn(dir.path());
    pty.wait_for("the dashboard", |s| s.contains("RUNNING").then_some(()));
    pty.keys.write_all(b"s").unwrap();
    pty.wait_for("the confirmation", |s| s.contains("Stop the run gracefully?").then_some(()));
    assert!(!dir.path().join("STOP").exists(), "nothing before `y`");
    pty.keys.write_all(b"y").unwrap();
    pty.wait_for("the stop notice", |s| s.contains("STOP REQUESTED").then_some(()));
    assert!(dir.path().join("STOP").exists());
    // Ctrl-C arrives as a key in raw mode and leaves like `q`.
    pty.keys.write_all(b"\x03").unwrap();
    pty.expect_restored_exit();
}

#[test]
fn pty_panic_restores_the_terminal() {
    let dir = run_dir_with_start();
    let pty = Pty::spawn_with(dir.path(), &[("TLAB_DASH_TEST_PANIC_MS", "1500")]);
    pty.wait_for("the dashboard", |s| s.contains("RUNNING").then_some(()));
    let parser = pty.parser.clone();
    pty.expect_restored_exit();
    let screen = parser.lock().unwrap().screen().contents();
    assert!(screen.contains("test panic while the dashboard is up"), "panic message on the normal screen:\n{screen}");
}

#[test]
#[cfg(unix)]
fn pty_sigterm_restores_the_terminal_then_ends_by_the_signal() {
    let dir = run_dir_with_start();
    let pty = Pty::spawn(dir.path());
    pty.wait_for("the dashboard", |s| s.contains("RUNNING").then_some(()));
    let pid = pty.child.process_id().expect("the dashboard's pid") as libc::pid_t;
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    pty.expect_restored_exit_status(|s| !s.success() && s.signal().is_some(), "death by SIGTERM");
}

/// The dashboard's own CPU use while a writer appends thousands of events per second.
/// Prints the figure; asserts only that the loop is not spinning.
#[test]
#[cfg(target_os = "linux")]
fn pty_cpu_use_on_a_fast_event_stream() {
    let dir = run_dir_with_start();
    let stop = Arc::new(AtomicBool::new(false));
    // 50 progress + 25 step events every ~10 ms: about 5,000-7,000 events/s.
    let w = writer(dir.path().join("events.jsonl"), stop.clone(), 50);
    let pty = Pty::spawn(dir.path());
    pty.wait_for("a progress count", done_count);
    let pid = pty.child.process_id().unwrap();
    let ticks = || transfer_lab::tui::device::cpu_ticks(pid).unwrap();
    let (t0, c0) = (Instant::now(), ticks());
    let n0 = pty.wait_for("a count", done_count);
    std::thread::sleep(Duration::from_secs(5));
    let (secs, used) = (t0.elapsed().as_secs_f64(), ticks() - c0);
    let n1 = pty.wait_for("a count", done_count);
    let cpu_pct = used as f64 / transfer_lab::tui::device::TICKS_PER_S / secs * 100.0;
    let rate = (n1 - n0) as f64 * 1.5 / secs;
    println!("dashboard CPU use: {cpu_pct:.1}% of one core while tailing ~{rate:.0} events/s ({secs:.1} s)");
    pty.quit();
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    assert!(cpu_pct < 80.0, "the dashboard uses {cpu_pct:.0}% CPU");
}

#[test]
fn a_run_folder_deleted_under_the_dashboard_is_said_and_ends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("20260101-000000-deleted");
    std::fs::create_dir(&run).unwrap();
    // A run still training: plain mode would follow it for ever.
    std::fs::copy(fixture("mid_training"), run.join("events.jsonl")).unwrap();
    let mut child = std::process::Command::new(DASH_BIN)
        .arg("dash")
        .arg(&run)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its first line says it read the file (on a loaded machine a fixed sleep was not
    // always enough for it to start); then it follows, still running.
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(!first.is_empty(), "the dashboard printed nothing");
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "the dashboard follows a run that has not ended");
    std::fs::remove_dir_all(&run).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the dashboard did not notice the folder went");
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(!status.success());
    assert!(err.contains(&format!("run folder {} was deleted", run.display())), "{err}");
}

/// A feature folder of a sharded extraction, 5 shards of 10 rows: 0 and 2 done, 1 held by
/// this (live) process as part 1/2; parts 0/2 and 1/2 recorded.
fn sharded_folder() -> tempfile::TempDir {
    use transfer_lab::features::shards::{self, ClaimInfo, Extraction, Part, PartRecord};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let what = Extraction {
        key: "abc".into(),
        dataset: "synthetic".into(),
        split: "train".into(),
        arch: "resnet50".into(),
        image_size: 224,
        images: 44,
        shard_size: 10,
        shards: 5,
    };
    shards::record_extraction(d, &what).unwrap();
    for i in [0, 2] {
        finish_shard(d, i);
    }
    let me = ClaimInfo { host: shards::host(), pid: std::process::id(), part: Part { k: 1, n: 2 } };
    std::fs::write(d.join("shard-00001.claim"), serde_json::to_vec(&me).unwrap()).unwrap();
    for (k, list) in [(0, vec![0, 2, 4]), (1, vec![1, 3])] {
        let rec = PartRecord { key: "abc".into(), part: Part { k, n: 2 }, shards: list, done: false };
        shards::record_part(d, &rec).unwrap();
    }
    dir
}

fn finish_shard(d: &Path, i: usize) {
    use transfer_lab::features::shards::{self, Done};
    std::fs::write(d.join(shards::shard_file(i)), b"x").unwrap();
    shards::mark_done(d, i, &Done { key: "abc".into(), rows: 10, sha256: "0".into(), skipped: vec![] }).unwrap();
}

#[test]
fn pty_board_of_a_sharded_extraction_follows_its_folder() {
    let dir = sharded_folder();
    let pty = Pty::spawn(dir.path());
    let s = pty.wait_for("the board", |s| s.contains("#>#..").then(|| s.to_string()));
    assert!(s.contains("RUNNING") && s.contains("resnet50 at 224 px") && s.contains("45.5%"), "{s}");
    assert!(s.contains("part 1/2") && s.contains("running shard 1"), "{s}");
    // Another worker finishes shard 4: the board rereads the folder.
    finish_shard(dir.path(), 4);
    pty.wait_for("shard 4 done", |s| s.contains("#>#.#").then_some(()));
    pty.quit();
}

/// Kills the child if the test fails before it ended, so no process outlives the test.
struct KillOnDrop(Box<dyn portable_pty::Child + Send + Sync>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for a child that lost its terminal; `None` if it is still running at `deadline`.
fn exit_of(
    child: &mut Box<dyn portable_pty::Child + Send + Sync>,
    within: Duration,
) -> Option<portable_pty::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU ticks (user + system) of a process's main thread: the dashboard's thread.
#[cfg(target_os = "linux")]
fn main_thread_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `tlab run --dash` on synthetic data, long enough to outlive the checks below.
fn run_with_dash(tmp: &Path) -> Pty {
    let threads = crate::common::test_threads().to_string();
    let (cache, runs) = (tmp.join("cache"), tmp.join("runs"));
    let mut args: Vec<&std::ffi::OsStr> = vec!["--threads".as_ref(), threads.as_ref(), "--cache-dir".as_ref()];
    args.push(cache.as_os_str());
    for a in ["run", "--dash", "--strategy", "fine-tune", "--dataset", "synthetic", "--synthetic-train", "400"] {
        args.push(a.as_ref());
    }
    for a in ["--synthetic-test", "80", "--arch", "resnet18", "--weights", "random", "--size", "64"] {
        args.push(a.as_ref());
    }
    for a in ["--epochs", "2", "--image-epochs", "3", "--runs-dir"] {
        args.push(a.as_ref());
    }
    args.push(runs.as_os_str());
    Pty::command(&args, &[])
}

fn the_run(tmp: &Path) -> PathBuf {
    let runs: Vec<_> = std::fs::read_dir(tmp.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// The terminal of `tlab run --dash` goes away mid-run (a killed tmux pane): the
/// dashboard lets go without spinning, the run finishes with its files whole, and the
/// process exits. Then `tlab dash` on the finished run, whose terminal goes too, exits.
#[test]
#[cfg(target_os = "linux")]
fn pty_lost_terminal_detaches_and_the_run_finishes() {
    let _lock = crate::common::torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pty = run_with_dash(tmp.path());
    pty.wait_for("the dashboard", |s| s.contains("SYNTHETIC DATA").then_some(()));
    let pid = pty.child.process_id().unwrap();
    let mut child = KillOnDrop(pty.hang_up());
    let t0 = main_thread_ticks(pid);
    std::thread::sleep(Duration::from_secs(3));
    let events = std::fs::read_to_string(the_run(tmp.path()).join("events.jsonl")).unwrap();
    assert!(!events.contains("run_finished"), "the run ended before the check; make it longer");
    let spent = (main_thread_ticks(pid) - t0) as f64 / transfer_lab::tui::device::TICKS_PER_S;
    println!("dashboard thread after the hang-up: {spent:.2} s of CPU in 3 s");
    // Blocked in a join it costs nothing; the spin this guards against took 1.1 s here
    // while sharing 2 cores with the run.
    assert!(spent < 0.3, "the dashboard's thread spun after its terminal went: {spent:.2} s of CPU in 3 s");
    let status = exit_of(&mut child.0, Duration::from_secs(600)).expect("the run did not end");
    assert!(status.success(), "{status:?}");
    let run = the_run(tmp.path());
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(events.lines().last().unwrap().contains("run_finished"), "{events}");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert!(summary["test_accuracy"].is_number(), "{summary}");

    // The finished run's dashboard, left open, then its terminal closed.
    let pty = Pty::spawn(&run);
    pty.wait_for("the finished run", |s| s.contains("FINISHED").then_some(()));
    let mut child = KillOnDrop(pty.hang_up());
    let status = exit_of(&mut child.0, Duration::from_secs(30)).expect("the dashboard outlived its terminal");
    assert!(status.success(), "{status:?}");
}

/// After the terminal went, SIGTERM still stops the run cleanly: it checkpoints, says so
/// in its events, and exits 143.
#[test]
#[cfg(target_os = "linux")]
fn pty_sigterm_after_a_lost_terminal_stops_the_run_cleanly() {
    let _lock = crate::common::torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let pty = run_with_dash(tmp.path());
    pty.wait_for("the dashboard", |s| s.contains("SYNTHETIC DATA").then_some(()));
    let mut child = KillOnDrop(pty.hang_up());
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.0.try_wait().unwrap().is_none(), "the run ended with its terminal");
    // SAFETY: signals our own child.
    assert_eq!(unsafe { libc::kill(child.0.process_id().unwrap() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = exit_of(&mut child.0, Duration::from_secs(120)).expect("SIGTERM was ignored");
    assert_eq!(status.exit_code(), 128 + 15, "{status:?}");
    let events = std::fs::read_to_string(the_run(tmp.path()).join("events.jsonl")).unwrap();
    let last = events.lines().last().unwrap();
    assert!(last.contains("run_failed") && last.contains("interrupted by SIGTERM"), "{last}");
}
