//! Temperature scaling: the fit and ECE against tests/fixtures/gen/make_calibration_reference.py
//! (scipy), and `tlab run --calibrate` through predict, export and the report.
use crate::common::*;
use crate::predict::{photo_folder, run, tlab, torchscript_vs_ours};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use transfer_lab::cache::Cache;
use transfer_lab::calibration::Calibration;
use transfer_lab::classifier::Classifier;

const SCRIPT: &str = "tests/fixtures/gen/make_calibration_reference.py";

#[test]
fn temperature_and_ece_match_the_python_reference() {
    let dir = generated(SCRIPT);
    let io = read_tensors(&dir.join("calibration.safetensors"));
    let want = Vec::<f64>::try_from(&io["want"]).unwrap();
    let c = Calibration::fit(&io["logits"], &io["labels"]).unwrap();
    let got = [c.temperature, c.before.ece, c.after.ece, c.before.nll, c.after.nll];
    println!("temperature, ECE before/after, NLL before/after: ours {got:?}, scipy {want:?}");
    for (name, (g, w)) in ["T", "ECE before", "ECE after", "NLL before", "NLL after"].iter().zip(got.iter().zip(&want))
    {
        assert!((g - w).abs() < 1e-4, "{name}: {g} vs {w}");
    }
}

#[test]
fn a_calibrated_run_predicts_and_exports_calibrated_probabilities() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    photo_folder(&data);
    let (dir, _, stderr) = run(&cache, &runs, &data, &["--epochs", "3", "--calibrate"]);
    assert!(stderr.contains("calibrated on"), "{stderr}");
    let cal: Calibration =
        serde_json::from_str(&std::fs::read_to_string(dir.join("calibration.json")).unwrap()).unwrap();
    let trained: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("trained.json")).unwrap()).unwrap();
    assert_eq!(cal.samples as u64, trained["val_samples"].as_u64().unwrap());
    assert!(cal.temperature > 0.0 && cal.after.nll <= cal.before.nll + 1e-12, "{cal:?}");

    // From the run and from its export: softmax(logits / T), T in the metadata.
    let clf = Classifier::load(&dir, &Cache::new(&cache), Device::Cpu).unwrap();
    assert_eq!(clf.meta.temperature, Some(cal.temperature));
    let paths: Vec<PathBuf> = ["test/red/0.png", "test/blue/1.jpg"].iter().map(|p| data.join(p)).collect();
    let x = Tensor::stack(&paths.iter().map(|p| clf.decode(p).unwrap()).collect::<Vec<_>>(), 0);
    let want = (clf.logits(&x).unwrap() / cal.temperature).softmax(-1, Kind::Float);
    assert!(rel_err(&clf.probabilities(&x).unwrap(), &want) < 1e-6);
    let (model, ts) = (tmp.path().join("m.safetensors"), tmp.path().join("m.pt"));
    tlab(&cache).arg("export").arg(&dir).arg("-o").arg(&model).arg("--torchscript").arg(&ts).assert().success();
    let exported = Classifier::from_file(&model, Device::Cpu).unwrap();
    assert_eq!(exported.meta.temperature, Some(cal.temperature));
    let (_, diff) = torchscript_vs_ours(&exported, &ts, &paths, tmp.path());
    println!("calibrated TorchScript in Python vs ours: max |p - p'| = {diff:.2e}");
    assert!(diff < 1e-4, "{diff}");

    // The report: the temperature, ECE and NLL, and the reliability diagram.
    tlab(&cache).arg("report").arg(&dir).assert().success();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("balanced accuracy") && md.contains("macro-F1"), "{md}");
    assert!(md.contains("### Calibration") && md.contains(&format!("T = {:.3}", cal.temperature)), "{md}");
    let svg = std::fs::read_to_string(dir.join("reliability.svg")).unwrap();
    assert!(svg.contains("ECE") && svg.contains("Reliability on the validation split"), "{svg}");
}
