//! The `.pth` reader: state dicts written here the way `torch.save` writes them (a zip of
//! a protocol-2 pickle and raw storages) read back exactly; damaged ones, and pickles of
//! random opcodes, are refused with an error naming the file; size fields are checked
//! against the file before anything is allocated for them.
use super::{damaged, damages, fuzz};
use proptest::prelude::*;
use std::io::Write;
use tch::{Kind, Tensor};
use transfer_lab::models::pth::read_pth;

/// One tensor of a generated state dict: a contiguous view `offset..` of its own storage.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: u8,
    shape: Vec<i64>,
    offset: i64,
    seed: u8,
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    let entry =
        ("[a-z]{1,6}(\\.[a-z0-9_]{1,6}){0,2}", 0..3u8, proptest::collection::vec(0..4i64, 0..3), 0..3i64, any::<u8>())
            .prop_map(|(name, kind, shape, offset, seed)| Entry { name, kind, shape, offset, seed });
    proptest::collection::vec(entry, 0..5).prop_map(|mut v| {
        // Dict keys are unique in a real state dict.
        let mut seen = std::collections::HashSet::new();
        v.retain(|e| seen.insert(e.name.clone()));
        v
    })
}

const STORAGES: [(&str, Kind); 3] =
    [("FloatStorage", Kind::Float), ("LongStorage", Kind::Int64), ("ByteStorage", Kind::Uint8)];

fn tensor_of(e: &Entry) -> Tensor {
    let n: i64 = e.shape.iter().product();
    let kind = STORAGES[e.kind as usize].1;
    (Tensor::arange(n, (Kind::Float, tch::Device::Cpu)) * 3 + e.seed as f64).to_kind(kind).view(e.shape.as_slice())
}

/// A pickle writer for what `torch.save(state_dict)` emits.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: u8) -> &mut Self {
        self.0.push(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.op(b'X');
        self.0.extend((s.len() as u32).to_le_bytes());
        self.0.extend(s.as_bytes());
        self
    }
    fn int(&mut self, i: i64) -> &mut Self {
        self.op(b'J');
        self.0.extend((i as i32).to_le_bytes());
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(b'c');
        self.0.extend(format!("{module}\n{name}\n").as_bytes());
        self
    }
    fn ints(&mut self, v: &[i64]) -> &mut Self {
        self.op(b'(');
        for &i in v {
            self.int(i);
        }
        self.op(b't')
    }
}

fn strides(shape: &[i64]) -> Vec<i64> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// data.pkl and the storages of `entries`, or of one hand-set geometry.
fn state_dict(entries: &[Entry]) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut p = Pickle::default();
    p.op(0x80).op(2).global("collections", "OrderedDict").op(b')').op(b'R').op(b'(');
    let mut storages = vec![];
    for (i, e) in entries.iter().enumerate() {
        let (class, kind) = STORAGES[e.kind as usize];
        let t = tensor_of(e);
        let numel = t.numel() as i64 + e.offset;
        let mut bytes = vec![0u8; e.offset as usize * kind.elt_size_in_bytes()];
        let mut data = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
        t.copy_data_u8(&mut data, t.numel());
        bytes.extend(data);
        storages.push((i.to_string(), bytes));
        p.str(&e.name).global("torch._utils", "_rebuild_tensor_v2").op(b'(');
        p.op(b'(').str("storage").global("torch", class).str(&i.to_string()).str("cpu").int(numel).op(b't').op(b'Q');
        p.int(e.offset).ints(&e.shape).ints(&strides(&e.shape)).op(0x89);
        p.global("collections", "OrderedDict").op(b')').op(b'R').op(b't').op(b'R');
    }
    p.op(b'u').op(b'.');
    (p.0, storages)
}

fn zip_of(pkl: &[u8], storages: &[(String, Vec<u8>)], deflate: bool) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method = if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    z.start_file("archive/byteorder", opts).unwrap();
    z.write_all(b"little").unwrap();
    for (key, bytes) in storages {
        z.start_file(format!("archive/data/{key}"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn read_bytes(bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf, transfer_lab::Result<Vec<(String, Tensor)>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.pth");
    std::fs::write(&path, bytes).unwrap();
    let got = read_pth(&path);
    (dir, path, got)
}

fn refused(bytes: &[u8]) -> String {
    let (_dir, path, got) = read_bytes(bytes);
    let err = got.expect_err("the file was read");
    let msg = err.to_string();
    assert!(matches!(err, transfer_lab::Error::Weights { .. }) && msg.contains(&path.display().to_string()), "{msg}");
    msg
}

#[test]
fn generated_state_dicts_read_back_exactly_and_damaged_ones_are_refused() {
    tch::set_num_threads(1);
    fuzz("pth-roundtrip", 160, (entries(), any::<bool>()), |(entries, deflate)| {
        let (pkl, storages) = state_dict(&entries);
        let (_dir, _path, got) = read_bytes(&zip_of(&pkl, &storages, deflate));
        let got = got.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got.len(), entries.len());
        for ((name, t), e) in got.iter().zip(&entries) {
            prop_assert_eq!(name, &e.name);
            prop_assert!(t.equal(&tensor_of(e)), "{} differs", name);
        }
        Ok(())
    });
    fuzz("pth-damaged", 160, (entries(), damages(), any::<bool>()), |(entries, dmg, whole_file)| {
        let (pkl, storages) = state_dict(&entries);
        let bytes = if whole_file {
            damaged(zip_of(&pkl, &storages, false), &dmg)
        } else {
            zip_of(&damaged(pkl, &dmg), &storages, false)
        };
        let (_dir, path, got) = read_bytes(&bytes);
        match got {
            Ok(sd) => prop_assert!(sd.iter().all(|(_, t)| t.is_contiguous())),
            Err(e) => {
                prop_assert!(matches!(e, transfer_lab::Error::Weights { .. }), "{e}");
                super::names_path(&e, &path)?;
            }
        }
        Ok(())
    });
}

/// Opcodes the reader knows (and a few it refuses), with small arguments.
#[derive(Debug, Clone)]
enum Op {
    Byte(u8),
    Int(i32),
    Str(String),
    Get(u8),
    Put(u8),
    Global(u8),
    Long1(Vec<u8>),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    const BARE: &[u8] = b"(}])t\x85\x86\x87aesuRb\x81Q\x94N\x88\x89.0";
    let op = prop_oneof![
        8 => proptest::sample::select(BARE).prop_map(Op::Byte),
        2 => any::<i32>().prop_map(Op::Int),
        2 => prop_oneof![Just("storage".to_string()), Just("0".to_string()), "[a-z]{0,4}"].prop_map(Op::Str),
        2 => (0..8u8).prop_map(Op::Get),
        2 => (0..8u8).prop_map(Op::Put),
        2 => (0..6u8).prop_map(Op::Global),
        1 => proptest::collection::vec(any::<u8>(), 0..10).prop_map(Op::Long1),
    ];
    proptest::collection::vec(op, 0..120)
}

fn encode(ops: &[Op]) -> Vec<u8> {
    const GLOBALS: [(&str, &str); 6] = [
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch", "FloatStorage"),
        ("torch", "LongStorage"),
        ("os", "system"),
    ];
    let mut p = Pickle::default();
    p.op(0x80).op(2);
    for op in ops {
        match op {
            Op::Byte(b) => {
                p.op(*b);
            }
            Op::Int(i) => {
                p.int(*i as i64);
            }
            Op::Str(s) => {
                p.str(s);
            }
            Op::Get(i) => {
                p.op(b'h').op(*i);
            }
            Op::Put(i) => {
                p.op(b'q').op(*i);
            }
            Op::Global(g) => {
                let (m, n) = GLOBALS[*g as usize];
                p.global(m, n);
            }
            Op::Long1(bytes) => {
                p.op(0x8a).op(bytes.len() as u8).0.extend(bytes);
            }
        }
    }
    p.0
}

#[test]
fn pickles_of_random_opcodes_are_read_or_refused() {
    tch::set_num_threads(1);
    let storage = vec![("0".to_string(), vec![0u8; 64])];
    fuzz("pth-opcodes", 320, ops(), |ops| {
        let (_dir, path, got) = read_bytes(&zip_of(&encode(&ops), &storage, false));
        if let Err(e) = got {
            super::names_path(&e, &path)?;
        }
        Ok(())
    });
}

/// A state dict of one tensor with a hand-set storage claim and geometry.
fn one_tensor(numel: i64, shape: &[i64], stride: &[i64], storage_bytes: usize) -> Vec<u8> {
    let mut p = Pickle::default();
    p.op(0x80).op(2).op(b'}').op(b'(').str("w").global("torch._utils", "_rebuild_tensor_v2").op(b'(');
    p.op(b'(').str("storage").global("torch", "FloatStorage").str("0").str("cpu");
    // LONG1 of 8 bytes: numel may not fit in BININT.
    p.op(0x8a).op(8).0.extend(numel.to_le_bytes());
    p.op(b't').op(b'Q').int(0);
    for v in [shape, stride] {
        p.op(b'(');
        for &i in v {
            p.op(0x8a).op(8).0.extend(i.to_le_bytes());
        }
        p.op(b't');
    }
    p.op(0x89).op(b')').op(b't').op(b'R').op(b'u').op(b'.');
    zip_of(&p.0, &[("0".into(), vec![0u8; storage_bytes])], false)
}

#[test]
fn size_fields_are_checked_before_allocating() {
    tch::set_num_threads(1);
    // A storage that claims 1 TB (2^38 floats) in a file of a few hundred bytes.
    let msg = refused(&one_tensor(1 << 38, &[1 << 38], &[1], 16));
    assert!(msg.contains("holds 4 elements") && msg.contains(&(1u64 << 38).to_string()), "{msg}");
    // A view of 2^40 elements over a 4-element storage by stride 0.
    let msg = refused(&one_tensor(4, &[1 << 40], &[0], 16));
    assert!(msg.contains("larger than its storage"), "{msg}");
    // Sizes whose product overflows i64.
    let msg = refused(&one_tensor(4, &[1 << 32, 1 << 32], &[0, 0], 16));
    assert!(msg.contains("larger than its storage"), "{msg}");
    // The honest form of the same file reads.
    let (_d, _p, ok) = read_bytes(&one_tensor(4, &[2, 2], &[2, 1], 16));
    assert_eq!(ok.unwrap()[0].1.size(), [2, 2]);
}

#[test]
fn an_entry_that_inflates_beyond_the_file_is_refused_unread() {
    // 16 MiB of zeros deflate to ~16 KiB: more than 4x the file + 1 MiB. The storage is read
    // only when a tensor refers to it: one does.
    let big = vec![("0".to_string(), vec![0u8; 16 << 20])];
    let mut p = Pickle::default();
    p.op(0x80).op(2).op(b'}').op(b'(').str("w").global("torch._utils", "_rebuild_tensor_v2").op(b'(');
    p.op(b'(').str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(4).op(b't').op(b'Q');
    p.int(0).ints(&[4]).ints(&[1]).op(0x89).op(b')').op(b't').op(b'R').op(b'u').op(b'.');
    let bytes = zip_of(&p.0, &big, true);
    assert!(bytes.len() < 1 << 18, "{} bytes", bytes.len());
    let msg = refused(&bytes);
    assert!(msg.contains("archive entry archive/data/0 claims 16777216 bytes"), "{msg}");
}

#[test]
fn memo_copies_and_deep_nesting_are_bounded() {
    // Billion laughs: a list memoized, fetched twice and appended, 40 times over.
    let mut p = Pickle::default();
    p.op(0x80).op(2).op(b']').op(b'q').op(0);
    for _ in 0..40 {
        // A new list [m0, m0], memoized as entry 0: each round doubles what a GET copies.
        p.op(b']').op(b'(').op(b'h').op(0).op(b'h').op(0).op(b'e').op(b'q').op(0);
    }
    p.op(b'.');
    let msg = refused(&zip_of(&p.0, &[], false));
    assert!(msg.contains("copies more values"), "{msg}");
    // A list nested a million deep: refused, not a stack overflow on drop.
    let mut p = Pickle::default();
    p.op(0x80).op(2);
    for _ in 0..1_000_000 {
        p.op(b']');
    }
    for _ in 0..999_999 {
        p.op(b'a');
    }
    p.op(b'.');
    let msg = refused(&zip_of(&p.0, &[], false));
    assert!(msg.contains("nest more than 64"), "{msg}");
    // Wide but shallow is fine: a list of 10,000 ints is read (and then refused as not a dict).
    let mut p = Pickle::default();
    p.op(0x80).op(2).op(b']').op(b'(');
    for i in 0..10_000 {
        p.int(i);
    }
    p.op(b'e').op(b'.');
    assert!(refused(&zip_of(&p.0, &[], false)).contains("not a state dict"));
}
