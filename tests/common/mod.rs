//! Shared by the integration tests: the project's Python, PyTorch references, a torch lock.
#![allow(dead_code)]
#[allow(dead_code)] // used by examples/capture_dashboard.rs
pub mod pty_screen;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python that `scripts/setup.sh --test` provisioned (torch + torchvision), or $TLAB_PYTHON.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TLAB_PYTHON") {
        return PathBuf::from(p);
    }
    let p = root().join(".tlab/venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup.sh --test first", p.display());
    p
}

/// Runs a generator script once per content hash; outputs are kept under target/ so
/// reruns of the suite reuse them.
pub fn generated(script: &str) -> PathBuf {
    static DIRS: OnceLock<Mutex<std::collections::HashMap<String, PathBuf>>> = OnceLock::new();
    let map = DIRS.get_or_init(Default::default);
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = map.get(script) {
        return d.clone();
    }
    let path = root().join(script);
    let text = std::fs::read(&path).unwrap();
    let hash = format!("{:x}", sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&text)));
    let dir = root().join("target/test-fixtures").join(&hash[..16]);
    let done = dir.join(".done");
    if !done.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new(python()).arg(&path).arg(&dir).output().unwrap();
        assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
        std::fs::write(&done, b"").unwrap();
    }
    map.insert(script.to_string(), dir.clone());
    dir
}

/// Serialises tests that run models: two libtorch users on 2 cores slow each other 3-25x.
pub fn torch_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(test_threads());
    g
}

/// Intra-op threads for tests: $TLAB_TEST_THREADS, default 2.
pub fn test_threads() -> i32 {
    std::env::var("TLAB_TEST_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

/// Reads named tensors of a safetensors file into a map.
pub fn read_tensors(path: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// max|a-b| / max|b|: a relative error robust to entries near zero.
pub fn rel_err(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let diff = (a - b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    diff / scale
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}
