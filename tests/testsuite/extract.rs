//! Feature extraction: cache hits, resume after kill -9, memory independent of dataset size.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tch::Device;
use transfer_lab::cache::Cache;
use transfer_lab::data::{synthetic::synthetic, Split};
use transfer_lab::events::{RunEvent, VecSink};
use transfer_lab::features::{extract_features, load_features, ExtractConfig, Manifest};
use transfer_lab::models::{Arch, Backbone, Tap};
use transfer_lab::preprocess::{Normalization, Preprocess};

fn tlab() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tlab"));
    c.arg("--threads").arg(test_threads().to_string());
    c
}

fn small_cfg(tap: Tap) -> ExtractConfig {
    ExtractConfig {
        preprocess: Preprocess { size: 64, normalization: Normalization::Torchvision, ..Default::default() },
        tap,
        batch_size: 16,
        shard_size: 32,
        ..Default::default()
    }
}

fn cache_hit(events: &[RunEvent]) -> Option<bool> {
    events.iter().find_map(|e| match e {
        RunEvent::ExtractionFinished { cache_hit, .. } => Some(*cache_hit),
        _ => None,
    })
}

#[test]
fn second_run_is_a_cache_hit_and_keys_separate_settings() {
    let _g = torch_lock();
    let cache = tempfile::tempdir().unwrap();
    let backbone = Backbone::random(Arch::ResNet18, 0, Device::Cpu);
    let data = synthetic(80, Split::Train, 1);
    let mut first = VecSink::default();
    let a = extract_features(&backbone, &data, &small_cfg(Tap::Layer4), &Cache::new(cache.path()), &mut first).unwrap();
    assert_eq!(a.features.size(), [80, 512]);
    assert_eq!(a.manifest.shards.len(), 3, "80 rows in shards of 32");
    assert_eq!(cache_hit(&first.0), Some(false));
    let mut second = VecSink::default();
    let b =
        extract_features(&backbone, &data, &small_cfg(Tap::Layer4), &Cache::new(cache.path()), &mut second).unwrap();
    assert_eq!(cache_hit(&second.0), Some(true));
    assert!(!second.0.iter().any(|e| matches!(e, RunEvent::ExtractionProgressed { .. })), "a hit computes nothing");
    assert!(a.features.equal(&b.features) && a.labels.equal(&data.labels()));
    // Another layer is another cache entry, with the earlier stage's width.
    let c =
        extract_features(&backbone, &data, &small_cfg(Tap::Layer3), &Cache::new(cache.path()), &mut VecSink::default())
            .unwrap();
    assert_eq!(c.features.size(), [80, 256]);
    assert_ne!(c.dir, a.dir);
    // A corrupted shard is detected on load, naming the file.
    let shard = a.dir.join(&a.manifest.shards[1].file);
    let mut bytes = std::fs::read(&shard).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    std::fs::write(&shard, bytes).unwrap();
    let err = load_features(&a.dir).err().expect("corruption must be detected").to_string();
    assert!(err.contains("shard-00001.safetensors") && err.contains("checksum"), "{err}");
}

fn manifest_in(cache: &Path) -> Option<(PathBuf, Manifest)> {
    let features = cache.join("features");
    for e in std::fs::read_dir(features).ok()?.flatten() {
        let m = e.path().join("manifest.json");
        if let Ok(bytes) = std::fs::read(&m) {
            return Some((e.path(), serde_json::from_slice(&bytes).ok()?));
        }
    }
    None
}

/// The cache folder and how many of its shards are recorded as done.
fn done_shards(cache: &Path) -> Option<(PathBuf, usize)> {
    let e = std::fs::read_dir(cache.join("features")).ok()?.flatten().next()?;
    let n = std::fs::read_dir(e.path())
        .ok()?
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".done.json"))
        .count();
    Some((e.path(), n))
}

fn extract_args(cache: &Path) -> Vec<String> {
    let args = "extract --dataset synthetic --synthetic-train 192 --arch resnet18 --weights random --size 64 \
                --batch-size 16 --shard-size 32 --split train";
    let mut v: Vec<String> = vec!["--cache-dir".into(), cache.display().to_string()];
    v.extend(args.split_whitespace().map(String::from));
    v
}

#[test]
fn a_killed_extraction_resumes_to_identical_bytes() {
    let _g = torch_lock();
    let killed = tempfile::tempdir().unwrap();
    let clean = tempfile::tempdir().unwrap();
    // Start, wait for two complete shards (each recorded as done), then kill -9.
    let mut child =
        tlab().args(extract_args(killed.path())).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t = Instant::now();
    let dir = loop {
        if let Some(d) = done_shards(killed.path()).filter(|(_, n)| *n >= 2) {
            break d.0;
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no shard appeared");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(manifest_in(killed.path()).is_none(), "killed before the end: no manifest yet");
    let done_before = done_shards(killed.path()).unwrap().1;
    println!("killed after {done_before} of 6 shards");
    // Resume: the stderr says how many were already cached.
    let out = tlab().args(extract_args(killed.path())).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(&format!("({} already cached)", done_before * 32)), "{log}");
    let out = tlab().args(extract_args(clean.path())).output().unwrap();
    assert!(out.status.success());
    let (clean_dir, cm) = manifest_in(clean.path()).unwrap();
    let (_, km) = manifest_in(killed.path()).unwrap();
    assert!(km.complete && cm.complete);
    assert_eq!(km.shards, cm.shards, "same shard files and checksums");
    for s in &cm.shards {
        assert_eq!(
            std::fs::read(dir.join(&s.file)).unwrap(),
            std::fs::read(clean_dir.join(&s.file)).unwrap(),
            "{}",
            s.file
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
}

/// Peak RSS reported by `tlab extract` for `n` synthetic images at 64x64. A small side
/// keeps the test quick; what would grow with `n` (held batches, upscaled copies, the
/// post's whole-array approach: 49 KB per image here) still shows.
fn peak_rss_mb(n: usize) -> f64 {
    let cache = tempfile::tempdir().unwrap();
    let events = cache.path().join("events.jsonl");
    let out = tlab()
        .args(["--cache-dir", cache.path().to_str().unwrap(), "extract", "--dataset", "synthetic"])
        .args(["--synthetic-train", &n.to_string(), "--arch", "resnet18", "--weights", "random", "--size", "64"])
        .args(["--split", "train", "--events", events.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(events).unwrap();
    text.lines()
        .filter_map(transfer_lab::events::parse_line)
        .find_map(|e| match e.event {
            RunEvent::ExtractionFinished { peak_rss_bytes, total_images, .. } => {
                assert_eq!(total_images as usize, n);
                Some(peak_rss_bytes as f64 / 1e6)
            }
            _ => None,
        })
        .expect("ExtractionFinished event")
}

#[test]
fn memory_does_not_grow_with_the_dataset() {
    let _g = torch_lock();
    let small = peak_rss_mb(2000);
    let large = peak_rss_mb(10000);
    println!(
        "peak RSS extracting 2,000 images: {small:.0} MB; 10,000 images: {large:.0} MB; ratio {:.3}",
        large / small
    );
    assert!(large < small * 1.2, "peak RSS grew from {small:.0} MB to {large:.0} MB");
}
