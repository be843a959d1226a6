//! Stand-in for `tlab dash` until the CLI wires it: the pty tests drive this binary.
//! `tlab-dash-helper [RUN_DIR] [--runs-dir DIR] [--pid PID] [--plain|--tui] [--once] [--fps N]`
//!
//! `TLAB_DASH_TEST_PANIC_MS=N` panics on another thread after N ms, so a test can see
//! the panic hook give the terminal back.
fn main() {
    if let Some(ms) = std::env::var("TLAB_DASH_TEST_PANIC_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            panic!("test panic while the dashboard is up");
        });
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(transfer_lab::tui::dash_main(&args));
}
