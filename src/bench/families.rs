//! Each backbone family against PyTorch eager (channels-last, `inference_mode`), and
//! Keras' ResNet50 against Keras itself, interleaved in one run: images/s, the ratio to
//! the reference, and GFLOP/s as a share of a convolution ceiling measured in the same
//! rounds. Random weights: speed only.
use super::peer::{Peer, PeerSpec};
use super::{BenchConfig, Env, Result};
use crate::features::Precision;
use crate::models::{Arch, Backbone, Inference, Tap};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// One architecture's result.
#[derive(Debug, Clone, Serialize)]
pub struct FamilyRow {
    pub arch: Arch,
    pub gflop_per_image: f64,
    /// Median over rounds.
    pub ours_images_per_s: f64,
    /// The reference: torchvision eager, or Keras for `keras-resnet50`.
    pub reference: String,
    pub reference_images_per_s: Option<f64>,
    pub vs_reference: Option<f64>,
    pub ours_gflop_per_s: f64,
    pub share_of_ceiling: f64,
    /// Parameters of the inference copy, MiB.
    pub weights_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct Families {
    pub size: i64,
    pub batch: i64,
    pub ceiling_gflop_per_s: f64,
    pub rows: Vec<FamilyRow>,
}

enum Runner {
    Ours(Box<dyn Inference>, Tensor),
    Peer(usize),
    Ceiling(Tensor, Tensor),
}

/// torchvision's builder for `arch` (`convnext_tiny`), or `None` where the reference is
/// Keras.
fn torchvision_builder(arch: Arch) -> Option<String> {
    (!arch.name().starts_with("keras-")).then(|| arch.name().replace('-', "_"))
}

fn channels_last(t: &Tensor) -> Tensor {
    crate::models::family::channels_last(t)
}

/// Runs `cfg.arches` fp32 beside their references for `cfg.reps` interleaved rounds.
pub fn run(cfg: &BenchConfig, env: &Env) -> Result<Families> {
    let device = env.device;
    let x = Tensor::randn([cfg.batch, 3, cfg.size, cfg.size], (Kind::Float, device));
    let mut runners: Vec<(Option<Arch>, Runner)> = Vec::new();
    let mut peers: Vec<Peer> = Vec::new();
    let mut facts = Vec::new();
    let dev = crate::models::folded::device_name(device);
    for &arch in &cfg.arches {
        let b = Backbone::random(arch, 0, device);
        let params: i64 = b.vs.variables().values().map(|t| t.numel() as i64).sum();
        facts.push((arch, b.macs_per_image(cfg.size, Tap::Layer4), params as f64 * 4.0 / (1 << 20) as f64));
        runners.push((Some(arch), Runner::Ours(b.inference_copy(Precision::Fp32), x.copy())));
        let (framework, python, model) = match torchvision_builder(arch) {
            Some(m) => ("torch", Some(env.torch_python.as_path()), m),
            None => ("keras", env.keras_python.as_deref(), "resnet50".to_string()),
        };
        let Some(python) = python else {
            eprintln!("bench: {arch}: no {framework} peer (the keras section sets up TensorFlow); ours alone");
            continue;
        };
        eprintln!("bench: starting the {framework} peer for {arch}");
        let log = env.out.join(format!("peer-{framework}-{}.log", arch.name()));
        let spec = PeerSpec {
            python,
            script: &env.script("peer.py"),
            framework,
            model: &model,
            size: cfg.size,
            batch: cfg.batch,
            threads: cfg.threads,
            device: &dev,
            variants: &["fp32"],
            log: &log,
        };
        peers.push(Peer::start(&spec)?);
        runners.push((Some(arch), Runner::Peer(peers.len() - 1)));
    }
    let cx = channels_last(&Tensor::randn([8, 256, 56, 56], (Kind::Float, device)));
    let cw = channels_last(&(Tensor::randn([256, 256, 3, 3], (Kind::Float, device)) * 0.02));
    runners.push((None, Runner::Ceiling(cx, cw)));
    let measure = |r: &Runner, peers: &mut Vec<Peer>| -> Result<f64> {
        let t = Instant::now();
        match r {
            Runner::Peer(i) => return peers[*i].run("fp32", 1),
            Runner::Ours(net, x) => {
                let _ = net.features(x, Tap::Layer4);
            }
            Runner::Ceiling(x, w) => {
                let _ = x.conv2d(w, None::<Tensor>, [1], [1], [1], 1);
            }
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let dt = t.elapsed().as_secs_f64();
        Ok(match r {
            Runner::Ceiling(..) => 2.0 * (8 * 256 * 56 * 56) as f64 * 256.0 * 9.0 / dt / 1e9,
            _ => cfg.batch as f64 / dt,
        })
    };
    let n = runners.len();
    let mut samples = vec![Vec::new(); n];
    tch::no_grad(|| -> Result<()> {
        for (_, r) in runners.iter().filter(|(_, r)| !matches!(r, Runner::Peer(_))) {
            measure(r, &mut peers)?;
        }
        for rep in 0..cfg.reps {
            for k in 0..n {
                let i = (k + rep) % n;
                measure(&runners[i].1, &mut peers)?;
                samples[i].push(measure(&runners[i].1, &mut peers)?);
            }
            eprintln!("bench: families round {}/{} done", rep + 1, cfg.reps);
        }
        Ok(())
    })?;
    let med = |i: usize| super::throughput::median(&samples[i]);
    let ceiling = med(n - 1);
    let rows = facts
        .into_iter()
        .map(|(arch, macs, weights_mib)| {
            let gflop = 2.0 * macs as f64 / 1e9;
            let ours = runners.iter().position(|(a, r)| *a == Some(arch) && matches!(r, Runner::Ours(..))).map(med);
            let peer = runners.iter().position(|(a, r)| *a == Some(arch) && matches!(r, Runner::Peer(_))).map(med);
            let ours = ours.expect("every arch has our candidate");
            let reference = match torchvision_builder(arch) {
                Some(m) => format!("torchvision {m}, eager channels-last, inference_mode"),
                None => "Keras ResNet50 (TensorFlow), tf.function".into(),
            };
            FamilyRow {
                arch,
                gflop_per_image: gflop,
                ours_images_per_s: ours,
                reference,
                reference_images_per_s: peer,
                vs_reference: peer.map(|p| ours / p),
                ours_gflop_per_s: ours * gflop,
                share_of_ceiling: ours * gflop / ceiling,
                weights_mib,
            }
        })
        .collect();
    Ok(Families { size: cfg.size, batch: cfg.batch, ceiling_gflop_per_s: ceiling, rows })
}

impl Families {
    pub fn print(&self) {
        println!(
            "\nBackbone families: fp32 extraction at {0}x{0}, batch {1}; ceiling {2:.0} GFLOP/s (conv3x3 256->256)",
            self.size, self.batch, self.ceiling_gflop_per_s
        );
        println!(
            "  {:<18} {:>9} {:>10} {:>10} {:>7} {:>9} {:>8}  reference",
            "arch", "GFLOP/img", "ours img/s", "ref img/s", "ratio", "GFLOP/s", "ceiling"
        );
        for r in &self.rows {
            let refv = r.reference_images_per_s.map_or("-".into(), |v| format!("{v:.1}"));
            let ratio = r.vs_reference.map_or("-".into(), |v| format!("{v:.2}x"));
            println!(
                "  {:<18} {:>9.2} {:>10.1} {:>10} {:>7} {:>9.0} {:>7.0}%  {}",
                r.arch.name(),
                r.gflop_per_image,
                r.ours_images_per_s,
                refv,
                ratio,
                r.ours_gflop_per_s,
                100.0 * r.share_of_ceiling,
                r.reference
            );
        }
    }
}
