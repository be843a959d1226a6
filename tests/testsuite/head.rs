//! The post's head: PyTorch parity of its Adam steps, learning, and bad input.
use crate::common::*;
use tch::{Device, Kind, Tensor};
use transfer_lab::events::{RunEvent, VecSink};
use transfer_lab::rundir::RunDir;
use transfer_lab::train::{train_head, Head, HeadConfig};

#[test]
fn adam_steps_match_pytorch() {
    let _g = torch_lock();
    let r = read_tensors(&generated("tests/fixtures/gen/make_adam_reference.py").join("adam.safetensors"));
    let cfg = HeadConfig::default();
    let head = Head::new(16, 10, 0.0, Device::Cpu);
    tch::no_grad(|| {
        let vars = head.vs.variables();
        vars["fc.weight"].shallow_clone().copy_(&r["w0"]);
        vars["fc.bias"].shallow_clone().copy_(&r["b0"]);
    });
    let mut opt = cfg.optimizer(&head.vs).unwrap();
    for step in 1..=3 {
        let loss = head.forward_t(&r["x"], true).cross_entropy_for_logits(&r["y"]);
        assert!((loss.double_value(&[]) - r[&format!("loss{step}")].double_value(&[0])).abs() < 1e-5);
        opt.backward_step(&loss);
        let vars = head.vs.variables();
        let dw = (&vars["fc.weight"] - &r[&format!("w{step}")]).abs().max().double_value(&[]);
        let db = (&vars["fc.bias"] - &r[&format!("b{step}")]).abs().max().double_value(&[]);
        println!("adam step {step}: max |dw| {dw:.2e}, |db| {db:.2e}");
        assert!(dw < 1e-5 && db < 1e-5, "step {step}: {dw:e} {db:e}");
    }
    // The state a checkpoint saves is PyTorch's `opt.state`.
    let state: std::collections::HashMap<String, Tensor> = opt.state_tensors().into_iter().collect();
    for name in ["weight", "bias"] {
        for m in ["exp_avg", "exp_avg_sq"] {
            let ours = &state[&format!("adam.{m}/fc.{name}")];
            let want = &r[&format!("{m}.{name}")];
            let rel = ((ours - want).abs().max() / want.abs().max()).double_value(&[]);
            assert!(rel < 1e-4, "{m} of fc.{name}: relative difference {rel:e}");
        }
        assert_eq!(state[&format!("adam.step/fc.{name}")].int64_value(&[]), 3);
    }
}

/// Features that a linear head can separate: class means far apart plus noise.
fn separable(n: i64, dim: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(10);
    let means = Tensor::randn([10, dim], (Kind::Float, Device::Cpu)) * 2.0;
    let x = means.index_select(0, &labels) + Tensor::randn([n, dim], (Kind::Float, Device::Cpu));
    (x, labels)
}

#[test]
fn head_learns_separable_features_and_keeps_the_best_epoch() {
    let _g = torch_lock();
    let (x, y) = separable(2000, 256, 3);
    let dir = tempfile::tempdir().unwrap();
    let mut sink = VecSink::default();
    let (_head, out) = train_head(&x, &y, 10, &HeadConfig::default(), &RunDir::at(dir.path()), &mut sink).unwrap();
    let best = out.history.iter().map(|m| m.val_acc).fold(0.0, f64::max);
    println!("separable features: best val acc {best:.4} at epoch {}", out.best_epoch);
    assert!(best > 0.95, "{best}");
    assert_eq!(out.best_val_acc, best);
    assert_eq!((out.train_samples, out.val_samples), (1600, 400), "Keras validation_split=0.2");
    assert!(dir.path().join("head-best.safetensors").is_file());
    let epochs = sink.0.iter().filter(|e| matches!(e, RunEvent::EpochFinished { .. })).count();
    assert_eq!(epochs, 10);
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let cfg = HeadConfig::default();
    let (x, y) = separable(100, 8, 1);
    let err = |x: &Tensor, y: &Tensor| {
        train_head(x, y, 10, &cfg, &RunDir::at(dir.path()), &mut VecSink::default()).err().unwrap().to_string()
    };
    assert!(err(&x, &(&y + 5)).contains("outside 0..10"));
    assert!(err(&x, &y.zeros_like()).contains("single class"));
    assert!(err(&x.narrow(0, 0, 50), &y).contains("do not pair up"));
    // Features of another width (e.g. layer3's 1024 for a layer4 head) are an error, not a panic.
    let head = Head::new(8, 10, 0.0, Device::Cpu);
    let e = transfer_lab::train::evaluate(&head, &x.narrow(1, 0, 4), &y).err().unwrap().to_string();
    assert!(e.contains("[N, 8]") && e.contains("[100, 4]"), "{e}");
    // A NaN loss stops training, names the step, and keeps the best checkpoint whole.
    let bad = x.copy();
    let _ = bad.get(5).fill_(f64::NAN);
    let e = err(&bad, &y);
    assert!(e.contains("loss is NaN") && e.contains("step"), "{e}");
}
