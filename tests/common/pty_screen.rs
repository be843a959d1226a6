//! A pseudo-terminal's screen as vt100 sees it; shared by the dashboard's pty tests and
//! `examples/capture_dashboard.rs` (which includes this file by path).
use std::io::Read;
use std::sync::{Arc, Mutex};

/// Feeds everything the child writes into a vt100 parser of `rows` x `cols`, on a thread,
/// so the child never blocks on a full pty buffer.
pub fn screen_of(mut reader: Box<dyn Read + Send>, rows: u16, cols: u16) -> Arc<Mutex<vt100::Parser>> {
    let parser = Arc::new(Mutex::new(vt100::Parser::new(rows, cols, 0)));
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
    parser
}
