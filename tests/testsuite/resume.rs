//! Exact resume: training stopped at any batch (a `STOP` request, checkpointed there) and
//! resumed writes the same checkpoints and state, byte for byte, as a training that never
//! stopped, for the head on features and for fine-tuning. Real `kill -9` trials: `kill.rs`.
use crate::common::*;
use std::path::Path;
use tch::{Device, Kind, Tensor};
use transfer_lab::data::{synthetic::synthetic, Split};
use transfer_lab::events::{EventSink, RunEvent, VecSink};
use transfer_lab::models::Arch;
use transfer_lab::preprocess::Preprocess;
use transfer_lab::rundir::RunDir;
use transfer_lab::train::{train_head, train_on_images, HeadConfig, ImageModel, ImageTrainConfig, Strategy, TrainLoop};

/// Asks the run to stop once step `at` has finished, as the dashboard's `s` would.
struct StopAt<'a> {
    dir: &'a Path,
    at: u64,
    events: VecSink,
}

impl EventSink for StopAt<'_> {
    fn emit(&mut self, e: &RunEvent) {
        if matches!(e, RunEvent::StepFinished { step, .. } if *step == self.at) {
            RunDir::at(self.dir).request_stop("the test").unwrap();
        }
        self.events.emit(e);
    }
}

/// The files a resumed training must reproduce exactly.
fn assert_same_files(a: &Path, b: &Path, names: &[&str], what: &str) {
    for name in names {
        let (x, y) = (std::fs::read(a.join(name)).unwrap(), std::fs::read(b.join(name)).unwrap());
        assert!(x == y, "{what}: {name} differs from the uninterrupted run's");
    }
}

fn said(events: &VecSink, what: &str) -> bool {
    events.0.iter().any(|e| matches!(e, RunEvent::Log { message, .. } if message.contains(what)))
}

#[test]
fn the_head_stopped_at_any_batch_resumes_to_identical_files() {
    let _g = torch_lock();
    tch::manual_seed(7);
    let features = Tensor::randn([200, 24], (Kind::Float, Device::Cpu));
    let labels = features.narrow(1, 0, 4).argmax(1, false);
    // 160 training rows in batches of 32: 5 batches an epoch, 15 steps.
    let fit = TrainLoop { epochs: 3, checkpoint_every: Some(2), ..Default::default() };
    let cfg = HeadConfig { fit, ..Default::default() };
    let reference = tempfile::tempdir().unwrap();
    let (_, want) =
        train_head(&features, &labels, 10, &cfg, &RunDir::at(reference.path()), &mut VecSink::default()).unwrap();
    let files = ["head-best.safetensors", "head-last.safetensors", "train-state.json"];
    // Mid-epoch 1 (no best yet), an epoch's end, mid-epoch 2 on a periodic checkpoint and off it.
    for at in [3, 5, 8, 9, 14] {
        let dir = tempfile::tempdir().unwrap();
        let mut stop = StopAt { dir: dir.path(), at, events: VecSink::default() };
        let first = train_head(&features, &labels, 10, &cfg, &RunDir::at(dir.path()), &mut stop);
        match first {
            Ok((_, out)) => assert!(out.history.len() < 3, "stop at step {at} ended early"),
            Err(e) => {
                assert!(at < 5, "step {at}: {e}");
                assert!(e.to_string().contains("tlab train --resume"), "{e}");
            }
        }
        assert!(said(&stop.events, "stopped on request"), "step {at}");
        let mut events = VecSink::default();
        let (_, got) = train_head(&features, &labels, 10, &cfg, &RunDir::at(dir.path()), &mut events).unwrap();
        assert!(said(&events, "resuming after"), "step {at}");
        assert_eq!(got.history, want.history, "stopped at step {at}");
        assert_same_files(reference.path(), dir.path(), &files, &format!("head stopped at step {at}"));
    }
}

#[test]
fn fine_tuning_stopped_at_any_batch_resumes_to_identical_files() {
    let _g = torch_lock();
    let data = synthetic(64, Split::Train, 6);
    let pre = Preprocess { size: 32, ..Default::default() };
    // 51 training images in batches of 16: 4 batches an epoch; augmentation and dropout on.
    let mut cfg = ImageTrainConfig::for_strategy(Strategy::FineTune);
    (cfg.fit.epochs, cfg.fit.batch_size) = (3, 16);
    let train = |dir: &Path, sink: &mut dyn EventSink| {
        tch::manual_seed(0);
        let mut model = ImageModel::new(Arch::ResNet18, 10, 0.3, Device::Cpu);
        train_on_images(&mut model, &data, &pre, &cfg, &RunDir::at(dir), sink)
    };
    let reference = tempfile::tempdir().unwrap();
    let want = train(reference.path(), &mut VecSink::default()).unwrap();
    let files = ["model-best.safetensors", "model-last.safetensors", "train-state.json"];
    for at in [2, 4, 7] {
        let dir = tempfile::tempdir().unwrap();
        let mut stop = StopAt { dir: dir.path(), at, events: VecSink::default() };
        let _ = train(dir.path(), &mut stop);
        assert!(said(&stop.events, "stopped on request"), "step {at}");
        let got = train(dir.path(), &mut VecSink::default()).unwrap();
        assert_eq!(got.history, want.history, "stopped at step {at}");
        assert_same_files(reference.path(), dir.path(), &files, &format!("fine-tune stopped at step {at}"));
    }
}

#[test]
fn a_checkpoint_from_other_settings_is_not_resumed_and_a_damaged_one_is_named() {
    let _g = torch_lock();
    tch::manual_seed(3);
    let features = Tensor::randn([100, 8], (Kind::Float, Device::Cpu));
    let labels = features.narrow(1, 0, 3).argmax(1, false);
    let dir = tempfile::tempdir().unwrap();
    let cfg = HeadConfig { fit: TrainLoop { epochs: 2, ..Default::default() }, ..Default::default() };
    train_head(&features, &labels, 10, &cfg, &RunDir::at(dir.path()), &mut VecSink::default()).unwrap();
    let mut events = VecSink::default();
    let other = HeadConfig { learning_rate: 1e-2, ..cfg.clone() };
    train_head(&features, &labels, 10, &other, &RunDir::at(dir.path()), &mut events).unwrap();
    assert!(said(&events, "belongs to other settings or data; training starts over"));
    let last = dir.path().join("head-last.safetensors");
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&last, &bytes[..bytes.len() / 2]).unwrap();
    let err = train_head(&features, &labels, 10, &other, &RunDir::at(dir.path()), &mut VecSink::default())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("head-last.safetensors"), "{err}");
}
