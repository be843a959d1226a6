//! Keras `.h5` weights (`models::keras::h5`): a small file by Keras' own legacy writer
//! (h5py's layout: superblock 0, symbol-table groups, variable-length string attributes)
//! reads back exactly; damaged copies are read or refused with an error naming the file,
//! never a panic; what is read never holds more bytes than the file; a dataset whose
//! dimensions claim more than the file is refused before anything is allocated for it.
use super::{damages, fuzz};
use crate::common::generated;
use proptest::prelude::*;
use transfer_lab::models::keras::h5::{read_layers, KerasLayer};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(generated("tests/fixtures/gen/make_keras_reference.py").join(name)).unwrap()
}

fn small_model() -> Vec<u8> {
    fixture("other-model.h5")
}

fn read(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, transfer_lab::Result<Vec<KerasLayer>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.h5");
    std::fs::write(&path, bytes).unwrap();
    let got = read_layers(&path);
    (dir, path, got)
}

/// `(layer, weight, shape)` of each weight read.
fn summary(layers: &[KerasLayer]) -> Vec<(String, String, Vec<i64>)> {
    let mut out = vec![];
    for l in layers {
        for (w, t) in &l.weights {
            out.push((l.name.clone(), w.clone(), t.size()));
        }
    }
    out
}

#[test]
fn keras_h5_files_read_back_or_are_refused() {
    tch::set_num_threads(1);
    let bytes = small_model();
    let (_d, _p, got) = read(&bytes);
    let want = vec![
        ("block1_conv1".into(), "block1_conv1/kernel".into(), vec![3, 3, 3, 4]),
        ("block1_conv1".into(), "block1_conv1/bias".into(), vec![4]),
        ("predictions".into(), "predictions/kernel".into(), vec![4, 2]),
        ("predictions".into(), "predictions/bias".into(), vec![2]),
    ];
    assert_eq!(summary(&got.unwrap()), want);
    // Keras' chunked attributes: layer_names0, layer_names1.
    assert_eq!(summary(&read(&fixture("other-model-chunked.h5")).2.unwrap()), want);
    fuzz("keras-h5", 300, damages(), |d| {
        let damaged = super::damaged(bytes.clone(), &d);
        let (_dir, path, got) = read(&damaged);
        match got {
            Ok(layers) => {
                let held: usize = layers.iter().flat_map(|l| &l.weights).map(|(_, t)| t.numel() * 4).sum();
                prop_assert!(held <= damaged.len(), "{held} bytes read from a file of {}", damaged.len());
            }
            Err(e) => super::names_path(&e, &path)?,
        }
        Ok(())
    });
}

/// `bytes` with every run of `dims` as little-endian u64s (a dataspace's sizes, and its
/// maximum sizes) replaced by `with`.
fn patch_dims(bytes: &[u8], dims: &[u64], with: &[u64]) -> (Vec<u8>, usize) {
    let find: Vec<u8> = dims.iter().flat_map(|d| d.to_le_bytes()).collect();
    let put: Vec<u8> = with.iter().flat_map(|d| d.to_le_bytes()).collect();
    let mut out = bytes.to_vec();
    let mut n = 0;
    let mut i = 0;
    while i + find.len() <= out.len() {
        if out[i..i + find.len()] == find[..] {
            out[i..i + find.len()].copy_from_slice(&put);
            n += 1;
            i += find.len();
        } else {
            i += 1;
        }
    }
    (out, n)
}

#[test]
fn dimensions_beyond_the_file_are_refused_before_allocating() {
    let bytes = small_model();
    // The conv kernel claims 2^40 x 3 x 3 x 4 floats (48 TiB) in a file of 16 KB.
    let (hostile, n) = patch_dims(&bytes, &[3, 3, 3, 4], &[1 << 40, 3, 3, 4]);
    assert!(n >= 1, "the kernel's dataspace was not found");
    let (_d, path, got) = read(&hostile);
    let msg = got.err().expect("a 48 TiB claim was read").to_string();
    println!("{msg}");
    assert!(msg.contains(&path.display().to_string()) && msg.contains("layer `block1_conv1`"), "{msg}");
    assert!(msg.contains("claims more bytes than the file"), "{msg}");
    // Sizes whose product overflows u64.
    let (hostile, _) = patch_dims(&bytes, &[3, 3, 3, 4], &[1 << 32, 1 << 32, 3, 4]);
    let msg = read(&hostile).2.err().expect("an overflowing claim was read").to_string();
    assert!(msg.contains("claims more bytes than the file"), "{msg}");
}
