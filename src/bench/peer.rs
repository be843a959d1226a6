//! A long-lived Python benchmark peer (`bench/peer.py`): one process per framework, its
//! models built and warmed once, driven by a line protocol so its repetitions interleave
//! with ours in the same run.
use crate::{Error, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// What a peer says when it is ready.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PeerInfo {
    pub framework: String,
    pub version: String,
}

pub struct Peer {
    pub info: PeerInfo,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// How to start a peer.
pub struct PeerSpec<'a> {
    pub python: &'a Path,
    pub script: &'a Path,
    pub framework: &'a str,
    /// torchvision's builder name (`resnet50`, `convnext_tiny`); Keras runs ResNet50.
    pub model: &'a str,
    pub size: i64,
    pub batch: i64,
    pub threads: i32,
    pub device: &'a str,
    pub variants: &'a [&'a str],
    /// The peer's stderr (framework logs) goes here.
    pub log: &'a Path,
}

impl Peer {
    /// Starts the peer and waits until its models are built and warmed up.
    pub fn start(spec: &PeerSpec) -> Result<Peer> {
        let fail = |reason: String| Error::Peer { framework: spec.framework.into(), reason };
        let log = std::fs::File::create(spec.log).map_err(|e| fail(format!("creating {}: {e}", spec.log.display())))?;
        let mut child = Command::new(spec.python)
            .arg(spec.script)
            .args(["--framework", spec.framework, "--model", spec.model, "--device", spec.device])
            .args(["--size", &spec.size.to_string(), "--batch", &spec.batch.to_string()])
            .args(["--threads", &spec.threads.to_string(), "--variants", &spec.variants.join(",")])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| fail(format!("starting {}: {e}", spec.python.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(fail("no pipes to the peer".into()));
        };
        let mut peer = Peer {
            info: PeerInfo { framework: spec.framework.into(), version: String::new() },
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let ready = peer.reply("ready").map_err(|e| match e {
            Error::Peer { reason, .. } => fail(format!("{reason} (its log: {})", spec.log.display())),
            other => other,
        })?;
        peer.info = serde_json::from_str(&ready).map_err(|e| fail(format!("bad ready line `{ready}`: {e}")))?;
        Ok(peer)
    }

    /// Runs `batches` timed batches of `variant`; returns images/s.
    pub fn run(&mut self, variant: &str, batches: usize) -> Result<f64> {
        self.send(&format!("run {variant} {batches}"))?;
        let line = self.reply("ok")?;
        let ips = line.split_whitespace().next().and_then(|v| v.parse::<f64>().ok());
        ips.ok_or_else(|| self.error(format!("bad answer `ok {line}`")))
    }

    /// The peer's peak resident set size, bytes.
    pub fn peak_rss(&mut self) -> Result<u64> {
        self.send("rss")?;
        let line = self.reply("rss")?;
        line.trim().parse().map_err(|_| self.error(format!("bad answer `rss {line}`")))
    }

    fn send(&mut self, line: &str) -> Result<()> {
        writeln!(self.stdin, "{line}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| self.error(format!("writing `{line}`: {e}")))
    }

    /// Reads lines until `@tlab <tag> ...`; returns the rest. Other stdout lines are chatter.
    fn reply(&mut self, tag: &str) -> Result<String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).map_err(|e| self.error(format!("reading: {e}")))?;
            if n == 0 {
                let status = self.child.try_wait().ok().flatten();
                return Err(self.error(format!("exited before answering `{tag}` (status {status:?})")));
            }
            let Some(rest) = line.trim_end().strip_prefix("@tlab ") else { continue };
            let (got, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if got == "err" {
                return Err(self.error(rest.to_string()));
            }
            if got == tag {
                return Ok(rest.to_string());
            }
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::Peer { framework: self.info.framework.clone(), reason }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        // Give it a moment to exit on its own, then end it (only this child).
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
