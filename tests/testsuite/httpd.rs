//! A tiny HTTP/1.1 server on 127.0.0.1 for the download tests: resume, cut transfers,
//! stalls, and the Hugging Face Hub's redirect to its CDN with the file's SHA-256 in
//! `X-Linked-Etag`.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

/// How the server answers a path.
#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Normal,
    /// First request: headers for the full body, half of it, then close.
    CutOnce,
    /// Always 200 with the whole file, whatever the Range.
    IgnoreRange,
    /// Accept, read the request, never answer.
    Stall,
    /// The body in 4 KiB pieces, 20 ms apart (a slow link to interrupt).
    Slow,
}

#[derive(Default)]
struct State {
    files: HashMap<String, (Vec<u8>, Mode)>,
    /// Extra response headers per path.
    headers: HashMap<String, Vec<(String, String)>>,
    /// path -> the absolute URL a 302 sends the client to.
    redirects: HashMap<String, String>,
    seen: Vec<Seen>,
}

/// A tiny HTTP/1.1 server: one request per connection, `Connection: close`.
pub struct Server {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let st = st.clone();
                std::thread::spawn(move || handle(conn, &st));
            }
        });
        Server { base, state }
    }

    pub fn serve(&self, path: &str, bytes: Vec<u8>, mode: Mode) -> String {
        self.state.lock().unwrap().files.insert(path.to_string(), (bytes, mode));
        format!("{}{path}", self.base)
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.state.lock().unwrap().seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    /// Every request, in order.
    pub fn all_seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Sends `headers` with every answer for `path` (its 302 too).
    pub fn headers(&self, path: &str, headers: &[(&str, &str)]) {
        let h = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.state.lock().unwrap().headers.insert(path.to_string(), h);
    }

    /// `path` answers 302 to `location` (a URL; another host name, e.g. `localhost`, plays
    /// a CDN). Returns the URL of `path`.
    pub fn redirect(&self, path: &str, location: &str) -> String {
        self.state.lock().unwrap().redirects.insert(path.to_string(), location.to_string());
        format!("{}{path}", self.base)
    }

    /// The port, for URLs under another host name.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }
}

fn handle(mut conn: TcpStream, state: &Mutex<State>) {
    let Some((method, path, range)) = read_request(&conn) else {
        return;
    };
    let (file, first, extra, redirect) = {
        let mut st = state.lock().unwrap();
        let first = !st.seen.iter().any(|s| s.path == path);
        st.seen.push(Seen { method: method.clone(), path: path.clone(), range: range.clone() });
        let extra: String = st.headers.get(&path).into_iter().flatten().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        (st.files.get(&path).cloned(), first, extra, st.redirects.get(&path).cloned())
    };
    if let Some(location) = redirect {
        let h = format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let _ = conn.write_all(h.as_bytes());
        return;
    }
    let Some((bytes, mode)) = file else {
        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    if mode == Mode::Stall {
        // Hold the connection until the client gives up and closes it.
        let mut buf = [0u8; 256];
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
        return;
    }
    let start = range.as_deref().filter(|_| mode != Mode::IgnoreRange).and_then(parse_range);
    let len = bytes.len();
    let head = match start {
        Some(s) if s >= len => {
            let h = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = conn.write_all(h.as_bytes());
            return;
        }
        Some(s) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\n{extra}\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            len - 1,
            len - s
        ),
        None => format!("HTTP/1.1 200 OK\r\n{extra}Content-Length: {len}\r\nConnection: close\r\n\r\n"),
    };
    if method == "HEAD" {
        let _ = conn.write_all(head.as_bytes());
        return;
    }
    let body = &bytes[start.unwrap_or(0)..];
    let send = if mode == Mode::CutOnce && first { &body[..body.len() / 2] } else { body };
    if mode == Mode::Slow {
        let _ = conn.write_all(head.as_bytes());
        for piece in send.chunks(4096) {
            if conn.write_all(piece).and_then(|_| conn.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(send));
    let _ = conn.flush();
}

/// Reads the request head; returns (method, path, Range header).
fn read_request(conn: &TcpStream) -> Option<(String, String, Option<String>)> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let method = line.split_whitespace().next()?.to_string();
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    Some((method, path, range))
}

fn parse_range(v: &str) -> Option<usize> {
    v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

/// Deterministic pseudo-random bytes (xorshift64).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}
