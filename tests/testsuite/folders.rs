//! Image folders as users have them: both layouts, unusable files named, every class
//! validated, photos decoded upright in RGB, and preprocessing equal to torchvision's.
use crate::common::*;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};
use transfer_lab::data::folder::{decode_image, decode_sized, open_folder, FolderSpec, DEFAULT_MAX_PIXELS};
use transfer_lab::data::{Dataset, Source, Split};
use transfer_lab::events::{LogLevel, RunEvent, VecSink};
use transfer_lab::preprocess::{Preprocess, ResizeMode};
use transfer_lab::train::{HeadConfig, Split as TrainSplit, ValSplit};

/// Saves a `w` x `h` image whose red channel is `tint`; the format follows the extension.
pub(crate) fn save_image(path: &Path, w: u32, h: u32, tint: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([tint, (x * 9) as u8, (y * 9) as u8]));
    img.save(path).unwrap();
}

pub(crate) fn spec(root: &Path) -> FolderSpec {
    FolderSpec { root: root.to_path_buf(), size: 16, resize: ResizeMode::Crop, ..Default::default() }
}

pub(crate) fn open(spec: &FolderSpec, split: Split) -> (transfer_lab::Result<Dataset>, Vec<(LogLevel, String)>) {
    let mut sink = VecSink::default();
    let ds = open_folder(spec, split, &mut sink);
    let logs = sink
        .0
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::Log { level, message } => Some((level, message)),
            _ => None,
        })
        .collect();
    (ds, logs)
}

pub(crate) fn warnings(logs: &[(LogLevel, String)]) -> Vec<&str> {
    logs.iter().filter(|(l, _)| *l == LogLevel::Warn).map(|(_, m)| m.as_str()).collect()
}

fn names(ds: &Dataset) -> Vec<String> {
    ds.paths().unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect()
}

fn labels(ds: &Dataset) -> Vec<i64> {
    Vec::<i64>::try_from(ds.labels()).unwrap()
}

/// root/cat: 7 images of mixed sizes and formats, root/dog: 6, plus files that cannot be
/// used and folders and files that are not classes.
fn flat_folder(root: &Path) {
    for i in 0..7u32 {
        let ext = ["png", "JPG", "jpeg"][i as usize % 3];
        save_image(&root.join(format!("cat/c{i}.{ext}")), 10 + 7 * i, 30 - 2 * i, 10);
    }
    for i in 0..6u32 {
        save_image(&root.join(format!("dog/d{i}.jpg")), 40, 20 + i, 200);
    }
    save_image(&root.join(".hidden/x.png"), 4, 4, 0);
    std::fs::write(root.join("cat/notes.txt"), "not an image").unwrap();
    std::fs::write(root.join("cat/empty.jpg"), b"").unwrap();
    std::fs::write(root.join("dog/broken.png"), b"\x89PNG\r\n\x1a\n not really").unwrap();
    std::fs::write(root.join("README.md"), "top-level file").unwrap();
    // A GIF (no decoder for it in this build): its header is enough to be recognised.
    std::fs::write(root.join("dog/anim.gif"), b"GIF89a\x04\x00\x04\x00\x00\x00\x00;").unwrap();
}

#[test]
fn a_flat_folder_holds_out_a_test_split_and_names_every_file_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    flat_folder(dir.path());
    let (train, logs) = open(&spec(dir.path()), Split::Train);
    let train = train.unwrap();
    assert_eq!(train.classes, ["cat", "dog"]);
    // Every 5th image of each class is the test split: cat c4, dog d4.
    assert_eq!(
        names(&train),
        [
            "c0.png", "c1.JPG", "c2.jpeg", "c3.png", "c5.jpeg", "c6.png", "d0.jpg", "d1.jpg", "d2.jpg", "d3.jpg",
            "d5.jpg"
        ]
    );
    assert_eq!(labels(&train), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
    assert_eq!(train.val_from, None);
    let w = warnings(&logs);
    assert_eq!(w.len(), 1, "one warning for all skipped files: {logs:?}");
    for name in [
        "4 file(s)",
        "cat/notes.txt (not an image)",
        "cat/empty.jpg (empty file)",
        "dog/broken.png",
        "dog/anim.gif (Gif is not supported)",
        "--strict",
    ] {
        assert!(w[0].contains(name), "`{name}` missing from: {}", w[0]);
    }
    let (test, _) = open(&spec(dir.path()), Split::Test);
    assert_eq!(names(&test.unwrap()), ["c4.JPG", "d4.jpg"]);
    assert!(train.name.ends_with(&dir.path().file_name().unwrap().to_string_lossy().to_string()));
    assert!(!train.name.contains('/'), "labels carry the folder's name, not the machine's path: {}", train.name);

    // Decoded lazily, at the model's size, in float; a constant channel stays constant.
    assert!(matches!(train.source, Source::Files { .. }));
    let (x, y) = train.batch(3..7).unwrap(); // c3.png, c5.jpeg, c6.png, d0.jpg
    assert_eq!((x.size(), x.kind()), (vec![4, 3, 16, 16], Kind::Float));
    assert_eq!(Vec::<i64>::try_from(&y).unwrap(), [0, 0, 0, 1]);
    assert!((x.get(0).get(0) - 10.0).abs().max().double_value(&[]) < 1e-3);
    let red = x.get(3).get(0).mean(Kind::Float).double_value(&[]);
    assert!((red - 200.0).abs() < 5.0, "a JPEG's flat red channel averages {red}");
    // The prefetching reader gives the same batches in the same order.
    let ranges = vec![0..3, 3..8, 8..11];
    let ahead: Vec<_> = train.batches(ranges.clone()).unwrap().map(|b| b.unwrap()).collect();
    for (r, (bx, by)) in ranges.into_iter().zip(ahead) {
        let (x, y) = train.batch(r).unwrap();
        assert!(bx.equal(&x) && by.equal(&y));
    }

    let strict = FolderSpec { strict: true, ..spec(dir.path()) };
    let err = open(&strict, Split::Train).0.err().unwrap().to_string();
    assert!(err.contains("--strict") && err.contains("dog/broken.png"), "{err}");

    // The digest covers the bytes and the size the pixels are decoded at.
    let digest = |s: &FolderSpec| open(s, Split::Train).0.unwrap().digest;
    let before = digest(&spec(dir.path()));
    assert_ne!(before, digest(&FolderSpec { size: 17, ..spec(dir.path()) }));
    assert_ne!(before, digest(&FolderSpec { resize: ResizeMode::Squash, ..spec(dir.path()) }));
    let bicubic = transfer_lab::preprocess::Interpolation::Bicubic;
    assert_ne!(before, digest(&FolderSpec { interpolation: bicubic, ..spec(dir.path()) }));
    assert_ne!(before, digest(&FolderSpec { resize_side: Some(18), ..spec(dir.path()) }));
    save_image(&dir.path().join("dog/d0.jpg"), 40, 20, 201);
    assert_ne!(before, digest(&spec(dir.path())));
}

#[test]
fn the_pytorch_tutorial_layouts_are_read_with_their_validation_set() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (split, n) in [("train", 4), ("val", 2)] {
        for class in ["ants", "bees"] {
            for i in 0..n {
                save_image(&root.join(format!("{split}/{class}/{i}.png")), 20, 12, 50);
            }
        }
    }
    let (train, logs) = open(&spec(root), Split::Train);
    let train = train.unwrap();
    assert_eq!(train.len(), 12);
    assert_eq!(train.val_from, Some(8), "train/ first, then the given val/");
    assert!(logs.iter().any(|(_, m)| m.contains("validation set") && m.contains("val")), "{logs:?}");
    // No test/: val/ stands in, said so.
    let (test, logs) = open(&spec(root), Split::Test);
    assert_eq!(test.unwrap().len(), 4);
    assert!(warnings(&logs).iter().any(|w| w.contains("stands in for the test split")), "{logs:?}");
    // The given validation set is the split, whatever --val-split says.
    let mut cfg = HeadConfig::default().fit_config();
    cfg.fit.val_from = train.val_from;
    let split = TrainSplit::new(&train.labels(), &cfg).unwrap();
    assert_eq!((split.train, split.val), ((0..8).collect(), (8..12).collect()));

    // `valid` and a test folder: test is what evaluation reads.
    std::fs::rename(root.join("val"), root.join("valid")).unwrap();
    save_image(&root.join("test/bees/t.png"), 12, 20, 50);
    let (test, logs) = open(&spec(root), Split::Test);
    assert_eq!(names(&test.unwrap()), ["t.png"]);
    assert!(warnings(&logs).is_empty(), "{logs:?}");
    // A class that training never saw is refused, named.
    save_image(&root.join("test/wasps/w.png"), 12, 20, 50);
    let err = open(&spec(root), Split::Test).0.err().unwrap().to_string();
    assert!(err.contains("wasps") && err.contains("ants, bees"), "{err}");
}

#[test]
fn folders_that_cannot_train_a_classifier_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let err = open(&spec(&root.join("nowhere")), Split::Train).0.err().unwrap().to_string();
    assert!(err.contains("nowhere") && err.contains("not found"), "{err}");
    let err = open(&spec(root), Split::Train).0.err().unwrap().to_string();
    assert!(err.contains("no class sub-folders"), "{err}");
    save_image(&root.join("cat/a.png"), 8, 8, 1);
    let err = open(&spec(root), Split::Train).0.err().unwrap().to_string();
    assert!(err.contains("one class folder (cat)"), "{err}");
    std::fs::create_dir(root.join("dog")).unwrap();
    std::fs::write(root.join("dog/a.gif"), b"GIF89a").unwrap();
    let err = open(&spec(root), Split::Train).0.err().unwrap().to_string();
    assert!(err.contains("no usable image to train on: dog"), "{err}");
    assert!(err.contains(&root.display().to_string()), "{err}");
}

#[test]
fn a_stratified_split_validates_every_class_and_a_sorted_last_split_is_said() {
    // 3 classes, sorted by class, as a folder lists them.
    let sorted: Vec<i64> = [(0, 10), (1, 20), (2, 5)].iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
    let labels = Tensor::from_slice(&sorted);
    let cfg = |val_split| {
        let mut c = HeadConfig::default().fit_config();
        c.fit.val_split = val_split;
        c
    };
    tch::manual_seed(3);
    let s = TrainSplit::new(&labels, &cfg(ValSplit::Stratified)).unwrap();
    let l = Vec::<i64>::try_from(&labels).unwrap();
    let count = |idx: &[i64], c: i64| idx.iter().filter(|&&i| l[i as usize] == c).count();
    assert_eq!([count(&s.val, 0), count(&s.val, 1), count(&s.val, 2)], [2, 4, 1], "20% of each class");
    assert_eq!(s.train.len() + s.val.len(), 35);
    assert!(s.unvalidated_classes(&labels).unwrap().is_empty());
    tch::manual_seed(3);
    assert_eq!(TrainSplit::new(&labels, &cfg(ValSplit::Stratified)).unwrap(), s, "seeded");

    let last = TrainSplit::new(&labels, &cfg(ValSplit::Last)).unwrap();
    // The last 7 rows: 2 of class 1, all 5 of class 2.
    assert_eq!(last.unvalidated_classes(&labels).unwrap(), [0]);
    let mut sink = VecSink::default();
    let names = ["ants".to_string(), "bees".into(), "wasps".into()];
    last.warn_unvalidated(&labels, &names, &cfg(ValSplit::Last), &mut sink).unwrap();
    let RunEvent::Log { level: LogLevel::Warn, message } = &sink.0[0] else { panic!("{:?}", sink.0) };
    assert!(message.contains("1 of the 3 classes (ants)") && message.contains("--val-split stratified"), "{message}");
}

/// The generated photos and torchvision's and PIL's view of them.
fn photos() -> PathBuf {
    generated("tests/fixtures/gen/make_photos.py")
}

fn reference(file: &str) -> std::collections::HashMap<String, Tensor> {
    transfer_lab::models::load_state_dict(&photos().join(file)).unwrap().into_iter().collect()
}

fn mean_abs_u8(ours: &image::RgbImage, theirs: &Tensor) -> f64 {
    let (w, h) = ours.dimensions();
    assert_eq!(theirs.size(), [h as i64, w as i64, 3], "decoded shape");
    let ours = Tensor::from_slice(ours.as_raw()).view([h as i64, w as i64, 3]).to_kind(Kind::Float);
    (ours - theirs.to_kind(Kind::Float)).abs().mean(Kind::Float).double_value(&[])
}

#[test]
fn preprocessing_matches_torchvision_transforms_v2() {
    let refs = reference("ref_tv.pth");
    let pre = Preprocess { size: 64, resize: ResizeMode::Crop, ..Default::default() };
    for name in ["wide", "tall", "small", "odd"] {
        let x = decode_sized(&photos().join(format!("png/{name}.png")), &pre, DEFAULT_MAX_PIXELS).unwrap().unsqueeze(0);
        let ours = pre.normalise(&x).squeeze_dim(0);
        let float = (&ours - &refs[&format!("{name}.float")]).abs().max().double_value(&[]);
        let uint8 = (&ours - &refs[&format!("{name}.uint8")]).abs().max().double_value(&[]);
        println!("{name}: max |ours - torchvision| on the normalised tensor: {float:.2e} (float resize), {uint8:.2e} (uint8 resize)");
        assert!(float < 1e-4, "{name}: {float}");
        // torchvision's uint8 path rounds the resized pixels to bytes: at most half a
        // level, plus its fixed-point weights' own rounding (one level), over std 0.224.
        assert!(uint8 < 1.5 / 255.0 / 0.224 + 1e-4, "{name}: {uint8}");
    }
}

#[test]
fn jpeg_exif_and_colour_modes_decode_as_pil_does() {
    let refs = reference("ref_pil.pth");
    for name in ["q90", "q75"] {
        let d = mean_abs_u8(
            &decode_image(&photos().join(format!("jpeg/{name}.jpg")), DEFAULT_MAX_PIXELS).unwrap(),
            &refs[name],
        );
        println!("JPEG {name}: mean |ours - PIL| = {d:.3} levels");
        assert!(d < 1.0, "{name}: {d}");
    }
    let upright = decode_image(&photos().join("exif6.jpg"), DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(upright.dimensions(), (40, 80), "EXIF orientation 6 turns an 80x40 photo upright");
    let d = mean_abs_u8(&upright, &reference("ref_exif.pth")["upright"]);
    println!("EXIF-rotated JPEG: mean |ours - PIL exif_transpose| = {d:.3} levels");
    assert!(d < 1.0, "{d}");
    let modes = reference("ref_modes.pth");
    for (name, file, tol) in [
        ("grey", "grey.png", 0.0),
        ("palette", "palette.png", 0.0),
        ("rgba", "rgba.png", 0.0),
        ("cmyk", "cmyk.jpg", 3.0),
    ] {
        let d =
            mean_abs_u8(&decode_image(&photos().join("modes").join(file), DEFAULT_MAX_PIXELS).unwrap(), &modes[name]);
        println!("{name}: mean |ours - PIL convert('RGB')| = {d:.3} levels");
        assert!(d <= tol, "{name}: {d}");
    }
    // 16-bit greyscale becomes 8-bit RGB by scaling, not clipping.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("deep.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_fn(3, 2, |x, _| image::Luma([x as u16 * 30000])).save(&p).unwrap();
    let img = decode_image(&p, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(img.get_pixel(2, 1).0, [233, 233, 233], "60000 / 257 rounds to 233");
}
