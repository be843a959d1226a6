//! Our EfficientNets and bicubic resizing against torchvision
//! (tests/fixtures/gen/make_efficientnet_reference.py).
use crate::common::*;
use std::path::Path;
use tch::{Device, Kind, Tensor};
use transfer_lab::models::folded::Precision;
use transfer_lab::models::{Arch, Backbone, Tap};
use transfer_lab::preprocess::{Interpolation, Preprocess, ResizeMode};

const SCRIPT: &str = "tests/fixtures/gen/make_efficientnet_reference.py";
const TOL: f64 = 1e-4;
const TAPS: [(Tap, &str); 4] =
    [(Tap::Layer1, "layer1"), (Tap::Layer2, "layer2"), (Tap::Layer3, "layer3"), (Tap::Layer4, "layer4")];

fn load(arch: Arch, file: &Path) -> Backbone {
    Backbone::from_file(arch, file, Device::Cpu).unwrap_or_else(|e| panic!("{arch} from {}: {e}", file.display()))
}

/// Eager (`net.features_t`, and `net.taps_t`'s maps) and the folded inference copy
/// (`features`) at every tap and both sizes.
fn check_full(arch: Arch, ext: &str) {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let io = read_tensors(&dir.join(format!("{}-io.safetensors", arch.name())));
    let b = load(arch, &dir.join(format!("{}.{ext}", arch.name())));
    for side in [64, 96] {
        let x = &io[&format!("x{side}")];
        let maps = tch::no_grad(|| b.net.taps_t(x, Tap::Layer4, false));
        assert_eq!(maps.len(), 4);
        for (i, (tap, name)) in TAPS.into_iter().enumerate() {
            let want_map = &io[&format!("{side}.{name}")];
            let err = rel_err(&maps[i], want_map);
            assert!(err < TOL, "{arch} {side}px {name} map: {err:.2e}");
            let want = want_map.mean_dim([2i64, 3].as_slice(), false, Kind::Float);
            assert_eq!(want.size()[1], arch.feature_dim(tap), "{arch} {name} width");
            let eager = tch::no_grad(|| b.net.features_t(x, tap, false));
            let folded = b.features(x, tap);
            let (e, f) = (rel_err(&eager, &want), rel_err(&folded, &want));
            println!("{arch} .{ext} {side}px {name}: eager {e:.2e}, folded {f:.2e}");
            assert!(e < TOL, "{arch} {side}px {name} eager: {e:.2e}");
            assert!(f < TOL, "{arch} {side}px {name} folded: {f:.2e}");
        }
        let pooled = b.features(x, Tap::Layer4);
        assert!(rel_err(&pooled, &io[&format!("{side}.pooled")]) < TOL, "{arch} {side}px pooled");
    }
}

#[test]
fn efficientnet_b0_matches_torchvision() {
    check_full(Arch::EfficientnetB0, "safetensors");
}

#[test]
fn efficientnet_b0_loads_torch_save_files() {
    check_full(Arch::EfficientnetB0, "pth");
}

#[test]
fn efficientnet_v2_s_matches_torchvision() {
    check_full(Arch::EfficientnetV2S, "safetensors");
}

/// B1-B3 load their state dicts strictly and agree at 64 px on the pooled layer4.
#[test]
fn efficientnet_b1_to_b3_load_strictly_and_match() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for arch in [Arch::EfficientnetB1, Arch::EfficientnetB2, Arch::EfficientnetB3] {
        let io = read_tensors(&dir.join(format!("{}-io.safetensors", arch.name())));
        let b = load(arch, &dir.join(format!("{}.safetensors", arch.name())));
        let (x, want) = (&io["x64"], &io["64.pooled"]);
        assert_eq!(want.size()[1], arch.feature_dim(Tap::Layer4));
        let eager = tch::no_grad(|| b.net.features_t(x, Tap::Layer4, false));
        let folded = b.features(x, Tap::Layer4);
        let (e, f) = (rel_err(&eager, want), rel_err(&folded, want));
        println!("{arch} 64px layer4: eager {e:.2e}, folded {f:.2e}");
        assert!(e < TOL && f < TOL, "{arch}: eager {e:.2e}, folded {f:.2e}");
    }
}

/// A state dict of another EfficientNet is refused, naming the tensors.
#[test]
fn a_state_dict_of_another_width_is_refused() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let err = Backbone::from_file(Arch::EfficientnetB2, &dir.join("efficientnet-b1.safetensors"), Device::Cpu)
        .err()
        .expect("B1's weights in B2")
        .to_string();
    // B2 is B1 1.1x wider: the same stem, wider stages.
    assert!(err.contains("efficientnet-b1.safetensors") && err.contains("mis-shaped"), "{err}");
    assert!(!err.contains("missing") && !err.contains("unexpected"), "the same depth and names: {err}");
}

/// Per-row cosine similarity of `[N, D]` matrices: `[N]`.
fn row_cosine(a: &Tensor, b: &Tensor) -> Tensor {
    let dot = (a * b).sum_dim_intlist(1, false, Kind::Double);
    let norm = |t: &Tensor| t.square().sum_dim_intlist(1, false, Kind::Double).sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn bf16_inference_copies_stay_close() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for arch in [Arch::EfficientnetB0, Arch::EfficientnetV2S] {
        let io = read_tensors(&dir.join(format!("{}-io.safetensors", arch.name())));
        let b = load(arch, &dir.join(format!("{}.safetensors", arch.name())));
        let bf16 = b.inference_copy(Precision::Bf16);
        assert_eq!(bf16.kind(), Kind::BFloat16);
        let x = &io["x64"];
        let want = io["64.layer4"].mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        let got = bf16.features(x, Tap::Layer4);
        assert_eq!(got.kind(), Kind::Float);
        let min = row_cosine(&got, &want).min().double_value(&[]);
        println!("{arch} bf16 layer4: cosine min {min:.5}, rel err {:.2e}", rel_err(&got, &want));
        assert!(min >= 0.99, "{arch} bf16: cosine {min}");
        assert!(rel_err(&got, &want) > 1e-4, "bf16 must really compute in bf16");
    }
}

/// Fine-tuning: training mode runs BatchNorm on batch statistics and stochastic depth, and
/// gradients reach the last stage.
#[test]
fn training_mode_differs_and_reaches_the_last_stage() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for (arch, last) in [
        (Arch::EfficientnetB0, ["features.8.0.weight", "features.6.3.block.3.1.weight"]),
        (Arch::EfficientnetV2S, ["features.7.0.weight", "features.6.14.block.2.fc2.bias"]),
    ] {
        let io = read_tensors(&dir.join(format!("{}-io.safetensors", arch.name())));
        let b = load(arch, &dir.join(format!("{}.safetensors", arch.name())));
        let x = &io["x64"];
        let eval = tch::no_grad(|| b.net.features_t(x, Tap::Layer4, false));
        tch::manual_seed(0);
        let train = b.net.features_t(x, Tap::Layer4, true);
        assert_eq!(train.size(), eval.size());
        let d = rel_err(&train.detach(), &eval);
        assert!(d > 1e-2, "{arch}: train-mode output equals eval-mode's ({d:.2e})");
        let vars = b.vs.variables();
        for name in last {
            assert!(arch.in_last_stage(name), "{name}");
            assert!(vars.contains_key(name), "{arch}: no {name}");
        }
        train.square().mean(Kind::Float).backward();
        for name in last {
            let g = vars[name].grad();
            assert!(g.defined() && g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{arch}: no gradient at {name}");
        }
        // Stochastic depth draws per sample: with 16 copies of the batch (the same batch
        // statistics) some rows are dropped somewhere, and the same seed draws the same.
        let x16 = x.repeat([8, 1, 1, 1]);
        let run = |seed| {
            tch::manual_seed(seed);
            tch::no_grad(|| b.net.features_t(&x16, Tap::Layer4, true))
        };
        let (a, again, other) = (run(3), run(3), run(4));
        assert!(a.equal(&again), "{arch}: a seeded training forward is reproducible");
        assert!(!a.equal(&other), "{arch}: stochastic depth draws");
        let copies = a.view([8, 2, -1]);
        assert!(
            !copies.get(0).equal(&copies.get(1)) || !copies.get(0).equal(&copies.get(7)),
            "{arch}: rows draw apart"
        );
    }
}

/// `Preprocess::resize` with bicubic is torchvision's `Resize(..., BICUBIC, antialias=True)`
/// on a float tensor (then `CenterCrop` for crop mode), shrinking and enlarging.
#[test]
fn bicubic_resize_matches_torchvision() {
    let _g = torch_lock();
    let r = read_tensors(&generated(SCRIPT).join("bicubic.safetensors"));
    let src = &r["src"];
    let (h, w) = (src.size()[2], src.size()[3]);
    for size in [24, 64] {
        for (mode, key) in [(ResizeMode::Crop, "crop"), (ResizeMode::Squash, "squash")] {
            let p = Preprocess { size, resize: mode, interpolation: Interpolation::Bicubic, ..Default::default() };
            let ours = p.resize(src, h, w).unwrap();
            let err = rel_err(&ours, &r[&format!("{key}{size}")]);
            println!("bicubic {key} {size}: rel err {err:.2e}");
            assert!(err < TOL, "bicubic {key} {size}: {err:.2e}");
        }
    }
    // Bilinear stays what it was.
    let p = Preprocess { size: 24, resize: ResizeMode::Crop, ..Default::default() };
    assert_eq!(p.interpolation, Interpolation::Bilinear);
    assert!(!p.resize(src, h, w).unwrap().allclose(&r["crop24"], 1e-3, 1e-3, false));
}
