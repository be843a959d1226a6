//! The keyboard, read with one blocking `poll(2)` over the terminal and the signal pipe.
//!
//! Not crossterm's reader: on a terminal that hung up (an SSH drop, a killed tmux pane)
//! `read` returns 0 forever and crossterm's reader retries without end, spinning a core
//! and never returning to a loop that could see SIGTERM. Here a hang-up, end of input or
//! a read error is an answer ([`Input::Gone`]), and a signal wakes the wait at once.
use crate::interrupt;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// What one wait brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Keys(Vec<KeyEvent>),
    /// The terminal changed size.
    Resized,
    /// The terminal is gone: hang-up, end of input, or it cannot be read.
    Gone,
    /// A stop was requested (SIGINT, SIGTERM; SIGHUP when nothing detaches on it).
    Signal,
    /// Nothing before the timeout.
    Timeout,
}

pub struct Keyboard {
    fd: Option<RawFd>,
    /// `/dev/tty` when stdin is not the terminal (kept open while we read it).
    _tty: Option<File>,
}

impl Keyboard {
    /// Stdin when it is a terminal, else the controlling terminal; no keyboard at all
    /// when there is neither (then only signals and timeouts end a wait).
    pub fn open() -> Keyboard {
        if std::io::stdin().is_terminal() {
            return Keyboard { fd: Some(0), _tty: None };
        }
        match File::open("/dev/tty") {
            Ok(f) => Keyboard { fd: Some(f.as_raw_fd()), _tty: Some(f) },
            Err(_) => Keyboard { fd: None, _tty: None },
        }
    }

    /// Blocks until a key, a resize, a signal, the terminal's loss, or `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Input {
        if let Some(i) = pending() {
            return i;
        }
        let mut fds = Vec::with_capacity(2);
        if let Some(fd) = self.fd {
            fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        }
        if let Some(fd) = interrupt::wake_fd() {
            fds.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        }
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: a slice of pollfds on the stack; EINTR returns early, which is fine.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if fds.len() > usize::from(self.fd.is_some()) {
            interrupt::drain();
        }
        if let Some(i) = pending() {
            return i;
        }
        if n <= 0 || self.fd.is_none() {
            return Input::Timeout;
        }
        let r = fds[0].revents;
        if r & libc::POLLIN != 0 {
            // Read what is there before believing a hang-up: the last keys may be in it.
            let mut buf = [0u8; 1024];
            // SAFETY: reads into a local buffer; poll said it will not block.
            let got = unsafe { libc::read(fds[0].fd, buf.as_mut_ptr().cast(), buf.len()) };
            if got > 0 {
                return Input::Keys(parse(&buf[..got as usize]));
            }
            let err = std::io::Error::last_os_error().kind();
            if got < 0 && matches!(err, std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) {
                return Input::Timeout;
            }
            return Input::Gone;
        }
        if r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return Input::Gone;
        }
        Input::Timeout
    }
}

fn pending() -> Option<Input> {
    if interrupt::requested().is_some() {
        Some(Input::Signal)
    } else if interrupt::hung_up() {
        Some(Input::Gone)
    } else if interrupt::take_resized() {
        Some(Input::Resized)
    } else {
        None
    }
}

/// Keys from the bytes a terminal in raw mode sends: characters, control keys, and the
/// common escape sequences (arrows, Home/End, Page Up/Down, F1-F4, shift-tab). An escape
/// byte that ends the read is the Esc key; unknown sequences are dropped whole.
pub fn parse(bytes: &[u8]) -> Vec<KeyEvent> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0x1b {
            let (key, used) = escape(&bytes[i + 1..]);
            keys.extend(key);
            i += 1 + used;
            continue;
        }
        let key = match b {
            b'\r' | b'\n' => Some(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
            b'\t' => Some(KeyEvent::new(KeyCode::Tab, KeyModifiers::NONE)),
            0x7f | 0x08 => Some(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE)),
            0x01..=0x1a => Some(KeyEvent::new(KeyCode::Char((b - 1 + b'a') as char), KeyModifiers::CONTROL)),
            _ => None,
        };
        if let Some(k) = key {
            keys.push(k);
            i += 1;
            continue;
        }
        // A UTF-8 character: its length from the lead byte.
        let len = match b {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        let end = (i + len).min(bytes.len());
        if let Some(c) = std::str::from_utf8(&bytes[i..end]).ok().and_then(|s| s.chars().next()) {
            if !c.is_control() {
                keys.push(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            }
        }
        i = end;
    }
    keys
}

/// The key of an escape sequence (the bytes after ESC) and how many bytes it used.
fn escape(rest: &[u8]) -> (Option<KeyEvent>, usize) {
    let plain = |c| Some(KeyEvent::new(c, KeyModifiers::NONE));
    match rest {
        [] | [0x1b, ..] => (plain(KeyCode::Esc), 0),
        [b'O', c, ..] => {
            let k = match c {
                b'P'..=b'S' => plain(KeyCode::F(c - b'P' + 1)),
                b'A' => plain(KeyCode::Up),
                b'B' => plain(KeyCode::Down),
                b'C' => plain(KeyCode::Right),
                b'D' => plain(KeyCode::Left),
                b'H' => plain(KeyCode::Home),
                b'F' => plain(KeyCode::End),
                _ => None,
            };
            (k, 2)
        }
        [b'[', body @ ..] => {
            // CSI: parameter bytes 0x30-0x3f, then one final byte 0x40-0x7e.
            let Some(end) = body.iter().position(|b| (0x40..=0x7e).contains(b)) else {
                return (None, rest.len());
            };
            let (params, fin) = (&body[..end], body[end]);
            let k = match (params, fin) {
                (_, b'A') => plain(KeyCode::Up),
                (_, b'B') => plain(KeyCode::Down),
                (_, b'C') => plain(KeyCode::Right),
                (_, b'D') => plain(KeyCode::Left),
                (_, b'H') => plain(KeyCode::Home),
                (_, b'F') => plain(KeyCode::End),
                (_, b'Z') => Some(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)),
                (b"1" | b"7", b'~') => plain(KeyCode::Home),
                (b"4" | b"8", b'~') => plain(KeyCode::End),
                (b"5", b'~') => plain(KeyCode::PageUp),
                (b"6", b'~') => plain(KeyCode::PageDown),
                (b"11", b'~') => plain(KeyCode::F(1)),
                (b"12", b'~') => plain(KeyCode::F(2)),
                (b"13", b'~') => plain(KeyCode::F(3)),
                (b"14", b'~') => plain(KeyCode::F(4)),
                _ => None,
            };
            (k, 2 + end)
        }
        // Alt+key arrives as ESC then the key: read as the key alone.
        _ => (None, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(b: &[u8]) -> Vec<KeyCode> {
        parse(b).into_iter().map(|k| k.code).collect()
    }

    #[test]
    fn characters_controls_and_sequences() {
        assert_eq!(codes(b"qs?"), [KeyCode::Char('q'), KeyCode::Char('s'), KeyCode::Char('?')]);
        let ctrl = parse(b"\x03\x04");
        assert_eq!(ctrl[0], KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(ctrl[1], KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL));
        assert_eq!(codes(b"\x1b"), [KeyCode::Esc]);
        assert_eq!(codes(b"\x1b[A\x1b[D\x1b[Z"), [KeyCode::Up, KeyCode::Left, KeyCode::BackTab]);
        assert_eq!(codes(b"\x1bOP\x1b[11~\x1b[5~"), [KeyCode::F(1), KeyCode::F(1), KeyCode::PageUp]);
        assert_eq!(codes(b"\x1b[1;5A"), [KeyCode::Up], "modified arrows read as arrows");
        assert_eq!(codes(b"\x1b[200~x"), [KeyCode::Char('x')], "unknown sequences are dropped whole");
        assert_eq!(codes("é\t".as_bytes()), [KeyCode::Char('é'), KeyCode::Tab]);
        assert_eq!(codes(b"\x1b\x1b"), [KeyCode::Esc, KeyCode::Esc]);
    }

    #[test]
    fn a_closed_terminal_is_gone_not_a_spin() {
        // A pipe whose writer closed reads as end of input, as a hung-up terminal does.
        let mut fds = [-1; 2];
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        unsafe { libc::write(fds[1], b"q".as_ptr().cast(), 1) };
        unsafe { libc::close(fds[1]) };
        let mut k = Keyboard { fd: Some(fds[0]), _tty: None };
        assert_eq!(
            k.wait(Duration::from_secs(5)),
            Input::Keys(vec![KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE)])
        );
        // Blocking would end in `Timeout` after 60 s instead.
        assert_eq!(k.wait(Duration::from_secs(60)), Input::Gone);
        unsafe { libc::close(fds[0]) };
    }
}
