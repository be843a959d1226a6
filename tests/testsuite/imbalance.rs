//! A folder with a class of few photos: the warning, `--class-weight balanced`, and the
//! balanced accuracy and macro-F1 in `summary.json`.
use crate::common::*;
use crate::predict::{photo_folder, run};

/// The photo folder with 15 blue, 15 green and 4 red training photos.
fn imbalanced_photos(data: &std::path::Path) {
    photo_folder(data);
    for i in 4..15 {
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        std::fs::remove_file(data.join(format!("train/red/{i}.{ext}"))).unwrap();
    }
}

#[test]
fn an_imbalanced_folder_is_named_and_scored_per_class() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    imbalanced_photos(&data);
    let (dir, summary, stderr) = run(&cache, &runs, &data, &["--epochs", "2", "--class-weight", "balanced"]);
    assert!(
        stderr.contains("the classes are imbalanced: `")
            && stderr.contains("has 15 images, `red` only 4 (more than 3x)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("--class-weight balanced weighs"),
        "the advice is not repeated to whoever took it: {stderr}"
    );
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains("\"class_weight\": \"balanced\""), "{config}");
    let (b, f) = (summary["balanced_accuracy"].as_f64().unwrap(), summary["macro_f1"].as_f64().unwrap());
    println!("balanced accuracy {b:.3}, macro-F1 {f:.3}, accuracy {}", summary["test_accuracy"]);
    assert!((0.0..=1.0).contains(&b) && (0.0..=1.0).contains(&f));
    // The test split is balanced (5 a class): balanced accuracy is accuracy there.
    assert!((b - summary["test_accuracy"].as_f64().unwrap()).abs() < 1e-9);
}

/// The image strategies weigh their loss too: the same seeded scratch run trains to other
/// weights with `--class-weight balanced`, and records it; k-NN, which has no loss,
/// refuses it by name.
#[test]
fn image_strategies_weigh_their_loss_and_knn_refuses_class_weights() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    imbalanced_photos(&data);
    let flags = ["--strategy", "scratch", "--image-epochs", "1", "--batch-size", "8", "--no-augment"];
    let history = |dir: &std::path::Path| std::fs::read_to_string(dir.join("epochs.csv")).unwrap();
    let (plain, _, _) = run(&cache, &runs, &data, &flags);
    let (weighed, _, stderr) = run(&cache, &runs, &data, &[&flags[..], &["--class-weight", "balanced"]].concat());
    let (again, _, _) = run(&cache, &runs, &data, &flags);
    assert_eq!(history(&plain), history(&again), "the comparison is deterministic");
    assert_ne!(history(&plain), history(&weighed), "the weights changed training");
    assert!(!stderr.contains("--class-weight balanced weighs"), "{stderr}");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(weighed.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["config"]["images"]["class_weight"], "balanced", "{config}");
    let out = crate::predict::tlab(&cache)
        .args(["run", "--dataset", "folder", "--data"])
        .arg(&data)
        .args(["--arch", "resnet18", "--weights", "random", "--size", "32", "--strategy", "knn"])
        .args(["--class-weight", "balanced", "--runs-dir"])
        .arg(&runs)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--class-weight") && err.contains("k-NN"), "{err}");
}
