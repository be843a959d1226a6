//! Hub files against a fake Hub on 127.0.0.1: `resolve/` answers 302 to a "CDN" (the
//! same server under the name `localhost`) with `X-Linked-Etag`, as huggingface.co does.
//! Python's huggingface_hub shares the cache both ways.
use crate::httpd::{Mode, Server};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use transfer_lab::download::Downloader;
use transfer_lab::events::{RunEvent, VecSink};
use transfer_lab::hub::{cached, fetch_hub_file_with, HubCache, HubFile};
use transfer_lab::settings::Settings;
use transfer_lab::Error;

const REPO: &str = "tiny-org/tiny-vit";
const REV: &str = "0123456789abcdef0123456789abcdef01234567";
const FILE: &str = "model.safetensors";

/// A 1 MiB safetensors file with one tensor `w`.
fn safetensors_bytes(dir: &Path) -> Vec<u8> {
    let path = dir.join("gen.safetensors");
    let t = tch::Tensor::arange(256 * 1024, (tch::Kind::Float, tch::Device::Cpu)).reshape([256, 1024]);
    tch::Tensor::write_safetensors(&[("w", &t)], &path).unwrap();
    std::fs::read(path).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Serves `bytes` as REPO's FILE at REV, announcing `sha` (what the Hub says the file is).
fn fake_hub(server: &Server, bytes: Vec<u8>, sha: &str, mode: Mode) {
    let cdn = format!("/cdn/{sha}");
    let size = bytes.len().to_string();
    server.serve(&cdn, bytes, mode);
    let resolve = format!("/{REPO}/resolve/{REV}/{FILE}");
    server.redirect(&resolve, &format!("http://localhost:{}{cdn}", server.port()));
    let etag = format!("\"{sha}\"");
    server.headers(&resolve, &[("X-Linked-Etag", &etag), ("X-Linked-Size", &size), ("X-Repo-Commit", REV)]);
}

fn file(sha: Option<&str>) -> HubFile {
    let sha = sha.map(|s| &*Box::leak(s.to_string().into_boxed_str()));
    HubFile { repo: REPO, revision: REV, file: FILE, sha256: sha, size_bytes: None, license: "apache-2.0" }
}

fn settings(hf_home: &Path, server: &Server, offline: bool) -> Settings {
    let vars = [
        ("HF_HOME", hf_home.display().to_string()),
        ("HF_ENDPOINT", server.base.clone()),
        ("HF_HUB_OFFLINE", if offline { "1" } else { "" }.to_string()),
    ];
    Settings::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
}

fn fast() -> Downloader {
    Downloader { connect_timeout: Duration::from_secs(2), read_timeout: Duration::from_secs(2), retries: 2 }
}

fn logs(sink: &VecSink) -> String {
    let lines = sink.0.iter().filter_map(|e| match e {
        RunEvent::Log { message, .. } => Some(message.as_str()),
        _ => None,
    });
    lines.collect::<Vec<_>>().join("\n")
}

/// Everything under `dir`, relative, sorted (symlinks not followed).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// huggingface_hub's `hf_hub_download` in a process of its own; returns its path.
fn python_download(hf_home: &Path, server: &Server, offline: bool) -> std::process::Output {
    let script = "import sys\nfrom huggingface_hub import hf_hub_download\n\
                  print(hf_hub_download(sys.argv[1], sys.argv[2], revision=sys.argv[3]))";
    Command::new(crate::common::python())
        .args(["-c", script, REPO, FILE, REV])
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", &server.base)
        .env("HF_HUB_OFFLINE", if offline { "1" } else { "0" })
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_XET", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .output()
        .unwrap()
}

fn stdout_path(out: &std::process::Output) -> PathBuf {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "huggingface_hub failed: {stderr}");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn first_fetch_fills_the_hub_layout_then_we_and_python_find_it_without_a_request() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let bytes = safetensors_bytes(tmp.path());
    let sha = sha256_hex(&bytes);
    fake_hub(&server, bytes.clone(), &sha, Mode::Normal);
    let home = tmp.path().join("hf");
    let s = settings(&home, &server, false);
    let f = file(Some(&sha));
    assert_eq!(cached(&f, &s), None);

    let mut sink = VecSink::default();
    let path = fetch_hub_file_with(&f, &s, &fast(), &mut sink).unwrap();
    let repo = home.join("hub/models--tiny-org--tiny-vit");
    assert_eq!(path, repo.join(format!("snapshots/{REV}/{FILE}")));
    assert_eq!(std::fs::read_link(&path).unwrap(), PathBuf::from(format!("../../blobs/{sha}")));
    assert_eq!(std::fs::read(repo.join(format!("blobs/{sha}"))).unwrap(), bytes);
    let tensors = tch::Tensor::read_safetensors(&path).unwrap();
    assert_eq!(tensors[0].1.size(), vec![256, 1024]);
    // No refs for a commit revision, no partial file, a lock folder as huggingface_hub has.
    let names = tree(&repo);
    assert_eq!(
        names,
        [
            "blobs",
            &format!("blobs/{sha}"),
            "snapshots",
            &format!("snapshots/{REV}"),
            &format!("snapshots/{REV}/{FILE}")
        ]
    );
    assert!(logs(&sink).contains(&format!("{REPO} {FILE}: license apache-2.0, https://huggingface.co/{REPO}")));
    let methods: Vec<_> = server.all_seen().into_iter().map(|s| format!("{} {}", s.method, s.path)).collect();
    assert_eq!(methods, [format!("GET /{REPO}/resolve/{REV}/{FILE}"), format!("GET /cdn/{sha}")]);

    // A fresh call finds the snapshot: no request.
    let mut sink = VecSink::default();
    assert_eq!(fetch_hub_file_with(&f, &s, &fast(), &mut sink).unwrap(), path);
    assert!(logs(&sink).contains("in the Hugging Face cache"), "{}", logs(&sink));
    assert_eq!(cached(&f, &s), Some(path.clone()));
    // Python, in its own process and offline, opens the same file.
    assert_eq!(stdout_path(&python_download(&home, &server, true)), path);
    assert_eq!(server.all_seen().len(), 2, "no request after the first fetch");
}

#[test]
fn a_file_python_downloaded_is_ours_and_an_unpinned_fetch_trusts_x_linked_etag() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let bytes = safetensors_bytes(tmp.path());
    let sha = sha256_hex(&bytes);
    fake_hub(&server, bytes.clone(), &sha, Mode::Normal);
    let py_home = tmp.path().join("py");
    let py_path = stdout_path(&python_download(&py_home, &server, false));
    let before = server.all_seen().len();
    for f in [file(Some(&sha)), file(None)] {
        let got = fetch_hub_file_with(&f, &settings(&py_home, &server, false), &fast(), &mut VecSink::default());
        assert_eq!(got.unwrap(), py_path);
    }
    assert_eq!(server.all_seen().len(), before, "Python's download was used as it is");

    // Unpinned, into an empty cache: HEAD for the SHA-256, then the download, checked.
    let home = tmp.path().join("ours");
    let path = fetch_hub_file_with(&file(None), &settings(&home, &server, false), &fast(), &mut VecSink::default());
    assert_eq!(std::fs::read(path.unwrap()).unwrap(), bytes);
    let methods: Vec<_> = server.all_seen()[before..].iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, ["HEAD", "GET", "GET"]);
    assert!(HubCache::new(home.join("hub")).blob(REPO, &sha).is_file());
}

#[test]
fn offline_with_an_empty_cache_says_what_is_missing_and_where() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("hf");
    let err = fetch_hub_file_with(&file(None), &settings(&home, &server, true), &fast(), &mut VecSink::default());
    let err = err.unwrap_err();
    assert!(matches!(err, Error::HubOffline { .. }), "{err:?}");
    let msg = err.to_string();
    let entry = home.join(format!("hub/models--tiny-org--tiny-vit/snapshots/{REV}/{FILE}"));
    for part in [REPO, REV, FILE, "HF_HUB_OFFLINE", &entry.display().to_string(), "hf download", "tlab fetch weights"] {
        assert!(msg.contains(part), "{part} missing from: {msg}");
    }
    assert!(server.all_seen().is_empty());
}

#[test]
fn a_corrupt_download_errors_naming_the_file_and_leaves_nothing_in_the_cache() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let bytes = safetensors_bytes(tmp.path());
    let sha = sha256_hex(&bytes);
    let mut corrupt = bytes.clone();
    corrupt[5000] ^= 0xff;
    fake_hub(&server, corrupt, &sha, Mode::Normal);
    let home = tmp.path().join("hf");
    for f in [file(Some(&sha)), file(None)] {
        let err = fetch_hub_file_with(&f, &settings(&home, &server, false), &fast(), &mut VecSink::default());
        let msg = err.unwrap_err().to_string();
        assert!(msg.contains("checksum mismatch") && msg.contains(&format!("{REPO} {FILE}")), "{msg}");
        assert!(msg.contains(&sha), "{msg}");
        let repo = home.join("hub/models--tiny-org--tiny-vit");
        assert_eq!(tree(&repo), ["blobs"], "no blob, no partial file, no snapshot entry");
    }
}

#[test]
fn a_cut_download_resumes_from_the_incomplete_blob() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let bytes = safetensors_bytes(tmp.path());
    let sha = sha256_hex(&bytes);
    fake_hub(&server, bytes.clone(), &sha, Mode::CutOnce);
    let home = tmp.path().join("hf");
    let path =
        fetch_hub_file_with(&file(Some(&sha)), &settings(&home, &server, false), &fast(), &mut VecSink::default());
    assert_eq!(std::fs::read(path.unwrap()).unwrap(), bytes);
    let ranges: Vec<_> = server.seen(&format!("/cdn/{sha}")).into_iter().map(|s| s.range).collect();
    assert_eq!(ranges, [None, Some(format!("bytes={}-", bytes.len() / 2))]);
    assert!(!HubCache::new(home.join("hub")).incomplete(REPO, &sha).exists());
}

#[test]
fn a_cached_file_of_another_digest_or_size_is_refused_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start();
    let home = tmp.path().join("hf");
    let cache = HubCache::new(home.join("hub"));
    let other = "c".repeat(64);
    std::fs::create_dir_all(cache.blob(REPO, &other).parent().unwrap()).unwrap();
    std::fs::write(cache.blob(REPO, &other), b"another revision's file").unwrap();
    let entry = cache.link_snapshot(REPO, REV, FILE, &other).unwrap();
    let s = settings(&home, &server, false);
    let err = fetch_hub_file_with(&file(Some(&"d".repeat(64))), &s, &fast(), &mut VecSink::default()).unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err:?}");
    assert!(err.to_string().contains(&entry.display().to_string()), "{err}");
    let sized = HubFile { size_bytes: Some(1000), ..file(Some(&other)) };
    let err = fetch_hub_file_with(&sized, &s, &fast(), &mut VecSink::default()).unwrap_err().to_string();
    assert!(err.contains("23 bytes") && err.contains("1000") && err.contains(&entry.display().to_string()), "{err}");
    assert!(server.all_seen().is_empty());
}

#[test]
fn a_header_that_claims_more_than_the_file_holds_fails_the_load_naming_the_file() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = safetensors_bytes(tmp.path());
    bytes.truncate(bytes.len() - 4096);
    // The Hub's digest is of these bytes: the download is whole; the file is not.
    let sha = sha256_hex(&bytes);
    fake_hub(&server, bytes, &sha, Mode::Normal);
    let s = settings(&tmp.path().join("hf"), &server, false);
    let path = fetch_hub_file_with(&file(None), &s, &fast(), &mut VecSink::default()).unwrap();
    let err = transfer_lab::models::weights::load_state_dict(&path).unwrap_err();
    assert!(matches!(err, Error::Weights { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}
