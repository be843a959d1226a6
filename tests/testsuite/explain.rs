//! Grad-CAM: our maps against pytorch-grad-cam (tests/fixtures/gen/make_gradcam_reference.py),
//! and `tlab predict --explain` with the report's gallery over it.
use crate::common::*;
use crate::predict::{photo_folder, predict, run, tlab};
use std::path::Path;
use tch::{nn, Device, Tensor};
use transfer_lab::explain::grad_cam;
use transfer_lab::models::{load_weights, Arch, Tap};

const SCRIPT: &str = "tests/fixtures/gen/make_gradcam_reference.py";

#[test]
fn grad_cam_matches_pytorch_grad_cam_before_scaling() {
    let _g = torch_lock();
    let dir = generated(SCRIPT);
    let io = read_tensors(&dir.join("cams.safetensors"));
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = Arch::ResNet18.build(&vs.root());
    let _ = nn::linear(vs.root() / "fc", 512, 1000, Default::default());
    load_weights(&mut vs, &dir.join("resnet18.safetensors"), &[]).unwrap();
    vs.freeze();
    let v = vs.variables();
    let cam = |class| grad_cam(net.as_ref(), Tap::Layer4, &v["fc.weight"], &v["fc.bias"], &io["x"], class).unwrap();
    let top = cam(None);
    let want: Vec<usize> = Vec::<i64>::try_from(&io["top_class"]).unwrap().into_iter().map(|c| c as usize).collect();
    assert_eq!(top.classes, want);
    let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    let d = diff(&top.maps, &io["top"]);
    println!(
        "Grad-CAM, top class: max |ours - pytorch-grad-cam| = {d:.2e} (maps up to {:.2})",
        io["top"].max().double_value(&[])
    );
    assert!(d < 1e-4, "{d}");
    // Their targets are per image (7, 400); ours one class per call.
    let chosen = Tensor::stack(&[cam(Some(7)).maps.get(0), cam(Some(400)).maps.get(1)], 0);
    let d = diff(&chosen, &io["chosen"]);
    println!("Grad-CAM, chosen classes: max |ours - pytorch-grad-cam| = {d:.2e}");
    assert!(d < 1e-4, "{d}");
}

/// `heatmaps.csv` of `dir`: rows of (image, class, probability, heatmap, error).
fn index(dir: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("heatmaps.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("image,class,probability,heatmap,error"));
    lines.map(|l| l.splitn(5, ',').map(String::from).collect()).collect()
}

#[test]
fn predict_explains_each_readable_image_and_names_what_it_cannot() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let (cache, runs, data) = (tmp.path().join("cache"), tmp.path().join("runs"), tmp.path().join("photos"));
    photo_folder(&data);
    let (dir, _, _) = run(&cache, &runs, &data, &["--epochs", "2"]);
    let bad = tmp.path().join("bad.jpg");
    std::fs::write(&bad, b"\xff\xd8 not a jpeg").unwrap();
    let (red, blue) = (data.join("test/red/0.png"), data.join("test/blue/1.jpg"));

    // The top class of each: a heatmap the model's input size, the class predict gave.
    let cams = tmp.path().join("cams");
    let (rows, ok, stderr) = predict(&cache, &dir, &[&red, &bad, &blue], &["--explain", cams.to_str().unwrap()]);
    assert!(!ok && stderr.contains("1 of 3 images could not be predicted"), "{stderr}");
    assert!(stderr.contains("2 heatmaps written"), "{stderr}");
    let got = index(&cams);
    assert_eq!(got.len(), 3);
    for (i, (row, want)) in got.iter().zip(&rows).enumerate() {
        if i == 1 {
            assert!(row[4].contains("bad.jpg") && row[3].is_empty(), "{row:?}");
            continue;
        }
        assert_eq!(row[1], want["top"][0]["class"].as_str().unwrap(), "{row:?}");
        let p: f64 = row[2].parse().unwrap();
        assert!((p - want["top"][0]["probability"].as_f64().unwrap()).abs() < 1e-4, "{row:?} vs {want}");
        let png = image::open(cams.join(&row[3])).unwrap();
        assert_eq!((png.width(), png.height()), (32, 32), "{}", row[3]);
    }
    assert!(got[0][3].starts_with("001-0-") && got[2][3].starts_with("003-1-"), "{got:?}");

    // A chosen class, for every image; a class the model does not have.
    let (_, ok, stderr) =
        predict(&cache, &dir, &[&red, &blue], &["--explain", cams.to_str().unwrap(), "--class", "green"]);
    assert!(ok, "{stderr}");
    assert!(index(&cams).iter().all(|r| r[1] == "green"));
    let (_, ok, stderr) = predict(&cache, &dir, &[&red], &["--explain", cams.to_str().unwrap(), "--class", "purple"]);
    assert!(!ok && stderr.contains("`purple`") && stderr.contains("blue, green, red"), "{stderr}");

    // The report's gallery of mistakes shows a heatmap beside each.
    tlab(&cache).arg("report").arg(&dir).assert().success();
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    let wrong = md.lines().filter(|l| l.starts_with("| ![test image")).count();
    let cams_shown = md.lines().filter(|l| l.contains("](mistakes-") && l.contains("-cam.png)")).count();
    println!("report: {wrong} mistakes, {cams_shown} heatmaps");
    assert_eq!(cams_shown, wrong, "{md}");
    assert!(wrong == 0 || dir.join("mistakes-01-cam.png").is_file(), "{md}");

    // k-NN has no weights to explain.
    let (knn, _, _) = run(&cache, &runs, &data, &["--strategy", "knn", "--k", "3", "--epochs", "1"]);
    let (_, ok, stderr) = predict(&cache, &knn, &[&red], &["--explain", cams.to_str().unwrap()]);
    assert!(!ok && stderr.contains("k-NN") && stderr.contains("explain"), "{stderr}");
}
