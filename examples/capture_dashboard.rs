//! Captures the dashboard's real screen for the book: runs `tlab dash RUN_DIR` in a
//! pseudo-terminal, waits for it to draw, quits with `q`, and writes the screen as text.
//!
//! `cargo run --example capture_dashboard -- TLAB_BIN RUN_DIR OUT.txt [COLSxROWS]`
#[path = "../tests/common/pty_screen.rs"]
mod pty_screen;

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::Write;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [bin, run_dir, out, rest @ ..] = args.as_slice() else {
        return Err("usage: capture_dashboard TLAB_BIN RUN_DIR OUT.txt [COLSxROWS]".into());
    };
    let (cols, rows) = match rest.first() {
        Some(s) => {
            s.split_once('x').and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?))).ok_or("size: COLSxROWS")?
        }
        None => (100u16, 32u16),
    };
    let pair = native_pty_system().openpty(PtySize { rows, cols, pixel_width: 0, pixel_height: 0 })?;
    // A relative program path means ours too (portable-pty would search PATH for it).
    let bin = if bin.contains('/') { std::fs::canonicalize(bin)? } else { bin.into() };
    let mut cmd = CommandBuilder::new(bin);
    cmd.args(["dash", run_dir.as_str()]);
    cmd.env("TERM", "xterm-256color");
    // portable-pty starts children in the home folder; relative paths mean ours.
    cmd.cwd(std::env::current_dir()?);
    let mut child = pair.slave.spawn_command(cmd)?;
    drop(pair.slave);
    let parser = pty_screen::screen_of(pair.master.try_clone_reader()?, rows, cols);
    // A finished run's screen is complete once the footer and the final accuracy show.
    let deadline = Instant::now() + Duration::from_secs(30);
    let screen = loop {
        let s = parser.lock().unwrap().screen().contents();
        if s.contains("? help") && s.contains("FINISHED") {
            // One more frame, so late panels (sparklines) are drawn too.
            std::thread::sleep(Duration::from_millis(600));
            break parser.lock().unwrap().screen().contents();
        }
        if Instant::now() > deadline {
            return Err(format!("the dashboard did not draw a finished run in 30 s; screen:\n{s}").into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut keys = pair.master.take_writer()?;
    keys.write_all(b"q")?;
    keys.flush()?;
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("tlab dash exited with {status:?}").into());
    }
    let text: String = screen.lines().map(|l| l.trim_end().to_string() + "\n").collect();
    let tmp = format!("{out}.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, out)?;
    println!("captured {cols}x{rows} screen of `tlab dash {run_dir}` into {out}");
    Ok(())
}
