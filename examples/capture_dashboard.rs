//! Captures the dashboard's real screen for the book: runs `tlab dash RUN_DIR` in a
//! pseudo-terminal, waits for it to draw, quits with `q`, and writes the screen as text.
//!
//! `cargo run --example capture_dashboard -- TLAB_BIN RUN_DIR OUT.txt [COLSxROWS]`
use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
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
    let mut cmd = CommandBuilder::new(bin);
    cmd.args(["dash", run_dir.as_str()]);
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd)?;
    drop(pair.slave);
    let parser = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
    let mut reader = pair.master.try_clone_reader()?;
    let p = parser.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            p.lock().unwrap().process(&buf[..n]);
        }
    });
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
