//! Unit tests of `state.rs`: events in, dashboard state out.
use super::*;
use crate::events::{Envelope, LogLevel, RunEvent, SCHEMA_VERSION};

fn env(t_ms: u64, event: RunEvent) -> Envelope {
    Envelope { v: SCHEMA_VERSION, t_ms, event }
}

fn progressed(t: u64, done: u64, total: u64) -> Envelope {
    env(
        t,
        RunEvent::ExtractionProgressed {
            split: "train".into(),
            done_images: done,
            total_images: total,
            images_per_s: 100.0,
        },
    )
}

#[test]
fn stages_move_through_their_states() {
    let mut s = DashState::default();
    s.apply(&env(0, RunEvent::StageStarted { stage: "fetch".into() }));
    s.apply(&env(5, RunEvent::StageFinished { stage: "fetch".into(), elapsed_ms: 5 }));
    s.apply(&env(6, RunEvent::StageStarted { stage: "extract".into() }));
    let states: Vec<_> = s.stages.iter().map(|s| s.state).collect();
    use StageState::*;
    assert_eq!(states, [Done, Running, Pending, Pending]);
    assert_eq!(s.status(), RunStatus::Running);
    s.apply(&env(9, RunEvent::RunFailed { error: "disk full".into() }));
    assert_eq!(s.stages[1].state, Failed);
    assert_eq!(s.status(), RunStatus::Failed);
    assert_eq!(s.logs.back().unwrap().level, LogLevel::Error);
    assert_eq!(s.wall_ms(1_000_000), 9, "a failed run's wall time stops at its last event");
}

#[test]
fn run_started_marks_synthetic_data() {
    let mut s = DashState::default();
    assert_eq!(s.status(), RunStatus::Waiting);
    s.apply(&env(0, RunEvent::RunStarted { name: "probe".into(), synthetic: true, note: "SYNTHETIC data".into() }));
    assert!(s.synthetic);
    assert_eq!(s.note.as_deref(), Some("SYNTHETIC data"));
}

#[test]
fn eta_waits_until_meaningful_then_uses_the_recent_rate() {
    let mut s = DashState::default();
    s.apply(&env(
        1_000,
        RunEvent::ExtractionStarted {
            split: "train".into(),
            total_images: 10_000,
            done_images: 0,
            cache_dir: "c".into(),
        },
    ));
    s.apply(&progressed(2_000, 100, 10_000));
    assert_eq!(s.progress.as_ref().unwrap().eta_ms(), None, "too early");
    // 100 images/s from t=1 s: at t=11 s, 1000 done, 9000 left -> 90 s.
    for i in 2..=11u64 {
        s.apply(&progressed(i * 1_000, (i - 1) * 100, 10_000));
    }
    let p = s.progress.as_ref().unwrap();
    assert_eq!(p.done, 1_000);
    let eta = p.eta_ms().unwrap();
    assert!((89_000..=91_000).contains(&eta), "{eta}");
    assert!((p.ratio().unwrap() - 0.1).abs() < 1e-9);
    s.apply(&env(
        12_000,
        RunEvent::ExtractionFinished {
            split: "train".into(),
            total_images: 10_000,
            cache_hit: false,
            elapsed_ms: 11_000,
            peak_rss_bytes: 0,
        },
    ));
    let p = s.progress.as_ref().unwrap();
    assert_eq!((p.done, p.eta_ms()), (10_000, None));
}

#[test]
fn eta_needs_items_not_just_time() {
    let mut s = DashState::default();
    s.apply(&progressed(0, 0, 1_000));
    s.apply(&progressed(10_000, 4, 1_000));
    assert_eq!(s.progress.as_ref().unwrap().eta_ms(), None);
}

#[test]
fn rate_sparkline_samples_once_per_second() {
    let mut s = DashState::default();
    for i in 0..5_000u64 {
        s.apply(&progressed(i, i, 1_000_000)); // 5000 events in 5 s
    }
    assert_eq!(s.rate_history.len(), 5);
    for i in 0..1_000u64 {
        s.apply(&progressed(10_000 + i * 1_000, i, 1_000_000));
    }
    assert!(s.rate_history.len() <= 240);
}

#[test]
fn step_loss_history_is_bounded() {
    let mut s = DashState::default();
    for step in 0..200_000u64 {
        s.apply(&env(step, RunEvent::StepFinished { epoch: 1, step, loss: 1.0 / (1.0 + step as f64) }));
    }
    let pts = s.curves.step_loss.points();
    assert!(pts.len() <= CHART_POINTS + 1, "{}", pts.len());
    assert!(pts.first().unwrap().0 < 1_000.0 && pts.last().unwrap().0 > 199_000.0);
    assert_eq!(s.curves.last_step, Some((1, 199_999, 1.0 / 200_000.0)));
    assert!(s.logs.is_empty(), "steps are not log lines");
}

#[test]
fn epochs_fill_curves_and_best() {
    let mut s = DashState::default();
    for (e, acc, best) in [(1, 0.5, true), (2, 0.7, true), (3, 0.6, false)] {
        s.apply(&env(
            e as u64,
            RunEvent::EpochFinished { epoch: e, train_loss: 1.0, train_acc: acc, val_loss: 1.2, val_acc: acc, best },
        ));
    }
    s.apply(&env(9, RunEvent::RunFinished { elapsed_ms: 1234, test_accuracy: Some(0.66) }));
    assert_eq!(s.curves.epochs, 3);
    assert_eq!(s.curves.best, Some((2, 0.7)));
    assert_eq!(s.curves.val_acc.points().len(), 3);
    assert_eq!(s.status(), RunStatus::Finished);
    assert_eq!((s.wall_ms(99_999), s.test_accuracy()), (1234, Some(0.66)));
}

#[test]
fn logs_keep_levels_and_are_bounded() {
    let mut s = DashState::default();
    for i in 0..500u64 {
        s.apply(&env(i, RunEvent::Log { level: LogLevel::Warn, message: format!("w{i}") }));
    }
    assert_eq!(s.logs.len(), MAX_LOGS);
    assert_eq!(s.logs.back().unwrap().text, "w499");
    assert_eq!(s.logs.back().unwrap().level, LogLevel::Warn);
}

#[test]
fn download_progress_measures_bytes_per_second() {
    let mut s = DashState::default();
    s.apply(&env(
        0,
        RunEvent::DownloadStarted {
            url: "https://x/cifar.tar.gz".into(),
            total_bytes: Some(1_000_000),
            resumed_from_bytes: 0,
        },
    ));
    s.apply(&env(
        1_000,
        RunEvent::DownloadProgressed { url: "u".into(), done_bytes: 250_000, total_bytes: Some(1_000_000) },
    ));
    let p = s.progress.as_ref().unwrap();
    assert_eq!((p.label.as_str(), p.unit, p.per_s), ("download cifar.tar.gz", Unit::Bytes, 250_000.0));
}

#[test]
fn a_second_phase_continues_the_x_axis_and_is_marked() {
    let mut s = DashState::default();
    let epoch = |e: u32| RunEvent::EpochFinished {
        epoch: e,
        train_loss: 1.0,
        train_acc: 0.5,
        val_loss: 1.0,
        val_acc: 0.5,
        best: false,
    };
    // The head phase: 3 epochs, steps 1..6; then the image phase numbers both from 1.
    for (e, steps) in [(1, [1, 2]), (2, [3, 4]), (3, [5, 6]), (1, [1, 2]), (2, [3, 4])] {
        for st in steps {
            s.apply(&env(0, RunEvent::StepFinished { epoch: e, step: st, loss: 1.0 }));
        }
        s.apply(&env(0, epoch(e)));
    }
    let xs: Vec<f64> = s.curves.train_loss.points().iter().map(|p| p.0).collect();
    assert_eq!(xs, [1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(s.curves.epoch_phases, [3.5]);
    assert_eq!(s.curves.step_phases, [6.5]);
    assert_eq!(s.curves.step_loss.points().last().unwrap().0, 10.0);
}
