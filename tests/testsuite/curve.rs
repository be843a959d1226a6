//! `tlab curve`: a learning curve on a run's cached features.
use crate::common::*;
use crate::predict::{photo_folder, run, tlab};

#[test]
fn curve_fits_each_method_on_k_images_per_class_and_names_short_classes() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    photo_folder(&data);
    let (dir, _, _) = run(&cache, &runs, &data, &["--epochs", "1"]);
    let out = tlab(&cache).arg("curve").arg(&dir).args(["--shots", "1,20,all", "--seeds", "2"]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // 15 training images a class: 20 asked for, 15 used, and said so for each class.
    for class in ["blue", "green", "red"] {
        assert!(
            stderr.contains(&format!("class `{class}` has 15 training images: 20 per class used all 15")),
            "{stderr}"
        );
    }
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("| logreg") || l.starts_with("| knn") || l.starts_with("| head"))
            .count(),
        9,
        "{stdout}"
    );
    let csv = std::fs::read_to_string(dir.join("curve.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 9, "{csv}");
    for r in &rows {
        let rows_used: usize = r[2].parse().unwrap();
        assert_eq!(rows_used, if r[1] == "1" { 3 } else { 45 }, "{r:?}");
        let (mean, min, max): (f64, f64, f64) = (r[3].parse().unwrap(), r[5].parse().unwrap(), r[6].parse().unwrap());
        assert!((0.0..=1.0).contains(&mean) && min <= mean && mean <= max, "{r:?}");
    }
    // Every image, whatever the seed: logreg and k-NN fit the same rows.
    for r in rows.iter().filter(|r| r[1] == "all" && r[0] != "head") {
        assert_eq!(r[5], r[6], "{r:?}");
    }
    let svg = std::fs::read_to_string(dir.join("curve.svg")).unwrap();
    assert!(svg.contains("Test accuracy by training images per class") && svg.contains("[RANDOM WEIGHTS]"));
    assert!(dir.join("curve.png").is_file() && dir.join("curve.md").is_file());
    let bad = tlab(&cache).arg("curve").arg(&dir).args(["--shots", "0"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("`0`"));
}
