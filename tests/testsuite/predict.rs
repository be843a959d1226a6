//! A trained model used outside the run: `tlab predict` from a run directory or an
//! exported file, `tlab export` (safetensors and TorchScript, checked in Python).
use crate::common::*;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use transfer_lab::cache::Cache;
use transfer_lab::classifier::Classifier;

pub(crate) fn tlab(cache: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("tlab").unwrap();
    c.arg("--threads").arg(test_threads().to_string()).arg("--cache-dir").arg(cache);
    c
}

/// Photos of three colour classes, mixed sizes and formats, in `root/train` and `root/test`.
pub(crate) fn photo_folder(root: &Path) {
    let colours = [("blue", [30u8, 60, 200]), ("green", [40, 190, 60]), ("red", [210, 40, 30])];
    let mut k = 0u32;
    for (split, n) in [("train", 15), ("test", 5)] {
        for (class, rgb) in colours {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                k += 1;
                let (w, h) = (24 + (k * 7) % 20, 18 + (k * 5) % 17);
                let img = image::RgbImage::from_fn(w, h, |x, y| {
                    let n = ((x * 31 + y * 17 + k * 13) % 61) as i32 - 30;
                    image::Rgb(rgb.map(|c| (c as i32 + n).clamp(0, 255) as u8))
                });
                let ext = if i % 2 == 0 { "png" } else { "jpg" };
                img.save(dir.join(format!("{i}.{ext}"))).unwrap();
            }
        }
    }
}

/// `tlab run` of resnet18, random weights, 32 px on the folder `data`, with `flags`:
/// (run directory, summary, stderr).
pub(crate) fn run(cache: &Path, runs: &Path, data: &Path, flags: &[&str]) -> (PathBuf, serde_json::Value, String) {
    let out = tlab(cache)
        .args(["run", "--dataset", "folder", "--data"])
        .arg(data)
        .args(["--arch", "resnet18", "--weights", "random", "--size", "32", "--runs-dir"])
        .arg(runs)
        .args(flags)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{flags:?}: {stderr}");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (PathBuf::from(s["run_dir"].as_str().unwrap()), s, stderr)
}

/// `predictions.csv` of a run: image -> predicted class.
pub(crate) fn evaluated(run: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(run.join("predictions.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_string(), f[3].to_string())
        })
        .collect()
}

/// `tlab predict --format jsonl` rows: (path, [(class, probability)], error).
pub(crate) fn predict(
    cache: &Path,
    model: &Path,
    paths: &[&Path],
    extra: &[&str],
) -> (Vec<serde_json::Value>, bool, String) {
    let out =
        tlab(cache).arg("predict").arg(model).args(paths).args(["--format", "jsonl"]).args(extra).output().unwrap();
    let rows = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (rows, out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn predict_equals_evaluate_and_an_exported_model_predicts_the_same_anywhere() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    photo_folder(&data);
    for (strategy, extra) in [
        ("linear-probe", &["--epochs", "4"][..]),
        ("earlier-layer", &["--epochs", "4"][..]),
        ("pretrained-init", &["--image-epochs", "1"][..]),
    ] {
        let (dir, summary, stderr) = run(&cache, &runs, &data, &[&["--strategy", strategy][..], extra].concat());
        assert!(stderr.contains("image folder `photos`") && !stderr.contains("CIFAR-10;"), "{stderr}");
        assert_eq!(summary["test_samples"], 15);
        assert!(!summary["note"].as_str().unwrap().contains("CIFAR"), "{summary}");

        // Image for image, predict's top class is evaluate's.
        let test = data.join("test");
        let (rows, ok, stderr) = predict(&cache, &dir, &[&test], &["--top-k", "2"]);
        assert!(ok, "{stderr}");
        let want = evaluated(&dir);
        assert_eq!(rows.len(), want.len());
        for (row, (image, class)) in rows.iter().zip(&want) {
            assert_eq!(row["path"].as_str().unwrap(), image);
            assert_eq!(row["top"].as_array().unwrap().len(), 2);
            assert_eq!(row["top"][0]["class"].as_str().unwrap(), class, "{strategy}: {image}");
        }

        // Exported, the file alone predicts the same probabilities: no run, no cache.
        let model = tmp.path().join(format!("{strategy}.safetensors"));
        let ts = tmp.path().join(format!("{strategy}.pt"));
        tlab(&cache).arg("export").arg(&dir).arg("-o").arg(&model).arg("--torchscript").arg(&ts).assert().success();
        let elsewhere = tempfile::tempdir().unwrap();
        let (from_file, ok, stderr) = predict(elsewhere.path(), &model, &[&test], &["--top-k", "2"]);
        assert!(ok, "{stderr}");
        for (a, b) in rows.iter().zip(&from_file) {
            assert_eq!(a["top"][0]["class"], b["top"][0]["class"]);
            let (pa, pb) = (a["top"][0]["probability"].as_f64().unwrap(), b["top"][0]["probability"].as_f64().unwrap());
            assert!((pa - pb).abs() < 1e-6, "{strategy}: {pa} vs {pb}");
        }
        let meta = Classifier::from_file(&model, Device::Cpu).unwrap().meta;
        assert_eq!(
            (meta.classes.len(), meta.preprocess.size, meta.dataset.as_str()),
            (3, 32, "the image folder `photos`")
        );
        assert_eq!(meta.test_accuracy, summary["test_accuracy"].as_f64());

        // The TorchScript file in Python gives our probabilities.
        let clf = Classifier::load(&model, &Cache::new(elsewhere.path()), Device::Cpu).unwrap();
        let paths: Vec<PathBuf> = want.iter().map(|(p, _)| PathBuf::from(p)).collect();
        let (_, diff) = torchscript_vs_ours(&clf, &ts, &paths, tmp.path());
        println!("{strategy}: TorchScript in Python vs ours: max |p - p'| = {diff:.2e}");
        assert!(diff < 1e-4, "{strategy}: {diff}");
    }
}

/// `clf`'s probabilities for `paths`, and their largest difference from the TorchScript
/// file `ts` run by `torch.jit.load` in Python on the same decoded images.
pub(crate) fn torchscript_vs_ours(clf: &Classifier, ts: &Path, paths: &[PathBuf], tmp: &Path) -> (Tensor, f64) {
    let x = Tensor::stack(&paths.iter().map(|p| clf.decode(p).unwrap()).collect::<Vec<_>>(), 0);
    let ours = clf.probabilities(&x).unwrap();
    let (input, output) = (tmp.join("x.f32"), tmp.join("p.f32"));
    std::fs::write(&input, bytes(&x)).unwrap();
    let py = std::process::Command::new(python())
        .arg(root().join("examples/python/run_torchscript.py"))
        .arg(ts)
        .arg(&input)
        .args([paths.len().to_string(), clf.meta.preprocess.size.to_string()])
        .arg(&output)
        .output()
        .unwrap();
    assert!(py.status.success(), "{}: {}", ts.display(), String::from_utf8_lossy(&py.stderr));
    let theirs: Vec<f32> =
        std::fs::read(&output).unwrap().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    let theirs = Tensor::from_slice(&theirs).view([paths.len() as i64, clf.meta.classes.len() as i64]);
    let diff = (&ours - &theirs).abs().max().double_value(&[]);
    (ours, diff)
}

fn bytes(t: &Tensor) -> Vec<u8> {
    let v = Vec::<f32>::try_from(t.flatten(0, -1).to_kind(Kind::Float)).unwrap();
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

#[test]
fn bad_models_and_images_are_named_and_the_rest_still_predicted() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    photo_folder(&data);
    let (dir, _, _) = run(&cache, &runs, &data, &["--epochs", "1"]);
    let model = tmp.path().join("m.safetensors");
    tlab(&cache).arg("export").arg(&dir).arg("-o").arg(&model).assert().success();

    // The report's gallery: the most confident mistakes, most confident first, as thumbnails.
    tlab(&cache).arg("report").arg(&dir).assert().success();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ![test image")).collect();
    let table = std::fs::read_to_string(dir.join("predictions.csv")).unwrap();
    let wrong = table.lines().skip(1).filter(|l| l.split(',').nth(2) != l.split(',').nth(3)).count();
    assert_eq!(rows.len(), wrong.min(12), "{md}");
    let probs: Vec<f64> =
        rows.iter().map(|r| r.rsplit('|').nth(1).unwrap().trim().trim_end_matches('%').parse().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "most confident first: {probs:?}");
    assert!(dir.join("mistakes-01.png").is_file() || rows.is_empty());

    // One unreadable photo among good ones: its row says why, the rest are predicted, and
    // the exit status says something failed. CSV goes to a file.
    let bad = tmp.path().join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8 not a jpeg").unwrap();
    let good = data.join("test/red/0.png");
    let (rows, ok, stderr) = predict(&cache, &model, &[&good, &bad], &[]);
    assert!(!ok && stderr.contains("1 of 2 images could not be predicted"), "{stderr}");
    assert!(rows[0]["error"].is_null() && rows[0]["top"].as_array().unwrap().len() == 3);
    assert!(rows[1]["error"].as_str().unwrap().contains("bad.jpg"), "{}", rows[1]);
    let csv = tmp.path().join("p.csv");
    tlab(&cache).arg("predict").arg(&model).arg(&good).args(["--format", "csv", "--out"]).arg(&csv).assert().success();
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("path,class_1,prob_1,class_2,prob_2,class_3,prob_3,error\n"), "{text}");
    // A quoted glob is expanded by tlab itself.
    let pattern = format!("{}/test/*/0.*", data.display());
    let (rows, ok, _) = predict(&cache, &model, &[Path::new(&pattern)], &[]);
    assert!(ok && rows.len() == 3, "{rows:?}");

    let fails = |model: &Path, what: &str| {
        let out = tlab(&cache).arg("predict").arg(model).arg(&good).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success() && stderr.contains(what), "{}: {stderr}", model.display());
        stderr
    };
    fails(&tmp.path().join("no-such-run"), "no-such-run");
    // An unfinished run: trained.json is written last.
    let unfinished = runs.join("unfinished");
    std::fs::create_dir(&unfinished).unwrap();
    std::fs::copy(dir.join("config.json"), unfinished.join("config.json")).unwrap();
    let e = fails(&unfinished, "not finished training");
    assert!(e.contains("unfinished"), "{e}");
    tlab(&cache).arg("export").arg(&unfinished).arg("-o").arg(tmp.path().join("x.safetensors")).assert().failure();
    assert!(!tmp.path().join("x.safetensors").exists(), "nothing written for a failed export");
    // A truncated file, and one whose metadata was stripped.
    let bytes = std::fs::read(&model).unwrap();
    let truncated = tmp.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    fails(&truncated, "truncated.safetensors");
    let (tensors, _) = transfer_lab::tensorfile::read(&model).unwrap();
    let stripped = tmp.path().join("stripped.safetensors");
    let list: Vec<(String, Tensor)> = tensors.into_iter().collect();
    transfer_lab::tensorfile::write(&stripped, &list, &Default::default()).unwrap();
    fails(&stripped, "not a model exported by `tlab export`");
    // k-NN has no head to export.
    let (knn, _, _) = run(&cache, &runs, &data, &["--strategy", "knn", "--k", "3", "--epochs", "1"]);
    let out = tlab(&cache).arg("export").arg(&knn).arg("-o").arg(tmp.path().join("k.safetensors")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("k-NN"), "{}", String::from_utf8_lossy(&out.stderr));
}
