//! The downloader against a local HTTP server: resume, retries, checksums, errors, CIFAR-10.
use crate::httpd::{payload, Mode, Server};
use sha2::{Digest, Sha256};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;
use transfer_lab::cache::Cache;
use transfer_lab::data::cifar::fetch::{cifar10_url, fetch_cifar10, CIFAR10_URL};
use transfer_lab::download::*;
use transfer_lab::events::{RunEvent, VecSink};
use transfer_lab::models::weights::{weights_base_url, DEFAULT_WEIGHTS_BASE_URL};
use transfer_lab::Error;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn md5_hex(b: &[u8]) -> String {
    hex::encode(md5::Md5::digest(b))
}

fn fast() -> Downloader {
    Downloader { connect_timeout: Duration::from_secs(2), read_timeout: Duration::from_secs(2), retries: 2 }
}

fn started_offsets(sink: &VecSink) -> Vec<u64> {
    sink.0
        .iter()
        .filter_map(|e| match e {
            RunEvent::DownloadStarted { resumed_from_bytes, .. } => Some(*resumed_from_bytes),
            _ => None,
        })
        .collect()
}

const MB3: usize = 3 * 1024 * 1024;

#[test]
fn clean_download_checks_sha256_and_md5() {
    let server = Server::start();
    let bytes = payload(MB3, 1);
    let url = server.serve("/data.bin", bytes.clone(), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    for (name, sum) in
        [("a/sha.bin", Checksum::Sha256(sha256_hex(&bytes))), ("b/md5.bin", Checksum::Md5(md5_hex(&bytes)))]
    {
        let dest = dir.path().join(name);
        let mut sink = VecSink::default();
        let digest = fast().download(&url, &dest, &sum, &mut sink).unwrap();
        assert_eq!(digest, sha256_hex(&bytes));
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        assert!(!part_path(&dest).exists());
        assert!(sink.0.iter().any(|e| matches!(e, RunEvent::DownloadFinished { sha256, .. } if *sha256 == digest)));
        let last_progress = sink.0.iter().rev().find_map(|e| match e {
            RunEvent::DownloadProgressed { done_bytes, total_bytes, .. } => Some((*done_bytes, *total_bytes)),
            _ => None,
        });
        assert_eq!(last_progress, Some((MB3 as u64, Some(MB3 as u64))));
    }
    assert_eq!(md5_file(&dir.path().join("b/md5.bin")).unwrap(), md5_hex(&bytes));
    assert_eq!(sha256_file(&dir.path().join("a/sha.bin")).unwrap(), sha256_hex(&bytes));
}

#[test]
fn existing_dest_is_verified_not_downloaded() {
    let server = Server::start();
    let bytes = payload(1000, 2);
    let url = server.serve("/x.bin", bytes.clone(), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("x.bin");
    std::fs::write(&dest, &bytes).unwrap();
    let d = fast().download(&url, &dest, &Checksum::Sha256(sha256_hex(&bytes)), &mut VecSink::default());
    assert_eq!(d.unwrap(), sha256_hex(&bytes));
    let err = fast().download(&url, &dest, &Checksum::Md5("0".repeat(32)), &mut VecSink::default());
    assert!(matches!(err, Err(Error::Checksum { .. })), "{err:?}");
    assert!(server.seen("/x.bin").is_empty());
}

#[test]
fn cut_transfer_resumes_with_range() {
    let server = Server::start();
    let bytes = payload(MB3, 3);
    let url = server.serve("/cut.bin", bytes.clone(), Mode::CutOnce);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cut.bin");
    let mut sink = VecSink::default();
    fast().download(&url, &dest, &Checksum::Sha256(sha256_hex(&bytes)), &mut sink).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    let seen = server.seen("/cut.bin");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[1].range.as_deref(), Some(format!("bytes={}-", MB3 / 2).as_str()));
    assert_eq!(started_offsets(&sink), vec![0, (MB3 / 2) as u64]);
}

#[test]
fn part_from_an_earlier_run_is_resumed() {
    let server = Server::start();
    let bytes = payload(MB3, 4);
    let url = server.serve("/p.bin", bytes.clone(), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("p.bin");
    std::fs::write(part_path(&dest), &bytes[..1_000_000]).unwrap();
    let mut sink = VecSink::default();
    let sha = fast().download(&url, &dest, &Checksum::Md5(md5_hex(&bytes)), &mut sink).unwrap();
    assert_eq!(sha, sha256_hex(&bytes));
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    let seen = server.seen("/p.bin");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range.as_deref(), Some("bytes=1000000-"));
    assert_eq!(started_offsets(&sink), vec![1_000_000]);
}

#[test]
fn server_ignoring_range_restarts_from_zero() {
    let server = Server::start();
    let bytes = payload(100_000, 5);
    let url = server.serve("/n.bin", bytes.clone(), Mode::IgnoreRange);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("n.bin");
    // Wrong bytes in the part: appending to them would corrupt the file.
    std::fs::write(part_path(&dest), vec![0u8; 5000]).unwrap();
    let mut sink = VecSink::default();
    fast().download(&url, &dest, &Checksum::Sha256(sha256_hex(&bytes)), &mut sink).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    assert_eq!(server.seen("/n.bin")[0].range.as_deref(), Some("bytes=5000-"));
    assert_eq!(started_offsets(&sink), vec![0]);
}

#[test]
fn part_longer_than_file_gets_416_and_restarts() {
    let server = Server::start();
    let bytes = payload(10_000, 6);
    let url = server.serve("/s.bin", bytes.clone(), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("s.bin");
    std::fs::write(part_path(&dest), vec![1u8; 20_000]).unwrap();
    fast().download(&url, &dest, &Checksum::Sha256(sha256_hex(&bytes)), &mut VecSink::default()).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    let ranges: Vec<_> = server.seen("/s.bin").into_iter().map(|s| s.range).collect();
    assert_eq!(ranges, vec![Some("bytes=20000-".to_string()), None]);
}

#[test]
fn wrong_checksum_removes_the_download() {
    let server = Server::start();
    let bytes = payload(200_000, 7);
    let url = server.serve("/w.bin", bytes.clone(), Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.bin");
    let expected = "ab".repeat(32);
    let err = fast().download(&url, &dest, &Checksum::Sha256(expected.clone()), &mut VecSink::default());
    let err = err.unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(msg.contains(&expected) && msg.contains(&sha256_hex(&bytes)), "{msg}");
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[test]
fn http_404_is_a_download_error_naming_the_status() {
    let server = Server::start();
    let url = format!("{}/missing.bin", server.base);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("m");
    let err = fast().download(&url, &dest, &Checksum::Md5("0".repeat(32)), &mut VecSink::default());
    let err = err.unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err:?}");
    assert!(err.to_string().contains("404"), "{err}");
    assert!(!part_path(&dest).exists(), "no empty .part left behind");
    assert_eq!(server.seen("/missing.bin").len(), 1, "4xx must not be retried");
}

#[test]
fn refused_connection_suggests_local_files() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/x");
    let dir = tempfile::tempdir().unwrap();
    let err = fast().download(&url, &dir.path().join("x"), &Checksum::Md5("0".repeat(32)), &mut VecSink::default());
    let err = err.unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("network may be unavailable") && msg.contains("--data PATH"), "{msg}");
}

#[test]
fn stalled_server_times_out() {
    let server = Server::start();
    let url = server.serve("/stall", vec![0; 10], Mode::Stall);
    let dir = tempfile::tempdir().unwrap();
    let d = Downloader { connect_timeout: Duration::from_secs(2), read_timeout: Duration::from_secs(1), retries: 1 };
    let err = d.download(&url, &dir.path().join("st"), &Checksum::Md5("0".repeat(32)), &mut VecSink::default());
    let err = err.unwrap_err();
    assert!(matches!(err, Error::Download { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(server.seen("/stall").len(), 2, "one retry");
}

#[test]
fn recorded_digest_catches_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resnet18-abcdef12.pth");
    let bytes = payload(50_000, 8);
    std::fs::write(&file, &bytes).unwrap();
    let sha = sha256_hex(&bytes);
    let wrong = if sha.starts_with('0') { "1" } else { "0" };
    assert!(matches!(verify_recorded(&file, wrong), Err(Error::Checksum { .. })));
    assert!(!record_path(&file).exists(), "no record for a file that fails its prefix");

    assert_eq!(verify_recorded(&file, &sha[..8]).unwrap(), sha);
    let record = std::fs::read_to_string(record_path(&file)).unwrap();
    assert!(record.starts_with(&sha), "{record}");

    let mut corrupted = bytes.clone();
    corrupted[1234] ^= 0xff;
    std::fs::write(&file, &corrupted).unwrap();
    // An empty prefix isolates the record check from the prefix check.
    let err = verify_recorded(&file, "").unwrap_err();
    assert!(matches!(err, Error::Checksum { .. }), "{err:?}");
    assert!(err.to_string().contains(&file.display().to_string()), "{err}");
}

#[test]
fn prefix_download_writes_the_record() {
    let server = Server::start();
    let bytes = payload(30_000, 9);
    let sha = sha256_hex(&bytes);
    let url = server.serve("/w.pth", bytes, Mode::Normal);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("w.pth");
    let sum = Checksum::Sha256Prefix(sha[..8].to_string());
    assert_eq!(fast().download(&url, &dest, &sum, &mut VecSink::default()).unwrap(), sha);
    assert!(std::fs::read_to_string(record_path(&dest)).unwrap().starts_with(&sha));
    // A later call verifies against the record, without the network.
    assert_eq!(fast().download(&url, &dest, &sum, &mut VecSink::default()).unwrap(), sha);
    assert_eq!(server.seen("/w.pth").len(), 1);
}

fn cifar_tarball(files: &[&str]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (i, name) in files.iter().enumerate() {
        let data = payload(100 + i, 10 + i as u64);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), data.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

const CIFAR_NAMES: [&str; 7] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
    "batches.meta.txt",
];

#[test]
fn cifar10_is_fetched_once_and_unpacked() {
    let server = Server::start();
    let tgz = cifar_tarball(&CIFAR_NAMES);
    let md5 = md5_hex(&tgz);
    let url = server.serve("/cifar-10-binary.tar.gz", tgz, Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    let mut sink = VecSink::default();
    let dir = fetch_cifar10(&Cache::new(cache.path()), &url, &md5, &fast(), &mut sink).unwrap();
    assert_eq!(dir, cache.path().join("datasets/cifar-10-batches-bin"));
    for name in CIFAR_NAMES {
        assert!(dir.join(name).is_file(), "{name}");
    }
    assert_eq!(std::fs::read(dir.join("test_batch.bin")).unwrap(), payload(105, 15));
    assert_eq!(only_entry(&cache.path().join("datasets")), "cifar-10-batches-bin");

    let again = fetch_cifar10(&Cache::new(cache.path()), &url, &md5, &fast(), &mut sink).unwrap();
    assert_eq!(again, dir);
    assert_eq!(server.seen("/cifar-10-binary.tar.gz").len(), 1);
}

#[test]
fn cifar10_archive_missing_a_batch_is_an_error() {
    let server = Server::start();
    let tgz = cifar_tarball(&CIFAR_NAMES[1..]);
    let md5 = md5_hex(&tgz);
    let url = server.serve("/c.tar.gz", tgz, Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch_cifar10(&Cache::new(cache.path()), &url, &md5, &fast(), &mut VecSink::default()).unwrap_err();
    assert!(matches!(err, Error::Data { .. }), "{err:?}");
    assert!(err.to_string().contains("data_batch_1.bin"), "{err}");
    // No half dataset where readers look, and no temp folder left behind.
    assert!(std::fs::read_dir(cache.path().join("datasets")).unwrap().next().is_none());
}

fn only_entry(dir: &Path) -> String {
    let names: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

#[test]
fn mirror_urls_come_from_the_settings() {
    use transfer_lab::settings::Settings;
    let mirrors =
        [("TLAB_WEIGHTS_BASE_URL", "http://mirror.local/models"), ("TLAB_CIFAR10_URL", "http://mirror.local/c.tgz")];
    let s = Settings::from_vars(|k| mirrors.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()));
    assert_eq!(weights_base_url(&s), "http://mirror.local/models/");
    assert_eq!(cifar10_url(&s), "http://mirror.local/c.tgz");
    let none = Settings::from_vars(|_| None);
    assert_eq!(weights_base_url(&none), DEFAULT_WEIGHTS_BASE_URL);
    assert_eq!(cifar10_url(&none), CIFAR10_URL);
    // Keras' file comes from Keras' own URL, or from the mirror under its name.
    use transfer_lab::models::{Arch, WeightsEntry, WeightsVariant};
    let keras = WeightsEntry::find(Arch::KerasResNet50, WeightsVariant::V1).unwrap();
    assert_eq!(
        keras.download_url(&none),
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/\
         resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    );
    assert_eq!(
        keras.download_url(&s),
        "http://mirror.local/models/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    );
}

#[test]
fn keras_weights_are_checked_against_keras_published_md5_and_a_wrong_file_is_not_kept() {
    let server = Server::start();
    let file = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5";
    let bytes = payload(1 << 20, 5);
    let url = server.serve(&format!("/models/{file}"), bytes, Mode::Normal);
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tlab"))
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["fetch", "weights", "keras-resnet50"])
        .env("TLAB_WEIGHTS_BASE_URL", url.trim_end_matches(file))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    // Keras publishes the file's MD5 (keras/src/applications/resnet.py).
    assert!(stderr.contains("4d473c1dd8becc155b73f8504c6f6626") && stderr.contains(file), "{stderr}");
    assert!(!Cache::new(cache.path()).weights_file(file).exists(), "a file that failed its checksum is not kept");
    assert_eq!(server.seen(&format!("/models/{file}")).len(), 1);
}

#[test]
fn ctrl_c_keeps_the_partial_download_and_the_next_fetch_resumes_it() {
    let server = Server::start();
    let url = server.serve("/cifar-10-binary.tar.gz", payload(2 << 20, 9), Mode::Slow);
    let cache = tempfile::tempdir().unwrap();
    let fetch = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tlab"));
        c.arg("--cache-dir").arg(cache.path()).args(["fetch", "cifar10"]).env("TLAB_CIFAR10_URL", &url);
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        c
    };
    let part = || {
        let downloads = cache.path().join("downloads");
        let found = std::fs::read_dir(downloads).into_iter().flatten().flatten().map(|e| e.path());
        found.into_iter().find(|p| p.to_string_lossy().ends_with(".part"))
    };
    let mut child = fetch().spawn().unwrap();
    let t = std::time::Instant::now();
    while part().is_none_or(|p| std::fs::metadata(p).unwrap().len() <= 64 << 10) {
        assert!(t.elapsed() < Duration::from_secs(60), "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: a plain kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(128 + libc::SIGINT), "{stderr}");
    let part = part().expect("the partial download is kept");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(
        stderr.contains("interrupted by Ctrl-C (SIGINT)") && stderr.contains(&part.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("run the same command again to resume"), "{stderr}");
    // The next fetch asks for the rest only (it then fails the real CIFAR-10 checksum:
    // this payload is not the dataset).
    server.serve("/cifar-10-binary.tar.gz", payload(2 << 20, 9), Mode::Normal);
    let out = fetch().output().unwrap();
    let ranges: Vec<_> = server.seen("/cifar-10-binary.tar.gz").into_iter().map(|s| s.range).collect();
    assert_eq!(ranges.last().unwrap().as_deref(), Some(format!("bytes={kept}-").as_str()), "{ranges:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn two_fetches_of_one_file_at_once_take_turns() {
    let server = Server::start();
    // An incompressible extra file makes the download last about 1.5 s at the slow rate.
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (i, name) in CIFAR_NAMES.iter().chain(&["readme.bin"]).enumerate() {
        let data = payload(if *name == "readme.bin" { 300_000 } else { 100 + i }, 10 + i as u64);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("cifar-10-batches-bin/{name}"), data.as_slice()).unwrap();
    }
    let tgz = tar.into_inner().unwrap().finish().unwrap();
    let md5 = md5_hex(&tgz);
    let url = server.serve("/cifar-10-binary.tar.gz", tgz, Mode::Slow);
    let cache = tempfile::tempdir().unwrap();
    let fetch = || {
        let mut sink = VecSink::default();
        let dir = fetch_cifar10(&Cache::new(cache.path()), &url, &md5, &fast(), &mut sink);
        (dir, sink)
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(fetch);
        std::thread::sleep(Duration::from_millis(300));
        let b = s.spawn(fetch);
        (a.join().unwrap(), b.join().unwrap())
    });
    let waited = b.1 .0.iter().any(|e| {
        matches!(e, RunEvent::Log { message, .. } if message.contains("is downloading") && message.contains("waiting"))
    });
    assert!(waited, "the second fetch says it waits: {:?}", b.1 .0);
    let dir = a.0.unwrap();
    assert_eq!(b.0.unwrap(), dir);
    assert_eq!(server.seen("/cifar-10-binary.tar.gz").len(), 1, "the second fetch waited, then reused the file");
    assert_eq!(std::fs::read(dir.join("test_batch.bin")).unwrap(), payload(105, 15));
    // Nothing is left behind but the tarball and the dataset.
    assert_eq!(only_entry(&cache.path().join("datasets")), "cifar-10-batches-bin");
    assert_eq!(only_entry(&cache.path().join("downloads")), "cifar-10-binary.tar.gz");
}

#[test]
fn a_full_disk_during_a_download_keeps_the_part_and_the_next_fetch_resumes_it() {
    // Not beside the disk tests: their remounts are refused (EBUSY) while mounts change.
    let _g = crate::common::torch_lock();
    let server = Server::start();
    let url = server.serve("/cifar-10-binary.tar.gz", payload(1 << 20, 21), Mode::Normal);
    let tmp = tempfile::tempdir().unwrap();
    let space = crate::disk::Space::new(&tmp.path().join("small"), 256 << 10, 100 << 10);
    let cache = space.dir.join("cache");
    let fetch = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tlab"));
        c.arg("--cache-dir").arg(&cache).args(["fetch", "cifar10"]).env("TLAB_CIFAR10_URL", &url);
        space.limit(&mut c);
        c
    };
    let out = fetch().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the download fit: {stderr}");
    let tarball = cache.join("downloads/cifar-10-binary.tar.gz");
    let part = part_path(&tarball);
    assert!(stderr.contains(space.full_error()) && stderr.contains(&part.display().to_string()), "{stderr}");
    println!("the error: {}", stderr.lines().filter(|l| l.contains("error")).collect::<Vec<_>>().join(" | "));
    let kept = std::fs::metadata(&part).expect("the partial download is kept").len();
    assert!(kept > 0 && kept < 1 << 20, "{kept} bytes kept");
    assert_eq!(std::fs::read(&part).unwrap()[..], payload(1 << 20, 21)[..kept as usize], "the part is a prefix");
    assert!(!tarball.exists(), "no file where the complete download is expected");

    space.grow();
    let out = fetch().output().unwrap();
    let ranges: Vec<_> = server.seen("/cifar-10-binary.tar.gz").into_iter().map(|s| s.range).collect();
    assert_eq!(ranges.last().unwrap().as_deref(), Some(format!("bytes={kept}-").as_str()), "{ranges:?}");
    // The whole file arrived; it then fails the real CIFAR-10 checksum (this payload is not the dataset).
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"), "{}", String::from_utf8_lossy(&out.stderr));
}
