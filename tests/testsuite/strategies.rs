//! Fine-tune, pretrained-init and scratch train on small synthetic images and lower the
//! loss; fine-tuning checkpoints every epoch and resumes (exactness: `resume.rs`).
use crate::common::*;
use tch::Device;
use transfer_lab::data::{synthetic::synthetic, Split};
use transfer_lab::events::{RunEvent, VecSink};
use transfer_lab::models::Arch;
use transfer_lab::preprocess::Preprocess;
use transfer_lab::rundir::RunDir;
use transfer_lab::train::{train_on_images, ImageModel, ImageTrainConfig, Strategy};

fn step_losses(events: &[RunEvent]) -> Vec<f64> {
    events.iter().filter_map(|e| if let RunEvent::StepFinished { loss, .. } = e { Some(*loss) } else { None }).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn image_strategies_lower_the_loss() {
    let _g = torch_lock();
    let data = synthetic(160, Split::Train, 5);
    let pre = Preprocess { size: 32, ..Default::default() };
    for s in [Strategy::FineTune, Strategy::PretrainedInit, Strategy::Scratch] {
        tch::manual_seed(0);
        let mut model = ImageModel::new(Arch::ResNet18, 10, 0.0, Device::Cpu);
        let mut cfg = ImageTrainConfig { augment: false, ..ImageTrainConfig::for_strategy(s) };
        (cfg.fit.epochs, cfg.fit.batch_size) = (4, 16);
        let dir = tempfile::tempdir().unwrap();
        let mut sink = VecSink::default();
        let out = train_on_images(&mut model, &data, &pre, &cfg, &RunDir::at(dir.path()), &mut sink).unwrap();
        let losses = step_losses(&sink.0);
        let (first, last) = (mean(&losses[..8]), mean(&losses[losses.len() - 8..]));
        println!(
            "{}: mean loss of first 8 steps {first:.3}, last 8 steps {last:.3}; best val acc {:.2}",
            s.name(),
            out.best_val_acc
        );
        assert!(last < first * 0.9, "{}: loss {first:.3} -> {last:.3}", s.name());
        assert_eq!(out.history.len(), 4);
        assert!(dir.path().join("model-best.safetensors").is_file());
    }
}

#[test]
fn fine_tuning_resumes_from_its_last_epoch_and_stops_on_request() {
    let _g = torch_lock();
    let data = synthetic(64, Split::Train, 6);
    let pre = Preprocess { size: 32, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let cfg = |epochs| {
        let mut c = ImageTrainConfig::for_strategy(Strategy::FineTune);
        (c.fit.epochs, c.fit.batch_size) = (epochs, 16);
        c
    };
    let mut model = ImageModel::new(Arch::ResNet18, 10, 0.3, Device::Cpu);
    let first =
        train_on_images(&mut model, &data, &pre, &cfg(1), &RunDir::at(dir.path()), &mut VecSink::default()).unwrap();
    assert_eq!(first.history.len(), 1);
    // A fresh process would start here: a new model, the same run directory.
    let mut model = ImageModel::new(Arch::ResNet18, 10, 0.3, Device::Cpu);
    let mut sink = VecSink::default();
    let out = train_on_images(&mut model, &data, &pre, &cfg(2), &RunDir::at(dir.path()), &mut sink).unwrap();
    assert_eq!(out.history.len(), 2);
    // Epoch 1 comes from the checkpoint, not retrained, to the last bit.
    assert_eq!(out.history[0], first.history[0]);
    let epochs: Vec<u32> = sink
        .0
        .iter()
        .filter_map(|e| if let RunEvent::EpochFinished { epoch, .. } = e { Some(*epoch) } else { None })
        .collect();
    assert_eq!(epochs, [2]);
    // A STOP file ends training after the next batch, checkpointed there, and is removed.
    std::fs::write(dir.path().join("STOP"), b"").unwrap();
    let mut sink = VecSink::default();
    let out = train_on_images(&mut model, &data, &pre, &cfg(5), &RunDir::at(dir.path()), &mut sink).unwrap();
    assert_eq!(out.history.len(), 2, "stopped within epoch 3, which is not counted");
    assert_eq!(step_losses(&sink.0).len(), 1);
    assert!(!dir.path().join("STOP").exists(), "an honoured STOP is removed");
    let said = |sink: &VecSink, what: &str| {
        sink.0.iter().any(|e| matches!(e, RunEvent::Log { message, .. } if message.contains(what)))
    };
    assert!(said(&sink, "stopped on request after batch 1 of 4 in epoch 3"));
    let mut sink = VecSink::default();
    let out = train_on_images(&mut model, &data, &pre, &cfg(3), &RunDir::at(dir.path()), &mut sink).unwrap();
    assert!(said(&sink, "resuming after batch 1 of epoch 3"));
    assert_eq!((out.history.len(), step_losses(&sink.0).len()), (3, 3), "the rest of epoch 3 only");
}

#[test]
fn strategy_names_parse_and_bad_ones_are_named() {
    for &s in Strategy::all() {
        assert_eq!(s.name().parse::<Strategy>().unwrap(), s);
    }
    let err = "fine-tuning".parse::<Strategy>().unwrap_err().to_string();
    assert!(err.contains("fine-tuning") && err.contains("pretrained-init"), "{err}");
}
