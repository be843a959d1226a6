//! Every backbone family through the whole pipeline: `tlab run` (features + head, then
//! fine-tuning of the family's last stage), `predict` equal to the run's evaluation, its
//! heatmaps, and `export` whose TorchScript gives our probabilities in Python.
use crate::common::*;
use crate::predict::{evaluated, photo_folder, predict, tlab, torchscript_vs_ours};
use std::path::PathBuf;
use tch::Device;
use transfer_lab::cache::Cache;
use transfer_lab::classifier::Classifier;
use transfer_lab::models::{Arch, Family};

/// One architecture of each family but torchvision's ResNets (predict.rs runs those),
/// fine-tuned; and CLIP's tower (the other ViT layout) with the logreg probe on the
/// patch mean (a random tower's class token barely varies between images).
fn arches() -> Vec<(Arch, &'static str, &'static str)> {
    let mut out: Vec<(Arch, &str, &str)> = Arch::representatives()
        .into_iter()
        .filter(|a| a.family() != Family::ResNet)
        .map(|a| (a, "fine-tune", if a.family() == Family::Vit { "cls+mean" } else { "mean" }))
        .collect();
    out.push((Arch::ClipVitb16, "logreg", "mean"));
    out
}

#[test]
fn every_family_runs_fine_tunes_predicts_and_exports() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    photo_folder(&data);
    assert!(!arches().is_empty());
    for (arch, strategy, pool) in arches() {
        let a = arch.name();
        // A ViT's input tiles into patches: 56 for DINOv2's 14, 64 for 16.
        let size = arch.patch().map_or(64, |p| 4 * p).to_string();
        let out = tlab(&cache)
            .args(["run", "--dataset", "folder", "--data"])
            .arg(&data)
            .args(["--arch", &a, "--weights", "random", "--size", &size, "--strategy", strategy])
            .args(["--pool", pool, "--epochs", "2", "--image-epochs", "1", "--runs-dir"])
            .arg(&runs)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{a}: {stderr}");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let dir = PathBuf::from(summary["run_dir"].as_str().unwrap());
        assert_eq!(summary["test_samples"], 15, "{a}");
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        assert!(config.contains(&format!("\"arch\": \"{a}\"")), "{a}: {config}");

        let test = data.join("test");
        let (rows, ok, stderr) = predict(&cache, &dir, &[&test], &[]);
        assert!(ok, "{a}: {stderr}");
        let want = evaluated(&dir);
        assert_eq!(rows.len(), want.len());
        for (row, (image, class)) in rows.iter().zip(&want) {
            assert_eq!(row["top"][0]["class"].as_str().unwrap(), class, "{a}: {image}");
        }
        // Heatmaps for every family and pooling, a class token's included.
        let cams = tmp.path().join(format!("{a}-cams"));
        let two: Vec<PathBuf> = want.iter().take(2).map(|(p, _)| PathBuf::from(p)).collect();
        let (_, ok, stderr) =
            predict(&cache, &dir, &[&two[0], &two[1]], &["--explain", cams.to_str().unwrap(), "--class", "red"]);
        assert!(ok && stderr.contains("2 heatmaps written"), "{a} --pool {pool}: {stderr}");
        let pngs =
            std::fs::read_dir(&cams).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "png"));
        assert_eq!(pngs.count(), 2, "{a}");

        let model = tmp.path().join(format!("{a}.safetensors"));
        let ts = tmp.path().join(format!("{a}.pt"));
        tlab(&cache).arg("export").arg(&dir).arg("-o").arg(&model).arg("--torchscript").arg(&ts).assert().success();
        let clf = Classifier::load(&model, &Cache::new(tmp.path()), Device::Cpu).unwrap();
        assert_eq!(clf.meta.arch, arch);
        let paths: Vec<PathBuf> = want.iter().map(|(p, _)| PathBuf::from(p)).collect();
        let (ours, diff) = torchscript_vs_ours(&clf, &ts, &paths, tmp.path());
        let spread = (ours.max() - ours.min()).double_value(&[]);
        assert!(spread > 1e-3, "{a}: the trained model's probabilities are all alike ({spread:.1e})");
        println!("{a}: run ({strategy}, --pool {pool}), predict = evaluate, TorchScript in Python vs ours: max |p - p'| = {diff:.2e}");
        assert!(diff < 1e-4, "{a}: {diff}");
    }
}
