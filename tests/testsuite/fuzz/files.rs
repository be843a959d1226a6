//! Feature-cache folders (safetensors shards + `manifest.json`) and resume checkpoints:
//! a valid folder loads exactly; a manifest with hostile fields, or a damaged shard (its
//! checksum updated so the parser, not the checksum, meets the damage), loads only if it
//! is still consistent, else is refused naming a file; a manifest never makes the loader
//! read outside its folder.
use super::{damaged, damages, fuzz, Damage};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};
use transfer_lab::download::sha256_file;
use transfer_lab::features::{load_features, CacheKey, Manifest, Precision, ShardInfo, CACHE_FORMAT};
use transfer_lab::models::{Arch, Tap};
use transfer_lab::preprocess::Normalization;

#[derive(Debug, Clone)]
struct Cache {
    images: usize,
    dim: i64,
    shard_size: usize,
    seed: u8,
}

fn caches() -> impl Strategy<Value = Cache> {
    (1..12usize, 1..6i64, 1..5usize, any::<u8>()).prop_map(|(images, dim, shard_size, seed)| Cache {
        images,
        dim,
        shard_size,
        seed,
    })
}

const CLASSES: usize = 3;

fn features(c: &Cache) -> (Tensor, Tensor) {
    let n = c.images as i64;
    let f = Tensor::arange(n * c.dim, (Kind::Float, tch::Device::Cpu)).view([n, c.dim]) / 7.0 + c.seed as f64;
    let l = (Tensor::arange(n, (Kind::Int64, tch::Device::Cpu)) + c.seed as i64).remainder(CLASSES as i64);
    (f, l)
}

/// Writes `c` as a complete cache folder the way extraction does.
fn write_cache(dir: &Path, c: &Cache) -> Manifest {
    let (f, l) = features(c);
    let mut shards = vec![];
    for (i, start) in (0..c.images).step_by(c.shard_size).enumerate() {
        let rows = c.shard_size.min(c.images - start);
        let file = format!("shard-{i:05}.safetensors");
        let path = dir.join(&file);
        let (fs, ls) = (f.narrow(0, start as i64, rows as i64), l.narrow(0, start as i64, rows as i64));
        Tensor::write_safetensors(&[("features", &fs), ("labels", &ls)], &path).unwrap();
        shards.push(ShardInfo { file, rows, sha256: sha256_file(&path).unwrap(), skipped: vec![] });
    }
    let key = CacheKey {
        format: CACHE_FORMAT,
        dataset: "synthetic-fuzz".into(),
        split: "train".into(),
        dataset_digest: "0".repeat(64),
        images: c.images,
        weights_digest: "1".repeat(64),
        arch: Arch::ResNet18,
        image_size: 32,
        normalization: Normalization::Torchvision,
        tap: Tap::Layer4,
        pool: transfer_lab::models::Pool::Mean,
        precision: Precision::Fp32,
    };
    let classes = (0..CLASSES).map(|i| format!("class{i}")).collect();
    let m = Manifest {
        key,
        dim: c.dim,
        shard_size: c.shard_size,
        shards,
        complete: true,
        classes,
        synthetic: true,
        weights_label: "random (synthetic)".into(),
    };
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    m
}

/// Hostile edits of a manifest's fields, or of a shard's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Rows(usize, Value),
    Dim(Value),
    ShardSize(Value),
    Images(Value),
    File(usize, &'static str),
    Complete(bool),
    Drop(usize),
    Classes(usize),
    Sha(usize),
    Text(Vec<Damage>),
    Shard(usize, Vec<Damage>),
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(u64::MAX)),
        Just(json!(1u64 << 40)),
        Just(json!(2.5)),
        Just(json!("7")),
        (0..20i64).prop_map(|v| json!(v)),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    const NAMES: [&str; 7] =
        ["../outside.safetensors", "/etc/hostname", "", ".", "..", "sub/shard.safetensors", "shard-00000.safetensors"];
    let edit = prop_oneof![
        (0..8usize, number()).prop_map(|(i, v)| Edit::Rows(i, v)),
        number().prop_map(Edit::Dim),
        number().prop_map(Edit::ShardSize),
        number().prop_map(Edit::Images),
        (0..8usize, proptest::sample::select(&NAMES[..])).prop_map(|(i, n)| Edit::File(i, n)),
        any::<bool>().prop_map(Edit::Complete),
        (0..8usize).prop_map(Edit::Drop),
        (0..5usize).prop_map(Edit::Classes),
        (0..8usize).prop_map(Edit::Sha),
        damages().prop_map(Edit::Text),
        (0..8usize, damages()).prop_map(|(i, d)| Edit::Shard(i, d)),
    ];
    proptest::collection::vec(edit, 1..3)
}

fn apply(dir: &Path, edits: &[Edit]) {
    let path = dir.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut text = None;
    for e in edits {
        let n = m["shards"].as_array().unwrap().len();
        let shard = |i: &usize| i % n.max(1);
        match e {
            Edit::Rows(i, v) if n > 0 => m["shards"][shard(i)]["rows"] = v.clone(),
            Edit::Dim(v) => m["dim"] = v.clone(),
            Edit::ShardSize(v) => m["shard_size"] = v.clone(),
            Edit::Images(v) => m["key"]["images"] = v.clone(),
            Edit::File(i, name) if n > 0 => {
                // Point at a file whose checksum matches, so only the name can stop it.
                let target = dir.join(name);
                if target.is_file() {
                    m["shards"][shard(i)]["sha256"] = json!(sha256_file(&target).unwrap());
                }
                m["shards"][shard(i)]["file"] = json!(name);
            }
            Edit::Complete(b) => m["complete"] = json!(b),
            Edit::Drop(i) if n > 0 => {
                m["shards"].as_array_mut().unwrap().remove(shard(i));
            }
            Edit::Classes(k) => m["classes"] = json!((0..*k).map(|i| format!("c{i}")).collect::<Vec<_>>()),
            Edit::Sha(i) if n > 0 => m["shards"][shard(i)]["sha256"] = json!("0".repeat(64)),
            Edit::Text(d) => text = Some(d.clone()),
            Edit::Shard(i, d) if n > 0 => {
                let i = shard(i);
                let Some(file) = m["shards"][i]["file"].as_str().map(str::to_owned) else { continue };
                let p = dir.join(&file);
                if p.is_file() && p.parent() == Some(dir) {
                    std::fs::write(&p, damaged(std::fs::read(&p).unwrap(), d)).unwrap();
                    m["shards"][i]["sha256"] = json!(sha256_file(&p).unwrap());
                }
            }
            _ => {}
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
    if let Some(d) = text {
        bytes = damaged(bytes, &d);
    }
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn feature_caches_load_exactly_or_are_refused() {
    tch::set_num_threads(1);
    fuzz("cache-roundtrip", 100, caches(), |c| {
        let tmp = tempfile::tempdir().unwrap();
        write_cache(tmp.path(), &c);
        let set = load_features(tmp.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (f, l) = features(&c);
        prop_assert!(set.features.equal(&f) && set.labels.equal(&l));
        Ok(())
    });
    fuzz("cache-hostile", 200, (caches(), edits()), |(c, edits)| {
        let tmp = tempfile::tempdir().unwrap();
        // A valid shard outside the folder, which a manifest must not reach.
        let dir = tmp.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        write_cache(&dir, &c);
        std::fs::copy(dir.join("shard-00000.safetensors"), tmp.path().join("outside.safetensors")).unwrap();
        apply(&dir, &edits);
        match load_features(&dir) {
            Ok(set) => {
                let m = &set.manifest;
                prop_assert!(
                    m.shards.iter().all(|s| !s.file.contains('/') && !s.file.starts_with('.')),
                    "{:?}",
                    m.shards
                );
                let rows: usize = m.shards.iter().map(|s| s.rows).sum();
                prop_assert_eq!(rows, m.key.images);
                prop_assert_eq!(set.features.size(), vec![rows as i64, m.dim]);
                prop_assert_eq!(set.labels.size(), vec![rows as i64]);
                if rows > 0 {
                    prop_assert!(set.labels.max().int64_value(&[]) < m.classes.len() as i64);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&dir.display().to_string()), "error names no file of the cache: {}", msg);
            }
        }
        Ok(())
    });
}

#[test]
fn a_manifest_cannot_reach_outside_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    let c = Cache { images: 4, dim: 2, shard_size: 4, seed: 0 };
    write_cache(&dir, &c);
    std::fs::copy(dir.join("shard-00000.safetensors"), tmp.path().join("outside.safetensors")).unwrap();
    apply(&dir, &[Edit::File(0, "../outside.safetensors")]);
    let msg = load_features(&dir).err().expect("a shard outside the folder was loaded").to_string();
    assert!(msg.contains("not a plain file name"), "{msg}");
    // No shards at all, marked complete: refused, not a panic in cat.
    let dir2 = tmp.path().join("empty");
    std::fs::create_dir(&dir2).unwrap();
    write_cache(&dir2, &c);
    apply(&dir2, &[Edit::Drop(0), Edit::Images(json!(0))]);
    let msg = load_features(&dir2).err().expect("an empty cache loaded").to_string();
    assert!(msg.contains("no shards"), "{msg}");
    // Labels beyond the manifest's classes: refused before training indexes with them.
    let dir3 = tmp.path().join("labels");
    std::fs::create_dir(&dir3).unwrap();
    write_cache(&dir3, &c);
    apply(&dir3, &[Edit::Classes(1)]);
    let msg = load_features(&dir3).err().expect("out-of-range labels loaded").to_string();
    assert!(msg.contains("labels outside 0..1"), "{msg}");
}

#[test]
fn a_checkpoint_of_no_tensors_is_refused_when_written() {
    // Regression: the fuzzer found that safetensors could not read such a file back.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("empty.safetensors");
    let meta = HashMap::from([("k".to_string(), String::new())]);
    let err = transfer_lab::tensorfile::write(&path, &[], &meta).unwrap_err().to_string();
    assert!(err.contains("at least one tensor") && err.contains("empty.safetensors"), "{err}");
    assert!(!path.exists());
}

#[test]
fn checkpoints_read_back_exactly_or_are_refused() {
    tch::set_num_threads(1);
    let strategy =
        (proptest::collection::vec((0..4i64, 0..4i64), 1..4), "[ -~]{0,40}", proptest::option::of(damages()));
    fuzz("checkpoint", 200, strategy, |(shapes, note, dmg)| {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("head-last.safetensors");
        let tensors: Vec<(String, Tensor)> = shapes
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| (format!("t{i}"), Tensor::arange(a * b, (Kind::Double, tch::Device::Cpu)).view([a, b])))
            .collect();
        let meta = HashMap::from([("tlab.note".to_string(), note.clone())]);
        transfer_lab::tensorfile::write(&path, &tensors, &meta).unwrap();
        let damaged_file = dmg.is_some();
        if let Some(d) = dmg {
            std::fs::write(&path, damaged(std::fs::read(&path).unwrap(), &d)).unwrap();
        }
        match transfer_lab::tensorfile::read(&path) {
            Ok((back, m)) if !damaged_file => {
                prop_assert_eq!(back.len(), tensors.len());
                for (k, t) in &tensors {
                    prop_assert!(back[k].equal(t));
                }
                prop_assert_eq!(&m["tlab.note"], &note);
            }
            Ok(_) => {}
            Err(e) => {
                prop_assert!(damaged_file, "a good checkpoint was refused: {}", e);
                super::names_path(&e, &path)?;
            }
        }
        Ok(())
    });
}
