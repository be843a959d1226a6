//! Extraction precision: bf16 features agree with fp32, live in their own cache entry, and
//! fp16 off CUDA or an unknown precision are clear errors.
use crate::common::*;
use std::process::Command;
use tch::{Device, Kind, Tensor};
use transfer_lab::cache::Cache;
use transfer_lab::data::{synthetic::synthetic, Split};
use transfer_lab::events::VecSink;
use transfer_lab::features::{extract_features, ExtractConfig, Precision};
use transfer_lab::models::{Arch, Backbone, Tap};
use transfer_lab::preprocess::{Normalization, Preprocess};

fn cfg() -> ExtractConfig {
    ExtractConfig {
        preprocess: Preprocess { size: 64, normalization: Normalization::Torchvision, ..Default::default() },
        tap: Tap::Layer4,
        pool: None,
        batch_size: 16,
        shard_size: 32,
        precision: Precision::Fp32,
    }
}

fn with(precision: Precision) -> ExtractConfig {
    ExtractConfig { precision, ..cfg() }
}

/// Per-row cosine similarity of `[N, D]` matrices: `[N]`.
fn row_cosine(a: &Tensor, b: &Tensor) -> Tensor {
    let dot = (a * b).sum_dim_intlist(1, false, Kind::Double);
    let norm = |t: &Tensor| t.square().sum_dim_intlist(1, false, Kind::Double).sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn bf16_features_match_fp32_in_their_own_cache_entry() {
    let _g = torch_lock();
    let cache = tempfile::tempdir().unwrap();
    let backbone = Backbone::random(Arch::ResNet50, 0, Device::Cpu);
    let data = synthetic(48, Split::Train, 3);
    let fp32 = extract_features(&backbone, &data, &cfg(), &Cache::new(cache.path()), &mut VecSink::default()).unwrap();
    let bf16 =
        extract_features(&backbone, &data, &with(Precision::Bf16), &Cache::new(cache.path()), &mut VecSink::default())
            .unwrap();
    assert_eq!(bf16.features.size(), [48, 2048]);
    assert_eq!(bf16.features.kind(), Kind::Float, "stored as fp32 whatever the arithmetic");
    assert_ne!(bf16.dir, fp32.dir, "another precision is another cache entry");
    assert_eq!(fp32.manifest.key.precision, Precision::Fp32);
    assert_eq!(bf16.manifest.key.precision, Precision::Bf16);
    let text = std::fs::read_to_string(bf16.dir.join("manifest.json")).unwrap();
    assert!(text.contains("\"precision\": \"bf16\""), "{text}");
    assert!(bf16.labels.equal(&fp32.labels));
    let cos = row_cosine(&bf16.features, &fp32.features);
    let (min, mean) = (cos.min().double_value(&[]), cos.mean(Kind::Double).double_value(&[]));
    let rel = rel_err(&bf16.features, &fp32.features);
    println!("bf16 vs fp32, ResNet50 random(seed=0), 48 synthetic images at 64x64: cosine min {min:.6} mean {mean:.6}, max rel err {rel:.2e}");
    assert!(min >= 0.999, "cosine similarity {min} < 0.999");
    assert!(!bf16.features.equal(&fp32.features), "bf16 must really compute in bf16");
    // fp32 is the backbone's own folded net, unchanged: a fresh fp32 copy agrees bit for bit.
    let x = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu));
    let copy = backbone.inference_copy(Precision::Fp32);
    assert!(copy.features(&x, Tap::Layer4).equal(&backbone.features(&x, Tap::Layer4)));
}

#[test]
fn fp32_is_the_default_and_keeps_its_cache_key() {
    assert_eq!(Precision::default(), Precision::Fp32);
    // Keys used to hold the string "fp32": the enum must serialise the same way, so
    // existing caches stay valid.
    assert_eq!(serde_json::to_string(&Precision::Fp32).unwrap(), "\"fp32\"");
    assert_eq!(serde_json::from_str::<Precision>("\"bf16\"").unwrap(), Precision::Bf16);
    for &p in Precision::all() {
        assert_eq!(p.name().parse::<Precision>().unwrap(), p);
    }
}

#[test]
fn fp16_on_the_cpu_is_an_error_naming_the_device() {
    let _g = torch_lock();
    let cache = tempfile::tempdir().unwrap();
    let backbone = Backbone::random(Arch::ResNet18, 0, Device::Cpu);
    let data = synthetic(8, Split::Train, 3);
    let err =
        extract_features(&backbone, &data, &with(Precision::Fp16), &Cache::new(cache.path()), &mut VecSink::default())
            .err()
            .expect("fp16 on the CPU must fail")
            .to_string();
    assert!(err.contains("fp16") && err.contains("cpu") && err.contains("CUDA"), "{err}");
    assert!(!cache.path().join("features").exists(), "nothing is written before the check");
}

#[test]
fn a_bad_precision_names_the_value_and_the_allowed_ones() {
    let err = "fp8".parse::<Precision>().unwrap_err().to_string();
    assert!(err.contains("`fp8`") && err.contains("fp32, bf16, fp16"), "{err}");
    assert!("FP32".parse::<Precision>().is_err(), "spelled in lower case, as in the cache key");
    // The CLI rejects both before any model is built.
    let out = Command::new(env!("CARGO_BIN_EXE_tlab")).args(["extract", "--precision", "fp8"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && log.contains("fp8") && log.contains("fp32, bf16, fp16"), "{log}");
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tlab"))
        .args(["--cache-dir", cache.path().to_str().unwrap(), "extract", "--dataset", "synthetic"])
        .args(["--weights", "random", "--device", "cpu", "--precision", "fp16"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && log.contains("fp16 needs a CUDA device") && log.contains("cpu"), "{log}");
}

/// Reduced precision on a GPU; skips cleanly without one.
#[test]
fn bf16_and_fp16_on_cuda_match_fp32() {
    if !tch::Cuda::is_available() {
        println!("skipped: no CUDA device");
        return;
    }
    let _g = torch_lock();
    let cache = tempfile::tempdir().unwrap();
    let backbone = Backbone::random(Arch::ResNet50, 0, Device::Cuda(0));
    let data = synthetic(32, Split::Train, 3);
    let fp32 = extract_features(&backbone, &data, &cfg(), &Cache::new(cache.path()), &mut VecSink::default()).unwrap();
    for p in [Precision::Bf16, Precision::Fp16] {
        let f =
            extract_features(&backbone, &data, &with(p), &Cache::new(cache.path()), &mut VecSink::default()).unwrap();
        let min = row_cosine(&f.features, &fp32.features).min().double_value(&[]);
        println!("{p} vs fp32 on cuda: cosine min {min:.6}");
        assert!(min >= 0.999, "{p}: cosine {min}");
    }
}
