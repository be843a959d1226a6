//! Extraction throughput, interleaved: our folded channels-last net (fp32, bf16), PyTorch
//! eager channels-last (fp32, bf16 autocast) and Keras ResNet50 in a tf.function (fp32,
//! mixed_bfloat16), all at one batch, size and thread count, plus a convolution ceiling
//! measured in the same rounds. Each round visits every candidate once, starting one
//! further along each time, so slow drifts of the machine hit all of them alike.
use super::peer::{Peer, PeerSpec};
use super::{BenchConfig, Env, Result};
use crate::features::Precision;
use crate::models::{Arch, Backbone, Inference, Tap};
use serde::Serialize;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// One candidate's result.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// "ours", "torch" or "keras".
    pub group: String,
    pub precision: Precision,
    /// Median over rounds.
    pub images_per_s: f64,
    pub samples: Vec<f64>,
    pub gflop_per_s: f64,
    /// Of the same-precision convolution ceiling.
    pub share_of_ceiling: Option<f64>,
    /// Ratios to the same-precision PyTorch channels-last / Keras tf.function candidate.
    pub vs_torch: Option<f64>,
    pub vs_keras: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub precision: Precision,
    /// The convolution measured.
    pub shape: String,
    pub gflop_per_s: f64,
    pub samples: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct Throughput {
    pub macs_per_image: u64,
    pub gflop_per_image: f64,
    pub rows: Vec<Row>,
    pub ceiling: Vec<Ceiling>,
    /// Framework versions of the peers.
    pub versions: Vec<(String, String)>,
}

/// The ceiling: a 3x3 convolution 256 -> 256 channels on `[8, 256, 56, 56]`, channels-last.
const CONV: [i64; 4] = [8, 256, 56, 56];
const CONV_CALLS: usize = 2;

enum Runner {
    /// `heap`: [`crate::heap`]'s mode while this candidate runs.
    Ours {
        net: Box<dyn Inference>,
        x: Tensor,
        heap: crate::heap::Mode,
    },
    Peer {
        peer: usize,
        variant: String,
    },
    Conv {
        x: Tensor,
        w: Tensor,
    },
}

struct Candidate {
    name: String,
    group: &'static str,
    precision: Precision,
    runner: Runner,
}

impl Candidate {
    /// images/s for models, GFLOP/s for the ceiling.
    fn measure(&self, peers: &mut [Peer], batch: i64, device: Device) -> Result<f64> {
        // Switching heap modes (mallopt, the allocator, a trim) is not part of the pass.
        if let Runner::Ours { heap, .. } = &self.runner {
            crate::heap::set_mode(*heap);
        }
        let t = Instant::now();
        match &self.runner {
            Runner::Peer { peer, variant } => return peers[*peer].run(variant, 1),
            Runner::Ours { net, x, .. } => {
                let _ = net.features(x, Tap::Layer4);
            }
            Runner::Conv { x, w } => {
                for _ in 0..CONV_CALLS {
                    let _ = x.conv2d(w, None::<Tensor>, [1], [1], [1], 1);
                }
            }
        }
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
        let dt = t.elapsed().as_secs_f64();
        Ok(match self.runner {
            Runner::Conv { .. } => conv_flop() * CONV_CALLS as f64 / dt / 1e9,
            _ => batch as f64 / dt,
        })
    }
}

fn conv_flop() -> f64 {
    2.0 * CONV.iter().product::<i64>() as f64 * 256.0 * 9.0
}

fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Builds the candidates, warms each once, then runs `cfg.reps` interleaved rounds.
pub fn run(cfg: &BenchConfig, env: &Env) -> Result<Throughput> {
    let device = env.device;
    let precisions = &cfg.precisions;
    let backbone = Backbone::random(Arch::ResNet50, 0, device);
    let macs = backbone.macs_per_image(cfg.size, Tap::Layer4);
    let x = Tensor::randn([cfg.batch, 3, cfg.size, cfg.size], (Kind::Float, device));
    let mut cands = Vec::new();
    let mut peers = Vec::new();
    if cfg.has(super::Section::Ours) {
        // The process's heap mode (`TLAB_HEAP`; `pool` by default), as `tlab extract` runs.
        let heap = crate::heap::mode();
        for &p in precisions {
            let net = backbone.inference_copy(p);
            let name = format!("ours: folded channels-last {p}");
            let runner = Runner::Ours { net, x: x.copy(), heap };
            cands.push(Candidate { name, group: "ours", precision: p, runner });
        }
        // The same net under the other heap modes a running process can switch to (`huge`
        // needs setting before the first tensor): what the default mode is worth.
        use crate::heap::Mode;
        if crate::heap::set_mode(heap) {
            for other in [Mode::Pool, Mode::Reuse, Mode::System].into_iter().filter(|&m| m != heap) {
                let net = backbone.inference_copy(Precision::Fp32);
                let name = format!("ours: same, heap {} fp32", other.name());
                let runner = Runner::Ours { net, x: x.copy(), heap: other };
                cands.push(Candidate { name, group: "ours-heap", precision: Precision::Fp32, runner });
            }
        }
    }
    let mut peer_groups: Vec<(&str, &std::path::Path, [&str; 2])> = Vec::new();
    if cfg.has(super::Section::Torch) {
        peer_groups.push(("torch", &env.torch_python, ["eager channels-last fp32", "autocast bf16 channels-last"]));
    }
    match (&env.keras_python, device.is_cuda()) {
        (Some(py), false) => peer_groups.push(("keras", py, ["tf.function fp32", "tf.function mixed_bfloat16"])),
        (Some(_), true) => eprintln!("bench: keras skipped on CUDA (tensorflow-cpu has no GPU support)"),
        _ => {}
    }
    let dev = crate::models::folded::device_name(device);
    for (framework, python, labels) in peer_groups {
        eprintln!("bench: starting the {framework} peer (builds and warms both variants)");
        let log = env.out.join(format!("peer-{framework}.log"));
        let names: Vec<String> = precisions.iter().map(|p| p.name()).collect();
        let spec = PeerSpec {
            python,
            script: &env.script("peer.py"),
            framework,
            model: "resnet50",
            size: cfg.size,
            batch: cfg.batch,
            threads: cfg.threads,
            device: &dev,
            variants: &names.iter().map(String::as_str).collect::<Vec<_>>(),
            log: &log,
        };
        peers.push(Peer::start(&spec)?);
        for &p in precisions {
            let label = labels[usize::from(p != Precision::Fp32)];
            let runner = Runner::Peer { peer: peers.len() - 1, variant: p.name() };
            let name = format!("{framework}: {label}");
            cands.push(Candidate {
                name,
                group: if framework == "torch" { "torch" } else { "keras" },
                precision: p,
                runner,
            });
        }
    }
    if cfg.has(super::Section::Ceiling) {
        for &p in precisions {
            let x = channels_last(&Tensor::randn(CONV, (p.kind(), device)));
            let w = channels_last(&(Tensor::randn([256, 256, 3, 3], (p.kind(), device)) * 0.02));
            let name = format!("ceiling: conv3x3 {p}");
            cands.push(Candidate { name, group: "ceiling", precision: p, runner: Runner::Conv { x, w } });
        }
    }
    let n = cands.len();
    let mut samples = vec![Vec::new(); n];
    eprintln!("bench: warming up our candidates and the ceiling");
    tch::no_grad(|| -> Result<()> {
        for c in cands.iter().filter(|c| !matches!(c.runner, Runner::Peer { .. })) {
            c.measure(&mut peers, cfg.batch, device)?;
        }
        for rep in 0..cfg.reps {
            for k in 0..n {
                let i = (k + rep) % n;
                // One untimed batch first: the previous candidate's threads may still
                // spin and its pages be warm; the timed batch starts settled.
                cands[i].measure(&mut peers, cfg.batch, device)?;
                let v = cands[i].measure(&mut peers, cfg.batch, device)?;
                samples[i].push(v);
            }
            eprintln!("bench: round {}/{} done", rep + 1, cfg.reps);
        }
        Ok(())
    })?;
    let versions = peers.iter().map(|p| (p.info.framework.clone(), p.info.version.clone())).collect();
    Ok(assemble(cands, samples, macs, versions))
}

pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn assemble(cands: Vec<Candidate>, samples: Vec<Vec<f64>>, macs: u64, versions: Vec<(String, String)>) -> Throughput {
    let gflop_per_image = 2.0 * macs as f64 / 1e9;
    let mut ceiling = Vec::new();
    let mut rows = Vec::new();
    for (c, s) in cands.into_iter().zip(samples) {
        if c.group == "ceiling" {
            let shape = format!("conv3x3 256->256 on {CONV:?} channels-last, {}", c.precision);
            ceiling.push(Ceiling { precision: c.precision, shape, gflop_per_s: median(&s), samples: s });
        } else {
            let ips = median(&s);
            rows.push(Row {
                name: c.name,
                group: c.group.into(),
                precision: c.precision,
                images_per_s: ips,
                samples: s,
                gflop_per_s: ips * gflop_per_image,
                share_of_ceiling: None,
                vs_torch: None,
                vs_keras: None,
            });
        }
    }
    let lookup = |rows: &[Row], group: &str, p: Precision| {
        rows.iter().find(|r| r.group == group && r.precision == p).map(|r| r.images_per_s)
    };
    let snapshot = rows.clone();
    for r in &mut rows {
        r.share_of_ceiling = ceiling.iter().find(|c| c.precision == r.precision).map(|c| r.gflop_per_s / c.gflop_per_s);
        r.vs_torch = lookup(&snapshot, "torch", r.precision).map(|b| r.images_per_s / b);
        r.vs_keras = lookup(&snapshot, "keras", r.precision).map(|b| r.images_per_s / b);
    }
    Throughput { macs_per_image: macs, gflop_per_image, rows, ceiling, versions }
}
