//! ConvNeXt against torchvision (tests/fixtures/gen/make_convnext_reference.py): the eager
//! net and the inference copy, every tap, two input sizes; Small and Base at one size.
use crate::common::*;
use tch::{Device, Kind};
use transfer_lab::models::{Arch, Backbone, Precision, Tap};

const SCRIPT: &str = "tests/fixtures/gen/make_convnext_reference.py";
const TOL: f64 = 1e-4;

#[test]
fn convnext_tiny_matches_torchvision_at_every_tap_and_two_sizes() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for ext in ["safetensors", "pth"] {
        let b =
            Backbone::from_file(Arch::ConvnextTiny, &dir.join(format!("convnext_tiny.{ext}")), Device::Cpu).unwrap();
        for size in [64, 96] {
            let io = read_tensors(&dir.join(format!("convnext_tiny-io-{size}.safetensors")));
            let maps = tch::no_grad(|| b.net.taps_t(&io["x"], Tap::Layer4, false));
            for (i, key) in ["layer1", "layer2", "layer3", "layer4"].into_iter().enumerate() {
                let err = rel_err(&maps[i], &io[key]);
                println!("convnext-tiny .{ext} {size}px {key} map: rel err {err:.2e}");
                assert!(err < TOL, "{key} at {size}px from .{ext}: {err:.2e}");
                let tap = Tap::at(i);
                let want = if i == 3 {
                    io["features"].shallow_clone()
                } else {
                    io[key].mean_dim([2i64, 3].as_slice(), false, Kind::Float)
                };
                assert_eq!(b.feature_dim(tap), want.size()[1]);
                let eager = tch::no_grad(|| b.net.features_t(&io["x"], tap, false));
                let copy = b.features(&io["x"], tap);
                let (e1, e2) = (rel_err(&eager, &want), rel_err(&copy, &want));
                println!("  {key} features: eager {e1:.2e}, inference copy {e2:.2e}");
                assert!(e1 < TOL && e2 < TOL, "{key} features at {size}px: {e1:.2e} / {e2:.2e}");
            }
        }
    }
}

#[test]
fn convnext_small_and_base_load_strictly_and_match() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for (arch, file) in [(Arch::ConvnextSmall, "convnext_small"), (Arch::ConvnextBase, "convnext_base")] {
        let b = Backbone::from_file(arch, &dir.join(format!("{file}.safetensors")), Device::Cpu).unwrap();
        let io = read_tensors(&dir.join(format!("{file}-io-32.safetensors")));
        let err = rel_err(&b.features(&io["x"], Tap::Layer4), &io["features"]);
        println!("{arch} 32px features: rel err {err:.2e}");
        assert!(err < TOL, "{arch}: {err:.2e}");
    }
}

#[test]
fn convnext_bf16_copy_stays_close_and_training_mode_reaches_the_last_stage() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let b = Backbone::from_file(Arch::ConvnextTiny, &dir.join("convnext_tiny.safetensors"), Device::Cpu).unwrap();
    let io = read_tensors(&dir.join("convnext_tiny-io-64.safetensors"));
    let bf16 = b.inference_copy(Precision::Bf16);
    assert_eq!(bf16.kind(), Kind::BFloat16);
    let (lo, hi) = (bf16.features(&io["x"], Tap::Layer4), b.features(&io["x"], Tap::Layer4));
    let cos = tch::Tensor::cosine_similarity(&lo, &hi, 1, 1e-8).min().double_value(&[]);
    println!("convnext-tiny bf16 vs fp32: min cosine {cos:.5}");
    assert!(cos > 0.99, "{cos}");
    assert!(!lo.equal(&hi), "bf16 must really compute in bf16");
    // Training mode (stochastic depth) differs from eval; gradients reach the last stage.
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let net = Arch::ConvnextTiny.build(&vs.root());
    transfer_lab::models::load_backbone_weights(Arch::ConvnextTiny, &mut vs, &dir.join("convnext_tiny.safetensors"))
        .unwrap();
    tch::manual_seed(1);
    let train = net.features_t(&io["x"], Tap::Layer4, true);
    let eval = tch::no_grad(|| net.features_t(&io["x"], Tap::Layer4, false));
    assert!(rel_err(&train, &eval) > 1e-3, "stochastic depth must act in training mode");
    train.sum(Kind::Float).backward();
    let vars = vs.variables();
    for name in ["features.7.2.block.5.weight", "classifier.0.weight", "features.1.0.layer_scale"] {
        let g = vars[name].grad();
        assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "no gradient at {name}");
    }
    assert!(Arch::ConvnextTiny.in_last_stage("features.7.2.block.5.weight"));
    assert!(!Arch::ConvnextTiny.in_last_stage("features.5.0.block.0.weight"));
}

#[test]
fn a_checkpoint_of_another_family_is_refused_naming_its_tensors() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let resnet = generated("tests/fixtures/gen/make_reference.py").join("resnet18.pth");
    let err = Backbone::from_file(Arch::ConvnextTiny, &resnet, Device::Cpu).err().expect("a ResNet file").to_string();
    assert!(err.contains("resnet18.pth") && err.contains("missing") && err.contains("features.0.0.weight"), "{err}");
    assert!(err.contains("unexpected") && err.contains("conv1.weight"), "{err}");
    let err = Backbone::from_file(Arch::ResNet50, &dir.join("convnext_tiny.safetensors"), Device::Cpu)
        .err()
        .expect("a ConvNeXt file")
        .to_string();
    assert!(
        err.contains("convnext_tiny.safetensors") && err.contains("missing") && err.contains("bn1.weight"),
        "{err}"
    );
    assert!(err.contains("another architecture? this is --arch resnet50"), "{err}");
}
