//! Our ResNets and preprocessing against PyTorch/torchvision (tests/fixtures/gen/make_reference.py).
use crate::common::*;
use tch::{nn, Device, Kind, Tensor};
use transfer_lab::models::{load_weights, Arch, ResNet};
use transfer_lab::preprocess::{Normalization, Preprocess};

const SCRIPT: &str = "tests/fixtures/gen/make_reference.py";
const TOL: f64 = 1e-4;

fn build(arch: Arch, weights: &std::path::Path) -> (nn::VarStore, ResNet) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), arch, Some(1000));
    load_weights(&mut vs, weights, &[]).unwrap();
    (vs, net)
}

fn check_arch(arch: Arch) {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let io = read_tensors(&dir.join(format!("{}-io.safetensors", arch.name())));
    for ext in ["pth", "safetensors"] {
        let (_vs, net) = build(arch, &dir.join(format!("{}.{ext}", arch.name())));
        let s = tch::no_grad(|| net.stages(&io["x"], false));
        let mut outs = vec![("stem", s.stem), ("pooled", s.pooled), ("logits", s.logits.unwrap())];
        for (i, l) in s.layers.into_iter().enumerate() {
            outs.push((["layer1", "layer2", "layer3", "layer4"][i], l));
        }
        for (name, ours) in outs {
            let err = rel_err(&ours, &io[name]);
            println!("{} {ext} {name}: rel err {err:.2e}", arch.name());
            assert!(err < TOL, "{} from .{ext}: {name} differs from PyTorch by {err:.2e}", arch.name());
        }
    }
}

#[test]
fn resnet18_matches_torchvision() {
    check_arch(Arch::ResNet18);
}

#[test]
fn resnet50_matches_torchvision() {
    check_arch(Arch::ResNet50);
}

#[test]
fn features_at_each_tap_are_pooled_stage_outputs() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let io = read_tensors(&dir.join("resnet18-io.safetensors"));
    let (_vs, net) = build(Arch::ResNet18, &dir.join("resnet18.safetensors"));
    use transfer_lab::models::Tap;
    for (tap, key, dim) in [(Tap::Layer2, "layer2", 128), (Tap::Layer3, "layer3", 256), (Tap::Layer4, "layer4", 512)] {
        let f = tch::no_grad(|| net.features(&io["x"], tap, false));
        assert_eq!(f.size(), [2, dim]);
        assert_eq!(net.feature_dim(tap), dim);
        let want = io[key].mean_dim([2i64, 3].as_slice(), false, Kind::Float);
        assert!(rel_err(&f, &want) < TOL, "{key}");
    }
}

#[test]
fn bad_state_dicts_are_errors_that_name_the_tensor() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let sd: Vec<(String, Tensor)> = Tensor::read_safetensors(dir.join("resnet18.safetensors")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, tensors: Vec<(String, Tensor)>| {
        let p = tmp.path().join(name);
        Tensor::write_safetensors(&tensors, &p).unwrap();
        p
    };
    let missing = write(
        "missing.safetensors",
        sd.iter()
            .filter(|(k, _)| k != "layer3.1.bn2.running_var")
            .map(|(k, v)| (k.clone(), v.shallow_clone()))
            .collect(),
    );
    let mut extra: Vec<_> = sd.iter().map(|(k, v)| (k.clone(), v.shallow_clone())).collect();
    extra.push(("layer5.0.conv1.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu))));
    let extra = write("extra.safetensors", extra);
    let bad_shape = write(
        "shape.safetensors",
        sd.iter()
            .map(|(k, v)| {
                let v = if k == "layer2.0.conv1.weight" { v.narrow(0, 0, 64) } else { v.shallow_clone() };
                (k.clone(), v)
            })
            .collect(),
    );
    for (path, needle) in [
        (&missing, "missing 1 tensor: layer3.1.bn2.running_var"),
        (&extra, "unexpected 1 tensor: layer5.0.conv1.weight"),
        (&bad_shape, "layer2.0.conv1.weight (file [64, 64, 3, 3], model [128, 64, 3, 3])"),
    ] {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _net = ResNet::new(&vs.root(), Arch::ResNet18, Some(1000));
        let before = vs.variables()["conv1.weight"].copy();
        let err = load_weights(&mut vs, path, &[]).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
        assert!(err.contains(path.file_name().unwrap().to_str().unwrap()), "{err}");
        // Never a partial load.
        assert!(vs.variables()["conv1.weight"].equal(&before));
    }
    // A headless backbone accepts fc.* only when told to.
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = ResNet::new(&vs.root(), Arch::ResNet18, None);
    let src = dir.join("resnet18.pth");
    assert!(load_weights(&mut vs, &src, &[])
        .unwrap_err()
        .to_string()
        .contains("unexpected 2 tensors: fc.bias, fc.weight"));
    let report = load_weights(&mut vs, &src, &["fc."]).unwrap();
    assert_eq!(report.ignored, ["fc.bias", "fc.weight"]);
    // A truncated checkpoint is a clear error too.
    let bytes = std::fs::read(&src).unwrap();
    let cut = tmp.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_weights(&mut vs, &cut, &["fc."]).unwrap_err().to_string();
    assert!(err.contains("cut.pth") && err.contains("truncated"), "{err}");
}

#[test]
fn preprocessing_matches_torchvision_and_keras_formula() {
    let _g = torch_lock();
    let r = read_tensors(&generated(SCRIPT).join("preprocess.safetensors"));
    for (norm, key, src, size) in [
        (Normalization::Torchvision, "torchvision", "u8", 200),
        (Normalization::KerasCaffe, "keras_caffe", "u8", 200),
        (Normalization::Torchvision, "torchvision_224", "big", 224),
    ] {
        let p = Preprocess {
            size,
            normalization: norm,
            resize: transfer_lab::preprocess::ResizeMode::Squash,
            ..Default::default()
        };
        let ours = p.apply(&r[src], Device::Cpu).unwrap();
        let err = rel_err(&ours, &r[key]);
        println!("{key}: rel err {err:.2e}");
        assert!(err < TOL, "{key}: {err:.2e}");
    }
}

#[test]
fn folded_channels_last_net_matches_pytorch() {
    use transfer_lab::models::{folded::FoldedResNet, Tap};
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for arch in [Arch::ResNet18, Arch::ResNet50] {
        let io = read_tensors(&dir.join(format!("{}-io.safetensors", arch.name())));
        let (_vs, net) = build(arch, &dir.join(format!("{}.safetensors", arch.name())));
        for cl in [false, true] {
            let folded = FoldedResNet::new(&net, cl);
            for (tap, key) in [(Tap::Layer2, "layer2"), (Tap::Layer3, "layer3"), (Tap::Layer4, "layer4")] {
                let want = io[key].mean_dim([2i64, 3].as_slice(), false, Kind::Float);
                let err = rel_err(&folded.features(&io["x"], tap), &want);
                println!("{} folded (channels-last {cl}) {key}: rel err {err:.2e}", arch.name());
                assert!(err < TOL, "{} {key}: {err:.2e}", arch.name());
            }
        }
    }
}
