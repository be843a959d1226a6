//! Keras' ResNet50 and its `.h5` weights against Keras 3 itself (KERAS_BACKEND=torch;
//! tests/fixtures/gen/make_keras_reference.py): the eager and the folded net at every
//! tap, both ways Keras names weights, preprocessing, and bad files.
use crate::common::*;
use std::path::Path;
use tch::{Device, Tensor};
use transfer_lab::models::keras::resnet::convert;
use transfer_lab::models::{Arch, Backbone, Tap};
use transfer_lab::preprocess::{Normalization, Preprocess, ResizeMode};

const SCRIPT: &str = "tests/fixtures/gen/make_keras_reference.py";
const TOL: f64 = 1e-4;

/// NHWC (Keras) -> NCHW (ours).
fn nchw(t: &Tensor) -> Tensor {
    t.permute([0, 3, 1, 2]).contiguous()
}

#[test]
fn keras_resnet50_matches_keras_at_every_tap() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let io = read_tensors(&dir.join("resnet50-io.safetensors"));
    let backbone = Backbone::from_file(Arch::KerasResNet50, &dir.join("resnet50.h5"), Device::Cpu).unwrap();
    for side in [64, 96] {
        let x = nchw(&io[&format!("x{side}")]);
        for (i, tap) in [Tap::Layer1, Tap::Layer2, Tap::Layer3, Tap::Layer4].into_iter().enumerate() {
            let want = &io[&format!("layer{}_{side}", i + 1)];
            assert_eq!(want.size(), [2, Arch::KerasResNet50.feature_dim(tap)]);
            let eager = tch::no_grad(|| backbone.net.features_t(&x, tap, false));
            let folded = backbone.features(&x, tap);
            let (e, f) = (rel_err(&eager, want), rel_err(&folded, want));
            println!("keras-resnet50 {side}px {}: eager rel err {e:.2e}, folded {f:.2e}", tap.name());
            assert!(e < TOL && f < TOL, "{side}px {}: eager {e:.2e}, folded {f:.2e}", tap.name());
        }
    }
}

#[test]
fn keras_2_and_keras_3_weight_names_read_alike() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    // Keras 3: `kernel`, variable-length strings; Keras 2 (the published file): `kernel:0`,
    // fixed-length strings.
    let t0 = std::time::Instant::now();
    let k3 = convert(&dir.join("resnet50.h5")).unwrap();
    println!("read and converted 94.8 MB of Keras .h5 in {:.2} s", t0.elapsed().as_secs_f64());
    let k2: std::collections::HashMap<_, _> = convert(&dir.join("resnet50-tf2.h5")).unwrap().into_iter().collect();
    assert_eq!(k3.len(), 53 * 2 + 53 * 4, "53 convs with biases, 53 BatchNorms");
    assert_eq!(k2.len(), k3.len());
    for (k, v) in &k3 {
        assert!(k2[k].equal(v), "{k} differs");
    }
    let (name, kernel) = &k3[0];
    assert_eq!((name.as_str(), kernel.size()), ("conv1_conv.weight", vec![64, 3, 7, 7]));
}

#[test]
fn keras_preprocessing_matches_preprocess_input() {
    let _g = torch_lock();
    let r = read_tensors(&generated(SCRIPT).join("preprocess.safetensors"));
    let p = Preprocess {
        size: 16,
        normalization: Normalization::KerasCaffe,
        resize: ResizeMode::Squash,
        ..Default::default()
    };
    let ours = p.apply(&nchw(&r["u8"]), Device::Cpu).unwrap();
    let err = rel_err(&ours, &nchw(&r["keras"]));
    println!("keras preprocess_input: rel err {err:.2e}");
    assert!(err < 1e-6, "{err:.2e}");
}

fn load_err(arch: Arch, path: &Path) -> String {
    match Backbone::from_file(arch, path, Device::Cpu) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_keras_files_are_errors_naming_the_layer_and_the_file() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir.join("resnet50.h5")).unwrap();
    let cut = tmp.path().join("cut.h5");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let truncated = format!("truncated: its header says {} bytes", bytes.len());
    for (file, needles) in [
        (cut.as_path(), &["cut.h5", truncated.as_str()][..]),
        (
            &dir.join("other-model.h5"),
            &[
                "other-model.h5",
                "missing 318 tensors: conv1_bn.bias",
                "unexpected 2 tensors: block1_conv1.bias, block1_conv1.weight",
            ],
        ),
        (
            &dir.join("missing-layer.h5"),
            &["missing-layer.h5", "missing 4 tensors: conv4_block2_2_bn.bias, conv4_block2_2_bn.running_mean"],
        ),
        (
            &dir.join("misshaped.h5"),
            &[
                "misshaped.h5",
                "mis-shaped 1 tensor: conv3_block1_1_conv.weight (file [64, 256, 1, 1], model [128, 256, 1, 1])",
            ],
        ),
    ] {
        let err = load_err(Arch::KerasResNet50, file);
        println!("{}: {err}", file.file_name().unwrap().to_string_lossy());
        for n in needles {
            assert!(err.contains(n), "`{n}` not in: {err}");
        }
    }
    // A torchvision ResNet is not given Keras' weights.
    let err = load_err(Arch::ResNet50, &dir.join("resnet50.h5"));
    assert!(err.contains("resnet50.h5") && err.contains("--arch keras-resnet50"), "{err}");
}
