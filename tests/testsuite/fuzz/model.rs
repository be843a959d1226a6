//! Exported model files (`tlab export`): damaged headers and hostile metadata are refused
//! with an error naming the file, before anything is sized from the metadata (a class list
//! of a million names would otherwise allocate a head of gigabytes); a valid file loads
//! back with its metadata.
use super::{damaged, damages, fuzz, names_path};
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;
use tch::Device;
use transfer_lab::classifier::{Classifier, ModelMeta, META_KEY};
use transfer_lab::models::{Arch, Tap};
use transfer_lab::preprocess::Preprocess;
use transfer_lab::train::Strategy as TrainStrategy;

fn meta() -> ModelMeta {
    ModelMeta {
        format: transfer_lab::classifier::FORMAT,
        arch: Arch::ResNet18,
        tap: Tap::Layer4,
        pool: transfer_lab::models::Pool::Mean,
        classes: vec!["ants".into(), "bees".into(), "wasps".into()],
        preprocess: Preprocess { size: 32, ..Default::default() },
        strategy: TrainStrategy::LinearProbe,
        weights: "resnet18 random(seed=0)".into(),
        weights_digest: "random:resnet18:0".into(),
        pretrained: false,
        dataset: "SYNTHETIC data (generated; not CIFAR-10)".into(),
        synthetic: true,
        best_val_acc: 0.5,
        test_accuracy: None,
        test_samples: None,
        crate_version: "test".into(),
        temperature: None,
    }
}

/// One valid exported file (ResNet-18, 45 MB), written once; its bytes and the length of
/// its safetensors header.
fn model() -> &'static (tempfile::TempDir, Vec<u8>, usize) {
    static M: OnceLock<(tempfile::TempDir, Vec<u8>, usize)> = OnceLock::new();
    M.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        Classifier::untrained(meta(), 0, Device::Cpu).export(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8;
        (dir, bytes, header)
    })
}

/// Hostile values for the metadata's fields.
#[derive(Debug, Clone)]
enum Edit {
    Classes(usize),
    Size(i64),
    Tap(Tap),
    Arch(Arch),
    Format(u32),
    Drop(&'static str),
    Garbage(String),
}

fn edits() -> impl Strategy<Value = Edit> {
    prop_oneof![
        prop_oneof![Just(0usize), Just(1), Just(2), Just(3), Just(4), Just(1_000_000)].prop_map(Edit::Classes),
        prop_oneof![Just(0i64), Just(-1), Just(15), Just(1 << 30), Just(i64::MAX), Just(64)].prop_map(Edit::Size),
        prop_oneof![Just(Tap::Layer1), Just(Tap::Layer3), Just(Tap::Layer4)].prop_map(Edit::Tap),
        prop_oneof![Just(Arch::ResNet18), Just(Arch::ResNet34), Just(Arch::ResNet50)].prop_map(Edit::Arch),
        prop_oneof![Just(0u32), Just(2), Just(u32::MAX)].prop_map(Edit::Format),
        prop_oneof![Just("classes"), Just("arch"), Just("preprocess"), Just("tap")].prop_map(Edit::Drop),
        "[ -~]{0,40}".prop_map(Edit::Garbage),
    ]
}

fn edited(e: &Edit) -> String {
    let mut m = meta();
    match e {
        Edit::Classes(n) => m.classes = (0..*n).map(|i| format!("c{i}")).collect(),
        Edit::Size(s) => m.preprocess.size = *s,
        Edit::Tap(t) => m.tap = *t,
        Edit::Arch(a) => m.arch = *a,
        Edit::Format(f) => m.format = *f,
        Edit::Drop(_) | Edit::Garbage(_) => {}
    }
    let mut v = serde_json::to_value(&m).unwrap();
    match e {
        Edit::Drop(k) => {
            v.as_object_mut().unwrap().remove(*k);
        }
        Edit::Garbage(g) => return g.clone(),
        _ => {}
    }
    v.to_string()
}

/// Whether `e` leaves a model that must load.
fn valid(e: &Edit) -> bool {
    match e {
        Edit::Classes(n) => *n == 3,
        Edit::Size(s) => (16..=1024).contains(s),
        Edit::Tap(t) => *t == Tap::Layer4,
        Edit::Arch(a) => *a == Arch::ResNet18,
        Edit::Format(f) => *f == transfer_lab::classifier::FORMAT,
        Edit::Drop(_) | Edit::Garbage(_) => false,
    }
}

#[test]
fn hostile_model_metadata_is_refused_before_allocating_and_named() {
    let (dir, _, _) = model();
    let (tensors, _) = transfer_lab::tensorfile::read(&dir.path().join("model.safetensors")).unwrap();
    let tensors: Vec<(String, tch::Tensor)> = tensors.into_iter().collect();
    let out = tempfile::tempdir().unwrap();
    let path: PathBuf = out.path().join("edited.safetensors");
    fuzz("model metadata", 24, edits(), |e| {
        let meta = std::collections::HashMap::from([(META_KEY.to_string(), edited(&e))]);
        transfer_lab::tensorfile::write(&path, &tensors, &meta).unwrap();
        match Classifier::from_file(&path, Device::Cpu) {
            Ok(c) => {
                prop_assert!(valid(&e), "{e:?} loaded");
                prop_assert_eq!(c.meta.classes.len(), 3);
            }
            Err(err) => {
                prop_assert!(!valid(&e), "{e:?} refused: {err}");
                names_path(&err, &path)?;
            }
        }
        Ok(())
    });
}

#[test]
fn damaged_model_headers_are_named_errors() {
    let (_dir, bytes, header) = model();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("damaged.safetensors");
    // Damage aimed at the header and its metadata (positions within it), or anywhere for cuts.
    let head = bytes[..*header].to_vec();
    fuzz("model header", 40, damages(), |d| {
        let mut file = damaged(head.clone(), &d);
        file.extend_from_slice(&bytes[*header..]);
        std::fs::write(&path, &file).unwrap();
        match Classifier::from_file(&path, Device::Cpu) {
            Ok(c) => prop_assert_eq!(c.meta.classes.len(), 3, "a damaged header that loads keeps a consistent head"),
            Err(err) => names_path(&err, &path)?,
        }
        Ok(())
    });
    // Cut anywhere: never a whole model.
    for at in [0, 7, 8, *header - 1, *header, *header + 1000, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..at]).unwrap();
        let err = Classifier::from_file(&path, Device::Cpu).err().expect("a cut file is refused");
        assert!(err.to_string().contains("damaged.safetensors"), "{err}");
    }
}
