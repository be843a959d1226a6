//! Extraction speed of the backbone variants, interleaved in one run (a benchmark, not a
//! test): the plain network (tch eager, NCHW) and its inference copy (BatchNorm folded
//! where there is any, channels-last: what `tlab extract` runs), for any `--arch`. Prints
//! images/s and ratios to the plain net.
//!
//! `cargo run --release --example extract_speed -- [arch] [size] [batch] [rounds]`
//! (defaults: resnet50 200 32 5)
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use transfer_lab::models::{Arch, Backbone, Tap};

fn main() -> transfer_lab::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arch: Arch = args.first().map(|s| s.parse()).transpose()?.unwrap_or(Arch::ResNet50);
    let size: i64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200);
    let batch: i64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let rounds: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let b = Backbone::random(arch, 0, Device::Cpu);
    let x = Tensor::randn([batch, 3, size, size], (Kind::Float, Device::Cpu));
    type Variant<'a> = (&'a str, Box<dyn Fn(&Tensor) -> Tensor + 'a>);
    let variants: Vec<Variant> = vec![
        ("plain (eager, NCHW)", Box::new(|x| tch::no_grad(|| b.net.features_t(x, Tap::Layer4, false)))),
        ("inference copy (used)", Box::new(|x| b.features(x, Tap::Layer4))),
    ];
    for (_, f) in &variants {
        let _ = f(&x); // warm-up: oneDNN builds its kernels on first use
    }
    let mut times = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in variants.iter().enumerate() {
            let t = Instant::now();
            let _ = f(&x);
            times[i].push(t.elapsed().as_secs_f64());
        }
    }
    println!(
        "{} at {size}x{size}, batch {batch}, {} threads, median of {rounds} interleaved rounds",
        arch.name(),
        tch::get_num_threads()
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = batch as f64 / median(&mut times[0].clone());
    for ((name, _), t) in variants.iter().zip(&mut times) {
        let ips = batch as f64 / median(t);
        println!("{name:32} {ips:7.1} images/s  {:.2}x plain", ips / base);
    }
    Ok(())
}
