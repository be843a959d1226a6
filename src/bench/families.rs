//! Each backbone family against PyTorch eager (channels-last, `inference_mode`), Keras'
//! ResNet50 against Keras itself, DINOv2 and CLIP against `transformers` (eager, SDPA),
//! interleaved in one run: images/s, the ratio to the reference, GFLOP/s as a share of a
//! ceiling measured in the same rounds (a 3x3 convolution for CNNs, a matmul of a ViT
//! MLP's shape for transformers), and memory. Random weights: speed only.
use super::peer::{Peer, PeerSpec};
use super::{BenchConfig, Env, Result};
use crate::features::Precision;
use crate::models::{Arch, Backbone, Family, Inference, Tap};
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
    /// The most bytes of tensors of 1 MiB and more live at once in one batch's pass
    /// (activations), MiB; `None` without the `pool` heap.
    pub ours_activations_mib: Option<f64>,
    /// The reference process's peak RSS (runtime, weights and activations), MiB.
    pub reference_peak_rss_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Families {
    pub size: i64,
    pub batch: i64,
    pub ceiling_gflop_per_s: f64,
    /// fp32 GEMM [8*197, 768] x [768, 3072] (a ViT-B MLP's), GFLOP/s.
    pub matmul_ceiling_gflop_per_s: f64,
    pub rows: Vec<FamilyRow>,
}

enum Runner {
    Ours(Box<dyn Inference>, Tensor),
    Peer(usize),
    Ceiling(Tensor, Tensor),
    Matmul(Tensor, Tensor),
}

/// The reference for `arch`: (framework, peer model, label).
fn reference(arch: Arch) -> (&'static str, String, String) {
    match arch.family() {
        Family::KerasResNet => ("keras", "resnet50".into(), "Keras ResNet50 (TensorFlow), tf.function".into()),
        Family::Vit if arch != Arch::VitB16 => {
            ("torch", format!("hf:{}", arch.name()), "transformers, eager SDPA, inference_mode".into())
        }
        _ => {
            let m = if arch == Arch::VitB16 { "vit_b_16".into() } else { arch.name().replace('-', "_") };
            let label = format!("torchvision {m}, eager channels-last, inference_mode");
            ("torch", m, label)
        }
    }
}

/// The most bytes live at once in one pass of `net`, MiB (the pool heap's peak).
fn activations_mib(net: &dyn Inference, x: &Tensor) -> Option<f64> {
    crate::heap::release_free_pages();
    let before = crate::heap::pool_stats()?.live;
    let _ = tch::no_grad(|| net.features(x, Tap::Layer4));
    let peak = crate::heap::pool_stats()?.peak;
    Some(peak.saturating_sub(before) as f64 / (1 << 20) as f64)
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
        if let Err(e) = arch.check_size(cfg.size) {
            eprintln!("bench: {arch} left out: {e}");
            continue;
        }
        let net = b.inference_copy(Precision::Fp32);
        let act = activations_mib(net.as_ref(), &x);
        facts.push((arch, b.macs_per_image(cfg.size, Tap::Layer4), params as f64 * 4.0 / (1 << 20) as f64, act));
        runners.push((Some(arch), Runner::Ours(net, x.copy())));
        let (framework, model, _) = reference(arch);
        let python = match framework {
            "keras" => env.keras_python.as_deref(),
            _ => Some(env.torch_python.as_path()),
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
    let (ma, mb) =
        (Tensor::randn([8 * 197, 768], (Kind::Float, device)), Tensor::randn([768, 3072], (Kind::Float, device)));
    runners.push((None, Runner::Matmul(ma, mb)));
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
            Runner::Matmul(a, b) => {
                let _ = a.matmul(b);
            }
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let dt = t.elapsed().as_secs_f64();
        Ok(match r {
            Runner::Ceiling(..) => 2.0 * (8 * 256 * 56 * 56) as f64 * 256.0 * 9.0 / dt / 1e9,
            Runner::Matmul(..) => 2.0 * (8 * 197 * 768) as f64 * 3072.0 / dt / 1e9,
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
    let (ceiling, matmul) = (med(n - 2), med(n - 1));
    let mut rss = Vec::new();
    for (i, p) in peers.iter_mut().enumerate() {
        rss.push((i, p.peak_rss().ok()));
    }
    let rows = facts
        .into_iter()
        .map(|(arch, macs, weights_mib, act)| {
            let gflop = 2.0 * macs as f64 / 1e9;
            let ours = runners.iter().position(|(a, r)| *a == Some(arch) && matches!(r, Runner::Ours(..))).map(med);
            let peer_at = runners.iter().position(|(a, r)| *a == Some(arch) && matches!(r, Runner::Peer(_)));
            let peer = peer_at.map(med);
            let peer_rss = peer_at
                .and_then(|i| match runners[i].1 {
                    Runner::Peer(k) => rss[k].1,
                    _ => None,
                })
                .map(|b| b as f64 / (1 << 20) as f64);
            let ours = ours.expect("every arch has our candidate");
            let reference = reference(arch).2;
            let top = if arch.family() == Family::Vit { matmul } else { ceiling };
            FamilyRow {
                arch,
                gflop_per_image: gflop,
                ours_images_per_s: ours,
                reference,
                reference_images_per_s: peer,
                vs_reference: peer.map(|p| ours / p),
                ours_gflop_per_s: ours * gflop,
                share_of_ceiling: ours * gflop / top,
                weights_mib,
                ours_activations_mib: act,
                reference_peak_rss_mib: peer_rss,
            }
        })
        .collect();
    Ok(Families {
        size: cfg.size,
        batch: cfg.batch,
        ceiling_gflop_per_s: ceiling,
        matmul_ceiling_gflop_per_s: matmul,
        rows,
    })
}

impl Families {
    pub fn print(&self) {
        println!(
            "\nBackbone families: fp32 extraction at {0}x{0}, batch {1}; ceilings {2:.0} GFLOP/s (conv3x3 256->256, \
             CNNs) and {3:.0} GFLOP/s (matmul 1576x768x3072, ViTs); memory: our pass's activations + weights, the \
             reference process's peak RSS",
            self.size, self.batch, self.ceiling_gflop_per_s, self.matmul_ceiling_gflop_per_s
        );
        println!(
            "  {:<18} {:>9} {:>10} {:>10} {:>7} {:>9} {:>8} {:>13} {:>9}  reference",
            "arch", "GFLOP/img", "ours img/s", "ref img/s", "ratio", "GFLOP/s", "ceiling", "ours act+w", "ref RSS"
        );
        for r in &self.rows {
            let refv = r.reference_images_per_s.map_or("-".into(), |v| format!("{v:.1}"));
            let ratio = r.vs_reference.map_or("-".into(), |v| format!("{v:.2}x"));
            let mem = r.ours_activations_mib.map_or("-".into(), |a| format!("{a:.0}+{:.0} MiB", r.weights_mib));
            let rss = r.reference_peak_rss_mib.map_or("-".into(), |m| format!("{m:.0} MiB"));
            println!(
                "  {:<18} {:>9.2} {:>10.1} {:>10} {:>7} {:>9.0} {:>7.0}% {:>13} {:>9}  {}",
                r.arch.name(),
                r.gflop_per_image,
                r.ours_images_per_s,
                refv,
                ratio,
                r.ours_gflop_per_s,
                100.0 * r.share_of_ceiling,
                mem,
                rss,
                r.reference
            );
        }
    }
}
