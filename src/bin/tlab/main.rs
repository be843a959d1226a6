//! `tlab`: the transfer-lab command line. One file per subcommand under `cmd/` (its flags
//! and its `exec`, which makes one library call); the flag groups several commands share
//! in `flags`. Process-wide policy (the heap, signals, threads) lives here.
use clap::Parser;
use std::io::Write;

mod cmd;
mod flags;

use cmd::{Command, Ctx};

#[derive(Parser)]
#[command(name = "tlab", version, about = "Transfer learning with pretrained ResNets: fetch, extract, train, evaluate")]
pub(crate) struct Cli {
    /// Cache folder for downloads, datasets, weights and features [env: TLAB_CACHE_DIR]
    #[arg(long, global = true)]
    pub(crate) cache_dir: Option<std::path::PathBuf>,
    /// libtorch intra-op threads (default: libtorch's choice)
    #[arg(long, global = true)]
    pub(crate) threads: Option<i32>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

fn main() {
    // First thing, before any tensor exists and any thread starts: c10 reads its huge-page
    // setting once.
    if let Err(e) = transfer_lab::heap::configure_process() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let cli = Cli::parse();
    transfer_lab::interrupt::install();
    if let Some(t) = cli.threads {
        tch::set_num_threads(t);
    }
    let mut ctx = Ctx::new(&cli);
    if let Err(e) = cli.command.exec(&mut ctx) {
        // `let _`: stderr may be a terminal that hung up.
        let _ = writeln!(std::io::stderr(), "error: {}", report(&e));
        std::process::exit(transfer_lab::interrupt::exit_code().unwrap_or(1));
    }
    // A command that returns after a signal (a dashboard) ends by that signal.
    transfer_lab::interrupt::end_by_signal();
}

/// The error and its causes, each once: our errors already end with their cause's text,
/// which `{:#}` would print a second time.
fn report(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out += ": ";
            out += &text;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn each_cause_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e = anyhow::Error::new(transfer_lab::Error::io("writing runs/x/head-last.safetensors", io));
        assert_eq!(report(&e), "writing runs/x/head-last.safetensors: No space left on device");
        let e = anyhow::anyhow!("inner").context("reading the run to resume");
        assert_eq!(report(&e), "reading the run to resume: inner");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["tlab", "dash", "runs/x", "--plain", "--pid", "42", "--once"]).unwrap();
        let Command::Dash(d) = cli.command else { panic!("not dash") };
        assert_eq!((d.run_dir, d.pid, d.plain, d.once), (Some("runs/x".into()), Some(42), true, true));
        assert!(Cli::try_parse_from(["tlab", "dash", "--bogus"]).is_err());
        assert!(Cli::try_parse_from(["tlab", "run", "--device", "gpu"]).is_err());
    }
}
