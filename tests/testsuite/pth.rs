//! `read_pth` against files written by torch.save (tests/fixtures/gen/make_pth.py).
use crate::common::generated;
use std::path::Path;
use tch::{Kind, Tensor};
use transfer_lab::models::pth::read_pth;

const SCRIPT: &str = "tests/fixtures/gen/make_pth.py";

/// Reads `dir/NAME.pth` and checks it equals `NAME.safetensors`, in `NAME.keys` order.
fn check_same(name: &str) -> Vec<(String, Tensor)> {
    tch::set_num_threads(1);
    let dir = generated(SCRIPT);
    let ours = read_pth(&dir.join(format!("{name}.pth"))).unwrap();
    let want: std::collections::HashMap<_, _> =
        Tensor::read_safetensors(dir.join(format!("{name}.safetensors"))).unwrap().into_iter().collect();
    let keys = std::fs::read_to_string(dir.join(format!("{name}.keys"))).unwrap();
    let names: Vec<&str> = ours.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, keys.lines().collect::<Vec<_>>(), "{name}: names or order differ");
    for (k, t) in &ours {
        let w = &want[k];
        assert_eq!((t.size(), t.kind()), (w.size(), w.kind()), "{name}: {k}");
        assert!(t.is_contiguous(), "{name}: {k} is not contiguous");
        assert_eq!(t.device(), tch::Device::Cpu);
        assert!(t.equal(w), "{name}: {k} values differ");
    }
    ours
}

#[test]
fn reads_torchvision_resnet18() {
    let sd = check_same("resnet18");
    assert_eq!(sd.len(), 122);
    let (_, nbt) = sd.iter().find(|(k, _)| k == "bn1.num_batches_tracked").unwrap();
    assert_eq!((nbt.kind(), nbt.size()), (Kind::Int64, vec![]));
}

#[test]
fn reads_views_dtypes_and_shared_storages() {
    for name in ["mixed", "mixed_p4"] {
        let sd = check_same(name);
        let get = |k: &str| &sd.iter().find(|(n, _)| n == k).unwrap().1;
        assert_eq!(get("transposed").size(), [6, 4]);
        assert_eq!(get("slice").double_value(&[0, 0]), 8.0);
        assert_eq!(get("int64").int64_value(&[3]), 1 << 62);
        // Shared in the file, independent once read.
        let mut a = get("shared_a").shallow_clone();
        let before = get("shared_b").copy();
        let _ = a.fill_(0.0);
        assert!(get("shared_b").equal(&before));
    }
}

fn err_of(path: &Path) -> String {
    let err = read_pth(path).err().unwrap_or_else(|| panic!("{} was read", path.display()));
    let msg = err.to_string();
    assert!(matches!(err, transfer_lab::Error::Weights { .. }), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "error does not name the file: {msg}");
    msg
}

#[test]
fn truncated_and_foreign_files_are_errors() {
    let dir = generated(SCRIPT);
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(dir.join("mixed.pth")).unwrap();
    let cut = tmp.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    println!("{}", err_of(&cut));
    let text = tmp.path().join("text.pth");
    std::fs::write(&text, "not a zip").unwrap();
    assert!(err_of(&text).contains("not a zip"));
    println!("{}", err_of(&tmp.path().join("missing.pth")));
}

#[test]
fn non_state_dicts_are_errors() {
    let dir = generated(SCRIPT);
    let list = err_of(&dir.join("list.pth"));
    assert!(list.contains("not a state dict") && list.contains("list"), "{list}");
    let module = err_of(&dir.join("module.pth"));
    assert!(module.contains("torch.nn.modules.linear.Linear") && module.contains("not a state dict"), "{module}");
    let ckpt = err_of(&dir.join("checkpoint.pth"));
    assert!(ckpt.contains("not a state dict") && ckpt.contains("`model`"), "{ckpt}");
}

/// `src` with the entry ending in `suffix` replaced by `edit(bytes)`.
fn rezip(src: &Path, suffix: &str, edit: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut zin = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut zout = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut edit = Some(edit);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        if f.name().ends_with(suffix) {
            bytes = edit.take().unwrap()(bytes);
        }
        zout.start_file(f.name(), opts).unwrap();
        zout.write_all(&bytes).unwrap();
    }
    zout.finish().unwrap().into_inner()
}

#[test]
fn short_storage_is_an_error() {
    let dir = generated(SCRIPT);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("short.pth");
    // Storage 0 of `mixed` backs `transposed` and `slice`: 24 floats.
    std::fs::write(&path, rezip(&dir.join("mixed.pth"), "/data/0", |b| b[..b.len() / 2].to_vec())).unwrap();
    let msg = err_of(&path);
    assert!(msg.contains("data/0") && msg.contains("12 elements"), "{msg}");
}

/// Every cut of data.pkl, and every byte flipped, is read or refused without a panic.
#[test]
fn damaged_pickles_never_panic() {
    tch::set_num_threads(1);
    let dir = generated(SCRIPT);
    let src = dir.join("mixed_p4.pth");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("damaged.pth");
    let mut pkl_len = 0;
    rezip(&src, "/data.pkl", |b| {
        pkl_len = b.len();
        b
    });
    assert!(pkl_len > 100);
    for i in 0..pkl_len {
        std::fs::write(&path, rezip(&src, "/data.pkl", |b| b[..i].to_vec())).unwrap();
        err_of(&path);
        std::fs::write(
            &path,
            rezip(&src, "/data.pkl", |mut b| {
                b[i] ^= 0x5a;
                b
            }),
        )
        .unwrap();
        let _ = read_pth(&path);
    }
}
