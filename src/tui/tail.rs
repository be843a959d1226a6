//! Follows a growing `events.jsonl`, like `tail -F`, yielding whole parsed lines.
//!
//! The writer (`JsonlSink`) appends one line per write, but a reader can still catch a
//! line half-way (shared filesystems, other writers), so bytes after the last newline
//! wait for their end. A file that shrinks or is replaced (new inode) is read again from
//! the start and the caller is told to reset what it built from the old one.
use crate::events::{parse_line, Envelope};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// At most this many bytes per poll, so catching up on a huge file keeps the UI live.
const MAX_READ_PER_POLL: usize = 8 << 20;

/// Longer lines are no event of ours (the largest are a few KiB): they are skipped, and
/// never held whole, so a file of garbage without newlines cannot grow the reader.
pub const MAX_LINE: usize = 1 << 20;

/// What one [`Tail::poll`] found.
#[derive(Debug, Default)]
pub struct Poll {
    /// The file was replaced or truncated: drop state built from earlier events first.
    pub reset: bool,
    pub events: Vec<Envelope>,
    /// Whole lines that did not parse (unknown kinds, other versions, garbage).
    pub skipped: usize,
    /// The file was read before and is now missing (its run folder deleted, or moved).
    pub gone: bool,
}

pub struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// Identity of the open file, to notice a replacement under the same name.
    id: Option<(u64, u64)>,
    offset: u64,
    /// Bytes after the last newline: a line still being written.
    partial: Vec<u8>,
    /// The line being written is over `MAX_LINE` (already counted as skipped): its bytes
    /// are dropped until its newline.
    overlong: bool,
}

impl Tail {
    /// Does not open yet: the file may not exist until the run writes its first event.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Tail { path: path.into(), file: None, id: None, offset: 0, partial: Vec::new(), overlong: false }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what was appended since the last poll. A missing file is not an error
    /// (yet to be created, or mid-replacement); other IO errors are.
    pub fn poll(&mut self) -> std::io::Result<Poll> {
        let mut out = Poll::default();
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.gone = self.file.is_some();
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        let id = file_id(&meta);
        let replaced = self.file.is_some() && id.is_some() && id != self.id;
        if replaced || meta.len() < self.offset {
            out.reset = true;
            self.file = None;
            self.offset = 0;
            self.partial.clear();
            self.overlong = false;
        }
        if self.file.is_none() {
            self.file = Some(File::open(&self.path)?);
            self.id = id;
        }
        if meta.len() == self.offset {
            return Ok(out);
        }
        let file = self.file.as_mut().expect("opened above");
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        let n = file.take(MAX_READ_PER_POLL as u64).read_to_end(&mut buf)?;
        self.offset += n as u64;
        self.split_lines(&buf, &mut out);
        Ok(out)
    }

    fn split_lines(&mut self, mut buf: &[u8], out: &mut Poll) {
        while !buf.is_empty() {
            let (line, rest, ended) = match buf.iter().position(|&b| b == b'\n') {
                Some(nl) => (&buf[..nl], &buf[nl + 1..], true),
                None => (buf, &buf[buf.len()..], false),
            };
            buf = rest;
            if !self.overlong {
                self.partial.extend_from_slice(line);
                if self.partial.len() > MAX_LINE {
                    self.partial = Vec::new();
                    self.overlong = true;
                    out.skipped += 1;
                }
            }
            // An overlong line's end closes it without parsing.
            if ended && !std::mem::take(&mut self.overlong) {
                let whole = std::mem::take(&mut self.partial);
                parse_into(&whole, out);
            }
        }
    }
}

fn parse_into(line: &[u8], out: &mut Poll) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    match parse_line(text) {
        Some(env) => out.events.push(env),
        None => out.skipped += 1,
    }
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const A: &str = r#"{"v":1,"t_ms":1,"kind":"stage_started","stage":"fetch"}"#;
    const B: &str = r#"{"v":1,"t_ms":2,"kind":"stage_started","stage":"extract"}"#;

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn missing_file_waits_then_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut t = Tail::new(&path);
        assert!(t.poll().unwrap().events.is_empty());
        append(&path, &format!("{A}\n"));
        assert_eq!(t.poll().unwrap().events.len(), 1);
    }

    #[test]
    fn half_written_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (head, rest) = B.split_at(20);
        append(&path, &format!("{A}\n{head}"));
        let mut t = Tail::new(&path);
        let p = t.poll().unwrap();
        assert_eq!((p.events.len(), p.skipped), (1, 0));
        assert!(t.poll().unwrap().events.is_empty());
        append(&path, &format!("{rest}\n"));
        let p = t.poll().unwrap();
        assert_eq!((p.events.len(), p.skipped), (1, 0));
        assert_eq!(p.events[0].t_ms, 2);
    }

    #[test]
    fn unknown_kinds_and_garbage_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append(&path, &format!("{A}\n{{\"v\":1,\"t_ms\":3,\"kind\":\"from_the_future\"}}\nnot json\n\n{B}\n"));
        let p = Tail::new(&path).poll().unwrap();
        assert_eq!((p.events.len(), p.skipped), (2, 2));
    }

    #[test]
    fn truncated_file_is_read_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append(&path, &format!("{A}\n{B}\n"));
        let mut t = Tail::new(&path);
        assert_eq!(t.poll().unwrap().events.len(), 2);
        std::fs::write(&path, format!("{B}\n")).unwrap();
        let p = t.poll().unwrap();
        assert!(p.reset);
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.events[0].t_ms, 2);
    }

    #[test]
    #[cfg(unix)]
    fn replaced_file_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        append(&path, &format!("{A}\n"));
        let mut t = Tail::new(&path);
        assert_eq!(t.poll().unwrap().events.len(), 1);
        // Replaced by rename with a longer file: the size check alone would miss it.
        let new = dir.path().join("new.jsonl");
        append(&new, &format!("{B}\n{B}\n{B}\n"));
        std::fs::rename(&new, &path).unwrap();
        let p = t.poll().unwrap();
        assert!(p.reset);
        assert_eq!(p.events.len(), 3);
        assert!(!t.poll().unwrap().reset);
    }

    #[test]
    fn a_deleted_file_is_said_gone_once_it_was_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut t = Tail::new(&path);
        assert!(!t.poll().unwrap().gone, "not yet created is not gone");
        append(&path, &format!("{A}\n"));
        assert!(!t.poll().unwrap().gone);
        std::fs::remove_file(&path).unwrap();
        assert!(t.poll().unwrap().gone);
    }

    #[test]
    fn overlong_lines_are_skipped_without_being_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut t = Tail::new(&path);
        append(&path, &format!("{A}\n"));
        append(&path, &"x".repeat(MAX_LINE / 2));
        assert_eq!(t.poll().unwrap().events.len(), 1);
        append(&path, &"x".repeat(MAX_LINE));
        let p = t.poll().unwrap();
        assert_eq!((p.events.len(), p.skipped), (0, 1));
        assert!(t.partial.is_empty() && t.overlong, "the overlong line is not held");
        append(&path, &format!("{}\n{B}\n", "x".repeat(10)));
        let p = t.poll().unwrap();
        assert_eq!((p.events.len(), p.skipped), (1, 0), "the line after it is read");
        assert_eq!(p.events[0].t_ms, 2);
    }
}
