//! Datasets from the outside: CIFAR-10 binary files, image folders, synthetic data.
use std::path::Path;
use tch::{Kind, Tensor};
use transfer_lab::data::cifar::{self, RECORD_BYTES};
use transfer_lab::data::synthetic::{synthetic, write_synthetic_cifar};
use transfer_lab::data::{Dataset, Source, Split};

const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];

/// A recognisable pixel value for record `i`, channel `c`, row `y`, column `x`.
fn pixel(i: usize, c: usize, y: usize, x: usize) -> u8 {
    (i * 7 + c * 101 + y * 13 + x * 3) as u8
}

/// `n` records' pixels, `[n, 3, 32, 32]` flattened, offset by `first` in [`pixel`].
fn images(first: usize, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 3072);
    for i in first..first + n {
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    out.push(pixel(i, c, y, x));
                }
            }
        }
    }
    out
}

fn flat_u8(t: &Tensor) -> Vec<u8> {
    Vec::<u8>::try_from(&t.contiguous().view([-1])).unwrap()
}

fn flat_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64)).unwrap()
}

fn memory(ds: &Dataset) -> (&Tensor, &Tensor) {
    match &ds.source {
        Source::Memory { images, labels } => (images, labels),
        Source::Files { .. } => panic!("expected in-memory data"),
    }
}

#[test]
fn cifar_batch_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data_batch_1.bin");
    cifar::write_batch_file(&path, &images(0, 4), &[0, 9, 3, 3]).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 4 * RECORD_BYTES);

    let (x, y) = cifar::read_batch_file(&path).unwrap();
    assert_eq!(x.size(), [4, 3, 32, 32]);
    assert_eq!(x.kind(), Kind::Uint8);
    assert_eq!(y.kind(), Kind::Int64);
    assert_eq!(flat_i64(&y), [0, 9, 3, 3]);
    // Pixel (i, c, y, x) is byte 1 + c*1024 + y*32 + x of record i.
    for (i, c, row, col) in [(0, 0, 0, 0), (1, 2, 31, 31), (2, 1, 5, 17), (3, 2, 0, 31)] {
        let byte = bytes[i * RECORD_BYTES + 1 + c * 1024 + row * 32 + col];
        assert_eq!(x.int64_value(&[i as i64, c as i64, row as i64, col as i64]), byte as i64);
        assert_eq!(byte, pixel(i, c, row, col));
    }
    assert_eq!(flat_u8(&x), images(0, 4));
}

/// Writes five train batches of 1, 2, 3, 1, 2 records and a test batch of 2.
fn write_cifar_dir(dir: &Path) {
    let mut first = 0;
    for (k, (file, n)) in TRAIN_FILES.iter().zip([1, 2, 3, 1, 2]).enumerate() {
        let labels = vec![k as u8; n];
        cifar::write_batch_file(&dir.join(file), &images(first, n), &labels).unwrap();
        first += n;
    }
    cifar::write_batch_file(&dir.join("test_batch.bin"), &images(100, 2), &[7, 8]).unwrap();
}

#[test]
fn cifar_train_concatenates_batches_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_dir(dir.path());
    let names: Vec<String> = (0..10).map(|i| format!("class{i}")).collect();
    std::fs::write(dir.path().join("batches.meta.txt"), names.join("\n") + "\n\n").unwrap();

    let train = cifar::load_cifar10(dir.path(), Split::Train).unwrap();
    assert_eq!(train.len(), 9);
    assert_eq!((train.name.as_str(), train.synthetic), ("cifar10", false));
    assert_eq!(train.classes, names);
    let (x, y) = memory(&train);
    assert_eq!(x.size(), [9, 3, 32, 32]);
    assert_eq!(flat_i64(y), [0, 1, 1, 2, 2, 2, 3, 4, 4]);
    assert_eq!(flat_u8(x), images(0, 9));

    let test = cifar::load_cifar10(dir.path(), Split::Test).unwrap();
    assert_eq!(flat_i64(&test.labels()), [7, 8]);
    assert_eq!(flat_u8(memory(&test).0), images(100, 2));
    assert_ne!(train.digest, test.digest);
    assert_eq!(test.digest.len(), 64);
}

#[test]
fn cifar_without_meta_uses_standard_names() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_dir(dir.path());
    let test = cifar::load_cifar10(dir.path(), Split::Test).unwrap();
    assert_eq!(test.classes[0], "airplane");
    assert_eq!(test.classes[9], "truck");
    assert_eq!(test.classes.len(), 10);
}

#[test]
fn cifar_digest_follows_bytes() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_dir(dir.path());
    let before = cifar::load_cifar10(dir.path(), Split::Test).unwrap().digest;
    cifar::write_batch_file(&dir.path().join("test_batch.bin"), &images(101, 2), &[7, 8]).unwrap();
    let after = cifar::load_cifar10(dir.path(), Split::Test).unwrap().digest;
    assert_ne!(before, after);
}

#[test]
fn cifar_truncated_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data_batch_3.bin");
    let mut bytes = vec![1u8; 2 * RECORD_BYTES];
    bytes.truncate(2 * RECORD_BYTES - 100);
    std::fs::write(&path, &bytes).unwrap();
    let err = cifar::read_batch_file(&path).unwrap_err().to_string();
    assert!(err.contains("data_batch_3.bin"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains(&bytes.len().to_string()), "{err}");
}

#[test]
fn cifar_bad_label_names_record() {
    let mut bytes = vec![0u8; 3 * RECORD_BYTES];
    bytes[2 * RECORD_BYTES] = 10;
    let err = cifar::parse_batch(&bytes, Path::new("b.bin")).unwrap_err().to_string();
    assert!(err.contains("b.bin") && err.contains("record 2") && err.contains("10"), "{err}");
}

#[test]
fn cifar_empty_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test_batch.bin");
    std::fs::write(&path, b"").unwrap();
    let err = cifar::read_batch_file(&path).unwrap_err().to_string();
    assert!(err.contains("test_batch.bin") && err.contains("empty"), "{err}");
}

#[test]
fn cifar_missing_file_is_named_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar_dir(dir.path());
    std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
    let err = cifar::load_cifar10(dir.path(), Split::Test).err().unwrap().to_string();
    assert!(err.contains("test_batch.bin"), "{err}");
    assert!(err.contains("tlab fetch cifar10") && err.contains("--data"), "{err}");
    // Train is unaffected.
    assert_eq!(cifar::load_cifar10(dir.path(), Split::Train).unwrap().len(), 9);
}

#[test]
fn cifar_meta_needs_ten_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batches.meta.txt");
    std::fs::write(&path, "a\nb\n\nc\n").unwrap();
    let err = cifar::read_class_names(&path).unwrap_err().to_string();
    assert!(err.contains("batches.meta.txt") && err.contains("found 3"), "{err}");
}

#[test]
fn cifar_accepts_unpacked_tarball_folder() {
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&inner).unwrap();
    write_cifar_dir(&inner);
    assert_eq!(cifar::load_cifar10(dir.path(), Split::Test).unwrap().len(), 2);
}

#[test]
fn synthetic_is_deterministic_and_labelled() {
    let a = synthetic(200, Split::Train, 7);
    let b = synthetic(200, Split::Train, 7);
    assert!(a.synthetic);
    assert_eq!(a.name, "synthetic");
    assert!(a.describe().contains("SYNTHETIC"));
    assert_eq!(a.classes.len(), 10);
    assert!(a.classes.iter().all(|c| c.starts_with("synthetic-")));
    let (xa, ya) = memory(&a);
    let (xb, yb) = memory(&b);
    assert_eq!(xa.size(), [200, 3, 32, 32]);
    assert_eq!(xa.kind(), Kind::Uint8);
    assert_eq!(ya.kind(), Kind::Int64);
    assert_eq!(flat_u8(xa), flat_u8(xb));
    assert_eq!(flat_i64(ya), flat_i64(yb));
    assert_eq!(a.digest, b.digest);
}

#[test]
fn synthetic_differs_across_seeds_and_splits() {
    let base = synthetic(50, Split::Train, 1);
    let other_seed = synthetic(50, Split::Train, 2);
    let other_split = synthetic(50, Split::Test, 1);
    let pixels = flat_u8(memory(&base).0);
    assert_ne!(pixels, flat_u8(memory(&other_seed).0));
    assert_ne!(pixels, flat_u8(memory(&other_split).0));
    assert_ne!(base.digest, other_seed.digest);
    assert_ne!(base.digest, other_split.digest);
    assert_ne!(base.digest, synthetic(51, Split::Train, 1).digest);
}

#[test]
fn synthetic_labels_are_balanced_and_images_vary() {
    let ds = synthetic(1000, Split::Train, 3);
    let labels = flat_i64(&ds.labels());
    let mut counts = [0; 10];
    labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [100; 10]);
    let x = memory(&ds).0.to_kind(Kind::Float);
    // Every image has structure (not a flat colour), and no two of the first 20 are equal.
    let per_image_std = x.view([1000, -1]).std_dim(1, true, false);
    assert!(per_image_std.min().double_value(&[]) > 10.0);
    let first = flat_u8(&memory(&ds).0.narrow(0, 0, 20));
    let chunks: Vec<&[u8]> = first.chunks(3072).collect();
    for i in 0..20 {
        for j in i + 1..20 {
            assert_ne!(chunks[i], chunks[j], "images {i} and {j} are identical");
        }
    }
}

/// Per image: mean R, G, B, mean |horizontal| and |vertical| grey differences. `[N, 5]`.
fn simple_features(images: &Tensor) -> Tensor {
    let mean = |t: Tensor, dims: &[i64]| t.mean_dim(dims, false, Kind::Float);
    let x = images.to_kind(Kind::Float);
    let colour = mean(x.shallow_clone(), &[2, 3]);
    let grey = mean(x, &[1]);
    let dx = mean((grey.narrow(2, 1, 31) - grey.narrow(2, 0, 31)).abs(), &[1, 2]);
    let dy = mean((grey.narrow(1, 1, 31) - grey.narrow(1, 0, 31)).abs(), &[1, 2]);
    Tensor::cat(&[colour, dx.unsqueeze(1), dy.unsqueeze(1)], 1)
}

/// Fraction of `eval` items whose nearest class mean (fitted on `fit`) is their class.
fn nearest_mean_accuracy(fit: &Tensor, fit_labels: &Tensor, eval: &Tensor, eval_labels: &Tensor) -> f64 {
    // Standardise each feature on the fitting set so no feature dominates the distance.
    let mu = fit.mean_dim(0i64, true, Kind::Float);
    let sd = fit.std_dim(0i64, true, true);
    let (fit, eval) = ((fit - &mu) / &sd, (eval - &mu) / &sd);
    let means: Vec<Tensor> = (0..10)
        .map(|c| {
            let rows = fit_labels.eq(c).nonzero().squeeze_dim(1);
            fit.index_select(0, &rows).mean_dim(0i64, false, Kind::Float)
        })
        .collect();
    let means = Tensor::stack(&means, 0);
    let dist = (eval.unsqueeze(1) - means.unsqueeze(0)).square().sum_dim_intlist(2i64, false, Kind::Float);
    let pred = dist.argmin(1, false);
    pred.eq_tensor(eval_labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[])
}

#[test]
fn synthetic_classes_are_separable_without_a_network() {
    let fit = synthetic(1000, Split::Train, 11);
    let eval = synthetic(1000, Split::Test, 12);
    let (f_fit, f_eval) = (simple_features(memory(&fit).0), simple_features(memory(&eval).0));
    let acc = nearest_mean_accuracy(&f_fit, &fit.labels(), &f_eval, &eval.labels());
    assert!(acc > 0.9, "nearest-class-mean accuracy {acc}");
    // The check has teeth: with shuffled labels the same classifier is near chance.
    let shuffled = fit.labels().roll(&[1i64][..], &[0i64][..]);
    let chance = nearest_mean_accuracy(&f_fit, &shuffled, &f_eval, &eval.labels());
    assert!(chance < 0.5, "accuracy with rolled labels {chance}");
}

#[test]
fn synthetic_cifar_export_loads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("synthetic-cifar");
    write_synthetic_cifar(&out, 23, 7, 5).unwrap();
    // 23 split evenly over five files: 5, 5, 5, 4, 4 records.
    let sizes: Vec<u64> =
        TRAIN_FILES.iter().map(|f| std::fs::metadata(out.join(f)).unwrap().len() / RECORD_BYTES as u64).collect();
    assert_eq!(sizes, [5, 5, 5, 4, 4]);
    for (split, n) in [(Split::Train, 23), (Split::Test, 7)] {
        let loaded = cifar::load_cifar10(&out, split).unwrap();
        let direct = synthetic(n, split, 5);
        assert_eq!(loaded.len(), n);
        assert_eq!(flat_u8(memory(&loaded).0), flat_u8(memory(&direct).0));
        assert_eq!(flat_i64(&loaded.labels()), flat_i64(&direct.labels()));
        assert_eq!(loaded.classes, direct.classes);
        // Loaded through the CIFAR path, it is still marked synthetic.
        assert!(loaded.synthetic, "export must stay labelled synthetic");
    }
    assert!(write_synthetic_cifar(&out, 4, 1, 5).is_err());
}
