//! A folder with a class of few photos: the warning, `--class-weight balanced`, and the
//! balanced accuracy and macro-F1 in `summary.json`.
use crate::common::*;
use crate::predict::{photo_folder, run};

#[test]
fn an_imbalanced_folder_is_named_and_scored_per_class() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    photo_folder(&data);
    // 15 blue, 15 green, 4 red training photos.
    for i in 4..15 {
        let ext = if i % 2 == 0 { "png" } else { "jpg" };
        std::fs::remove_file(data.join(format!("train/red/{i}.{ext}"))).unwrap();
    }
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
