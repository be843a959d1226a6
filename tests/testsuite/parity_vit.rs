//! Vision Transformers against `transformers` and torchvision
//! (tests/fixtures/gen/make_vit_reference.py): small configs of the four layouts and the
//! real shapes of ViT-S/14 and ViT-B/16, two input sizes each (the trained grid and a
//! resampled one), every tap, every pooling; the larger variants' real key sets load
//! strictly.
use crate::common::*;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};
use transfer_lab::models::vit::config::{Config, Flavour};
use transfer_lab::models::{load_weights, Arch, Backbone, Network, Pool, Tap, Vit};

const SCRIPT: &str = "tests/fixtures/gen/make_vit_reference.py";
const TOL: f64 = 1e-4;
/// The positions alone: the bound for `interpolate_pos_encoding`.
const POS_TOL: f64 = 1e-5;

/// Loads `dir/case/model.safetensors` strictly into a ViT of shape `c` named as `arch`.
fn load(dir: &Path, case: &str, arch: Arch, c: Config) -> (nn::VarStore, Vit) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let vit = Vit::with_config(&vs.root(), arch, c);
    load_weights(&mut vs, &dir.join(case).join("model.safetensors"), Config::skipped(c.flavour)).unwrap();
    (vs, vit)
}

/// Every tap's tokens, the positions, the taps' maps and the three poolings at `size`.
/// `every_pool`: all poolings at every tap (else at the last only: each is a forward pass).
fn check(dir: &Path, case: &str, vit: &Vit, c: &Config, size: i64, every_pool: bool) {
    let io = read_tensors(&dir.join(format!("{case}-io-{size}.safetensors")));
    let g = size / c.patch;
    let pos = vit.positions(g, g);
    let e = rel_err(&pos, &io["pos"]);
    println!("{case} {size}px positions: rel err {e:.2e}");
    assert!(e < POS_TOL, "{case} positions at {size}px: {e:.2e}");
    let x = &io["x"];
    let (tokens, _) = tch::no_grad(|| vit.tokens(x, Tap::Layer4));
    let skip = 1 + c.registers();
    for (i, t) in tokens.iter().enumerate() {
        let want = &io[&format!("tokens{i}")];
        let e = rel_err(t, want);
        let tap = Tap::at(i);
        let n = want.size()[1];
        let cls = want.select(1, 0);
        let mean = want.narrow(1, skip, n - skip).mean_dim(1, false, Kind::Float);
        // The real shapes: the class token at the end only (each pooling is a forward).
        let pools = if every_pool {
            3
        } else if i == 3 {
            1
        } else {
            0
        };
        for (pool, w) in [
            (Pool::Cls, cls.shallow_clone()),
            (Pool::Mean, mean.shallow_clone()),
            (Pool::ClsMean, Tensor::cat(&[&cls, &mean], 1)),
        ]
        .into_iter()
        .take(pools)
        {
            let got = tch::no_grad(|| vit.readout_t(x, tap, pool, false));
            let ep = rel_err(&got, &w);
            assert!(ep < TOL, "{case} {size}px tap {i} {pool:?}: {ep:.2e}");
        }
        println!("  tap {i}: tokens rel err {e:.2e}");
        assert!(e < TOL, "{case} {size}px tap {i} tokens: {e:.2e}");
    }
    // The reference's own pooled output is the class token (after the norm) at the end.
    let e = rel_err(&tokens[3].select(1, 0), &io["pooled"]);
    assert!(e < TOL, "{case} {size}px pooled output: {e:.2e}");
    let maps = tch::no_grad(|| vit.taps_t(x, Tap::Layer4, false));
    assert_eq!(maps[3].size(), [2, c.dim, g, g]);
    let want = io["tokens3"].narrow(1, skip, g * g).transpose(1, 2).reshape([2, c.dim, g, g]);
    assert!(rel_err(&maps[3], &want) < TOL, "{case}: the tap map is the patch tokens on their grid");
}

fn small(flavour: Flavour, patch: i64, grid: i64) -> Config {
    Config {
        flavour,
        dim: 48,
        depth: 4,
        heads: 4,
        mlp: 192,
        patch,
        grid,
        eps: if flavour == Flavour::Clip { 1e-5 } else { 1e-6 },
    }
}

#[test]
fn small_vits_of_every_layout_match_their_references_at_two_sizes() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for (case, arch, c, sizes) in [
        ("dinov2_small", Arch::Dinov2Vits14, small(Flavour::Dinov2, 14, 4), [56, 84]),
        ("dinov2reg_small", Arch::Dinov2Vits14Reg, small(Flavour::Dinov2Registers, 14, 4), [56, 84]),
        ("clip_small", Arch::ClipVitb16, small(Flavour::Clip, 16, 4), [64, 96]),
        ("tvvit_small", Arch::VitB16, small(Flavour::Torchvision, 16, 4), [64, 96]),
    ] {
        let (_vs, vit) = load(&dir, case, arch, c);
        for size in sizes {
            check(&dir, case, &vit, &c, size, true);
        }
    }
}

#[test]
fn real_shapes_of_vit_s14_and_vit_b16_match_through_the_backbone() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for (case, arch, sizes) in [
        ("dinov2_vits14", Arch::Dinov2Vits14, [224, 98]),
        ("clip_vitb16", Arch::ClipVitb16, [224, 112]),
        ("vit_b16", Arch::VitB16, [224, 112]),
    ] {
        let c = Config::of(arch);
        let (_vs, vit) = load(&dir, case, arch, c);
        for size in sizes {
            check(&dir, case, &vit, &c, size, false);
        }
        // The same file through `Backbone` (its loader, its inference copy, the default pooling).
        let b = Backbone::from_file(arch, &dir.join(case).join("model.safetensors"), Device::Cpu).unwrap();
        let io = read_tensors(&dir.join(format!("{case}-io-{}.safetensors", sizes[1])));
        let got = b.readout(&io["x"], Tap::Layer4, arch.default_pool());
        let want = tch::no_grad(|| vit.readout_t(&io["x"], Tap::Layer4, arch.default_pool(), false));
        assert_eq!(got.size()[1], arch.feature_dim(Tap::Layer4));
        assert!(rel_err(&got, &want) < TOL, "{arch}: the backbone's copy differs from the eager net");
    }
}

/// A zero-stride tensor of `shape`: the real shape without the real gigabytes.
fn stand_in(shape: &[i64]) -> Tensor {
    Tensor::zeros([] as [i64; 0], (Kind::Float, Device::Cpu)).expand(shape, false)
}

#[test]
fn larger_variants_load_their_real_key_sets_strictly() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    for arch in [
        Arch::Dinov2Vitb14,
        Arch::Dinov2Vitl14,
        Arch::Dinov2Vits14Reg,
        Arch::Dinov2Vitb14Reg,
        Arch::Dinov2Vitl14Reg,
        Arch::ClipVitb16,
        Arch::ClipVitl14,
    ] {
        let text = std::fs::read_to_string(dir.join(format!("keys-{arch}.json"))).unwrap();
        let shapes: std::collections::BTreeMap<String, Vec<i64>> = serde_json::from_str(&text).unwrap();
        let tensors: Vec<(String, Tensor)> = shapes.iter().map(|(k, s)| (k.clone(), stand_in(s))).collect();
        let path = dir.join(format!("keys-{arch}.json"));
        let mut vs = nn::VarStore::new(Device::Cpu);
        let _net = arch.build(&vs.root());
        let skip = arch.spec().classifier;
        let report =
            transfer_lab::models::load_tensors(&mut vs, tensors, &path, skip).unwrap_or_else(|e| panic!("{arch}: {e}"));
        println!("{arch}: {report:?}");
        // And a key missing from the file is refused, named.
        let mut fewer: Vec<(String, Tensor)> = shapes.iter().map(|(k, s)| (k.clone(), stand_in(s))).collect();
        let dropped =
            fewer.iter().position(|(k, _)| k.contains("norm2") && !skip.iter().any(|p| k.starts_with(p))).unwrap();
        let name = fewer.remove(dropped).0;
        let err = transfer_lab::models::load_tensors(&mut vs, fewer, &path, skip).unwrap_err().to_string();
        assert!(err.contains(&name), "{arch}: the error names the missing {name}: {err}");
    }
}
