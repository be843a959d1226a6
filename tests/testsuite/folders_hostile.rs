//! Folders made hostile the way users' folders are: nested class folders, link loops and
//! second links, every format `ImageFolder` reads, cut-off files, decompression bombs,
//! broken links, a file that breaks after listing. Training and `predict` list the same
//! files, each real file once.
use crate::common::*;
use crate::folders::{open, save_image, spec, warnings};
use crate::predict::predict;
use std::path::{Path, PathBuf};
use transfer_lab::data::folder::FolderSpec;
use transfer_lab::data::{Dataset, Split};
use transfer_lab::events::{LogLevel, VecSink};

/// A 16x16 PNG whose header claims `w` x `h`, its CRC made right again: a bomb in 70 bytes.
fn bomb(path: &Path, w: u32, h: u32) {
    let mut b = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(16, 16).write_to(&mut b, image::ImageFormat::Png).unwrap();
    let mut b = b.into_inner();
    b[16..20].copy_from_slice(&w.to_be_bytes());
    b[20..24].copy_from_slice(&h.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&b[12..29]);
    b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    std::fs::write(path, b).unwrap();
}

/// ants: one image of each format, one nested two folders down, a `.DS_Store`; bees: three
/// photos, a link to one of them, a link loop up to the root, a cut-off JPEG, a bomb, a
/// broken link; moths: one photo.
fn hostile(root: &Path) {
    for ext in ["bmp", "jpg", "png", "ppm", "tif", "webp"] {
        save_image(&root.join(format!("ants/a.{ext}")), 16, 16, 40);
    }
    image::GrayImage::from_fn(16, 16, |x, _| image::Luma([x as u8 * 9])).save(root.join("ants/a.pgm")).unwrap();
    save_image(&root.join("ants/sub/deep/deep.jpg"), 16, 16, 50);
    std::fs::write(root.join("ants/.DS_Store"), b"\0\0\0\x01Bud1").unwrap();
    for i in 0..3 {
        save_image(&root.join(format!("bees/b{i}.jpg")), 16, 16, 200);
    }
    // Cut in its pixel data, past the headers: the decoder alone would fill the rest grey.
    save_image(&root.join("bees/cut.jpg"), 96, 96, 200);
    let whole = std::fs::read(root.join("bees/cut.jpg")).unwrap();
    std::fs::write(root.join("bees/cut.jpg"), &whole[..whole.len() * 9 / 10]).unwrap();
    assert!(image::open(root.join("bees/cut.jpg")).is_ok(), "the image crate decodes it without a word");
    bomb(&root.join("bees/bomb.png"), 50_000, 50_000);
    save_image(&root.join("moths/m.jpg"), 16, 16, 120);
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        symlink("b0.jpg", root.join("bees/again.jpg")).unwrap();
        symlink("..", root.join("bees/loop")).unwrap();
        symlink("gone.jpg", root.join("bees/broken.jpg")).unwrap();
    }
}

fn rel(root: &Path, paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|p| p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/")).collect()
}

#[cfg(unix)]
#[test]
fn a_hostile_folder_lists_each_real_file_once_and_names_what_it_skips() {
    let _g = torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    hostile(root);
    let (train, logs) = open(&spec(root), Split::Train);
    let train = train.unwrap();
    let (test, _) = open(&spec(root), Split::Test);
    let test = test.unwrap();
    assert_eq!(train.classes, ["ants", "bees", "moths"]);
    let mut all = rel(root, train.paths().unwrap());
    all.extend(rel(root, test.paths().unwrap()));
    all.sort();
    let ants = ["a.bmp", "a.jpg", "a.pgm", "a.png", "a.ppm", "a.tif", "a.webp", "sub/deep/deep.jpg"];
    let mut expected: Vec<String> = ants.iter().map(|a| format!("ants/{a}")).collect();
    // `again.jpg` comes first in byte order, so the link is listed and b0.jpg counted once.
    expected.extend(["bees/again.jpg", "bees/b1.jpg", "bees/b2.jpg", "moths/m.jpg"].map(String::from));
    assert_eq!(all, expected);
    // Every 5th of each class is the test split: ants' 5th in byte order.
    assert_eq!(rel(root, test.paths().unwrap()), ["ants/a.ppm"]);
    assert_eq!(train.len(), 11);
    let w = warnings(&logs);
    assert_eq!(w.len(), 1, "one warning for every skipped file: {logs:?}");
    for name in [
        "3 file(s)",
        "bees/cut.jpg (image file is truncated",
        "bees/bomb.png (50000x50000 is 2500000000 pixels, over the limit of 178956970 (--max-image-pixels))",
        "bees/broken.jpg (broken link",
    ] {
        assert!(w[0].contains(name), "`{name}` missing from: {}", w[0]);
    }
    assert!(logs.iter().any(|(l, m)| *l == LogLevel::Info && m.contains("1 file(s) reached through more than one")));
    // Every format decodes to the model's input.
    let (x, y) = train.batch(0..train.len()).unwrap();
    assert_eq!((x.size(), y.size()), (vec![11, 3, 16, 16], vec![11]));

    // --strict names all three; a raised limit lets the bomb's header through, but not
    // its claim of more pixels than 70 bytes can hold.
    let err = open(&FolderSpec { strict: true, ..spec(root) }, Split::Train).0.err().unwrap().to_string();
    for name in ["bees/cut.jpg", "bees/bomb.png", "bees/broken.jpg", "--strict"] {
        assert!(err.contains(name), "`{name}` missing from: {err}");
    }
    let (_, logs) = open(&FolderSpec { max_pixels: 1 << 40, ..spec(root) }, Split::Train);
    assert!(warnings(&logs)[0].contains("bees/bomb.png (its header claims 50000x50000 pixels, more than a"));

    // Predict walks the same folder the same way: each real file once, the loop not
    // followed, and the files training left out are rows that say why.
    let clf = transfer_lab::classifier::Classifier::untrained(meta(&train.classes), 0, tch::Device::Cpu);
    let listed = transfer_lab::classifier::expand_paths(&[root.to_path_buf()]).unwrap();
    let rows = clf.predict(&listed, 1, 32).unwrap();
    let predicted: Vec<PathBuf> = rows.iter().filter(|r| r.error.is_none()).map(|r| r.path.clone()).collect();
    assert_eq!(rel(root, &predicted), expected);
    let failed: Vec<String> =
        rows.iter().filter_map(|r| r.error.as_ref().map(|e| format!("{} {e}", r.path.display()))).collect();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().any(|e| e.contains("cut.jpg") && e.contains("truncated")), "{failed:?}");
    assert!(failed.iter().any(|e| e.contains("bomb.png") && e.contains("over the limit")), "{failed:?}");

    // An empty class folder cannot be trained on; a class of one image can.
    std::fs::create_dir(root.join("wasps")).unwrap();
    let err = open(&spec(root), Split::Train).0.err().unwrap().to_string();
    assert!(err.contains("no usable image to train on: wasps"), "{err}");
}

fn meta(classes: &[String]) -> transfer_lab::classifier::ModelMeta {
    use transfer_lab::preprocess::Preprocess;
    transfer_lab::classifier::ModelMeta {
        format: transfer_lab::classifier::FORMAT,
        arch: transfer_lab::models::Arch::ResNet18,
        tap: transfer_lab::models::Tap::Layer4,
        pool: transfer_lab::models::Pool::Mean,
        temperature: None,
        classes: classes.to_vec(),
        preprocess: Preprocess { size: 32, ..Default::default() },
        strategy: transfer_lab::train::Strategy::LinearProbe,
        weights: "resnet18 random(seed=0)".into(),
        weights_digest: "random:resnet18:0".into(),
        pretrained: false,
        dataset: "the image folder `hostile`".into(),
        synthetic: false,
        best_val_acc: 0.5,
        test_accuracy: None,
        test_samples: None,
        crate_version: "test".into(),
    }
}

/// The CLI on a folder with two link loops: one row per real file.
#[cfg(unix)]
#[test]
fn predict_on_a_folder_with_link_loops_returns_each_real_file_once() {
    let _g = torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("photos");
    for class in ["ants", "bees"] {
        for i in 0..2 {
            save_image(&root.join(format!("{class}/{i}.jpg")), 16, 16, 9);
        }
    }
    std::os::unix::fs::symlink("..", root.join("bees/loop")).unwrap();
    std::fs::create_dir(root.join("ants/deeper")).unwrap();
    std::os::unix::fs::symlink("../..", root.join("ants/deeper/up")).unwrap();
    let model = tmp.path().join("m.safetensors");
    let classes = ["ants".to_string(), "bees".to_string()];
    transfer_lab::classifier::Classifier::untrained(meta(&classes), 0, tch::Device::Cpu).export(&model).unwrap();
    let (rows, ok, stderr) = predict(&tmp.path().join("cache"), &model, &[&root], &[]);
    assert!(ok, "{stderr}");
    let paths: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    let expected: Vec<String> = ["ants/0.jpg", "ants/1.jpg", "bees/0.jpg", "bees/1.jpg"]
        .iter()
        .map(|p| root.join(p).display().to_string())
        .collect();
    assert_eq!(paths, expected);
    // --max-image-pixels reaches predict: under 256 pixels every 16x16 photo is refused.
    let (rows, ok, _) = predict(&tmp.path().join("cache"), &model, &[&root], &["--max-image-pixels", "255"]);
    assert!(!ok && rows.iter().all(|r| r["error"].as_str().unwrap().contains("over the limit of 255")));
}

/// A file that passed the listing but fails to decode later is left out of its batch,
/// named once, and the paths of the results stay aligned; with --strict it is the error.
#[test]
fn a_file_that_breaks_after_listing_leaves_its_batch_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for class in ["ants", "bees"] {
        for i in 0..3 {
            save_image(&root.join(format!("{class}/{i}.png")), 16, 16, 70);
        }
    }
    let (train, _) = open(&spec(root), Split::Train);
    let train: Dataset = train.unwrap();
    let (strict, _) = open(&FolderSpec { strict: true, ..spec(root) }, Split::Train);
    let strict = strict.unwrap();
    std::fs::write(root.join("ants/1.png"), b"\x89PNG\r\n\x1a\n gone bad").unwrap();
    let (x, y) = train.gather(&[0, 1, 2, 3]).unwrap();
    assert_eq!((x.size()[0], Vec::<i64>::try_from(&y).unwrap()), (3, vec![0, 0, 1]));
    let ahead: Vec<_> = train.batches(vec![0..2, 2..4]).unwrap().map(|b| b.unwrap().1.size()[0]).collect();
    assert_eq!(ahead, [1, 2]);
    let failed = train.decode_failures();
    assert_eq!(failed.len(), 1, "named once however often it failed: {failed:?}");
    assert!(failed[0].path.ends_with("ants/1.png"));
    let used = train.used_paths().unwrap();
    assert_eq!(used.len(), train.len() - 1);
    assert!(!used.iter().any(|p| p.ends_with("ants/1.png")));
    let mut sink = VecSink::default();
    train.warn_decode_failures(&mut sink);
    assert_eq!(sink.0.len(), 1);
    let err = strict.gather(&[0, 1]).err().unwrap().to_string();
    assert!(err.contains("ants/1.png") && err.contains("--strict"), "{err}");
}

/// A PNG whose every chunk and CRC is sound but whose pixel stream stops half way: the
/// listing's checks pass it, decoding fails.
fn broken_inside(path: &Path) {
    let mut b = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(40, 40, |x, y| image::Rgb([(x * 6) as u8, (y * 6) as u8, 90]))
        .write_to(&mut b, image::ImageFormat::Png)
        .unwrap();
    let b = b.into_inner();
    let (mut out, mut at) = (b[..8].to_vec(), 8);
    while at < b.len() {
        let len = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let (kind, data) = (&b[at + 4..at + 8], &b[at + 8..at + 8 + len]);
        let data = if kind == b"IDAT" { &data[..len / 2] } else { data };
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
        at += 12 + len;
    }
    std::fs::write(path, out).unwrap();
}

/// A file that passes the listing but fails to decode during feature extraction: the run
/// goes on without it, says so, and the cache records the row it left out, so a cache hit
/// leaves out the same file, says so again, and gives the same results. `--strict` stops.
#[test]
fn a_file_failing_to_decode_during_extraction_is_left_out_and_recorded_in_the_cache() {
    use crate::predict::{evaluated, photo_folder, run};
    let tmp = tempfile::tempdir().unwrap();
    let (data, cache, runs) = (tmp.path().join("photos"), tmp.path().join("cache"), tmp.path().join("runs"));
    photo_folder(&data);
    let bad = data.join("test/green/2b.png");
    broken_inside(&bad);
    assert!(transfer_lab::data::folder::usable(&bad, u64::MAX).is_ok(), "the listing passes it");
    assert!(image::open(&bad).is_err(), "decoding fails");
    let flags = ["--epochs", "1", "--batch-size", "4"];
    let (first, s1, err1) = run(&cache, &runs, &data, &flags);
    let (second, s2, err2) = run(&cache, &runs, &data, &flags);
    for (run_dir, s, err) in [(&first, &s1, &err1), (&second, &s2, &err2)] {
        assert!(err.contains("2b.png") && err.contains("left out"), "{err}");
        assert_eq!(s["test_samples"], 15, "16 listed, one left out");
        let rows = evaluated(run_dir);
        assert_eq!(rows.len(), 15);
        assert!(!rows.iter().any(|(p, _)| p.contains("2b.png")), "{rows:?}");
    }
    assert!(err1.contains("test features, shard 0: 1 row(s) left out"), "said where it is recorded: {err1}");
    assert!(!err2.contains("shard 0"), "the second run is a cache hit: {err2}");
    assert_eq!(s1["test_accuracy"], s2["test_accuracy"]);
    assert_eq!(evaluated(&first), evaluated(&second));
    // The manifest names the row: blue's five files, then green's 0, 1, 2 and 2b.
    let test_dir =
        transfer_lab::run::records::FeatureDirs::read(&transfer_lab::rundir::RunDir::at(&first)).unwrap().test.unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(test_dir.join("manifest.json")).unwrap()).unwrap();
    let skipped = &m["shards"][0]["skipped"];
    assert_eq!(skipped.as_array().map(|a| a.len()), Some(1), "{m}");
    assert_eq!(skipped[0]["row"], 8);
    let f = transfer_lab::features::load_features(&test_dir).unwrap();
    assert_eq!((f.len(), f.skipped.len(), f.loaded_row(8), f.loaded_row(10)), (15, 1, 8, 9));
    // With a given validation set, a training row left out before it moves where the
    // validation rows start among the features: 45 training and 15 validation rows.
    for class in ["blue", "green", "red"] {
        let (from, to) = (data.join("test").join(class), data.join("val").join(class));
        std::fs::create_dir_all(&to).unwrap();
        for e in std::fs::read_dir(&from).unwrap().flatten().filter(|e| !e.file_name().to_string_lossy().contains("2b"))
        {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    broken_inside(&data.join("train/blue/0b.png"));
    for strategy in ["linear-probe", "logreg"] {
        let (dir, _, err) = run(&cache, &runs, &data, &[&flags[..], &["--strategy", strategy]].concat());
        assert!(err.contains("0b.png") && err.contains("2b.png"), "{err}");
        let trained: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("trained.json")).unwrap()).unwrap();
        assert_eq!((&trained["train_samples"], &trained["val_samples"]), (&45.into(), &15.into()), "{strategy}");
    }
    let out = crate::predict::tlab(&cache)
        .args(["run", "--dataset", "folder", "--data"])
        .arg(&data)
        .args(["--arch", "resnet18", "--weights", "random", "--size", "32", "--strict", "--runs-dir"])
        .arg(&runs)
        .args(flags)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("0b.png") && err.contains("--strict"), "{err}");
}
