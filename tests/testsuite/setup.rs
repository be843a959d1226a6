//! `scripts/setup.sh --check-tools`: a tool in the per-machine folder is trusted only if it
//! runs and is the pinned version; anything else is reported (and `setup.sh` rebuilds it).
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn tool(root: &Path, name: &str, version: &str, body: &[u8], stamp: Option<&str>) {
    let dir = root.join(format!("{name}-{version}"));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let bin = dir.join("bin").join(name);
    std::fs::write(&bin, body).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    if let Some(v) = stamp {
        std::fs::write(dir.join("version"), v).unwrap();
    }
}

fn check(root: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup.sh");
    let out = Command::new("bash").arg(script).arg("--check-tools").env("TLAB_TOOLS_DIR", root).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines().find(|l| l.starts_with(&format!("setup: {name} "))).unwrap_or_else(|| panic!("no {name} line in {out}"))
}

#[test]
fn tools_that_are_missing_broken_or_of_another_version_are_not_trusted() {
    let t = tempfile::tempdir().unwrap();
    let (ok, out) = check(t.path());
    assert!(
        !ok && line(&out, "mdbook").ends_with("missing") && line(&out, "evcxr_jupyter").ends_with("missing"),
        "{out}"
    );

    tool(t.path(), "mdbook", "0.4.52", b"#!/bin/sh\necho mdbook v0.4.52\n", None);
    tool(t.path(), "evcxr_jupyter", "0.22.0", b"#!/bin/sh\nexit 0\n", Some("0.22.0 opt-level=3\n"));
    let (ok, out) = check(t.path());
    assert!(ok && line(&out, "mdbook").ends_with("ready") && line(&out, "evcxr_jupyter").ends_with("ready"), "{out}");

    // Another version in the right folder, a truncated ELF binary, a missing build stamp.
    tool(t.path(), "mdbook", "0.4.52", b"#!/bin/sh\necho mdbook v0.4.40\n", None);
    tool(t.path(), "evcxr_jupyter", "0.22.0", b"\x7fELF\x02\x01\x01\x00\x00\x00", Some("0.22.0 opt-level=3\n"));
    let (ok, out) = check(t.path());
    assert!(!ok, "{out}");
    assert!(line(&out, "mdbook").contains("not mdbook v0.4.52"), "{out}");
    assert!(line(&out, "evcxr_jupyter").contains("does not run"), "{out}");
    tool(t.path(), "evcxr_jupyter", "0.22.0", b"#!/bin/sh\nexit 0\n", None);
    std::fs::remove_file(t.path().join("evcxr_jupyter-0.22.0/version")).unwrap();
    let (_, out) = check(t.path());
    assert!(line(&out, "evcxr_jupyter").contains("unstamped"), "{out}");
    // Built before evcxr was built at opt-level 3 (its stamp had only the version).
    std::fs::write(t.path().join("evcxr_jupyter-0.22.0/version"), "0.22.0\n").unwrap();
    let (ok, out) = check(t.path());
    assert!(!ok && line(&out, "evcxr_jupyter").contains("says '0.22.0', not '0.22.0 opt-level=3'"), "{out}");
}
