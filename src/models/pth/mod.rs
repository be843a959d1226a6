//! Reads `torch.save(model.state_dict())` files (`.pth`) without Python.
//!
//! Such a file is a zip archive: `<prefix>/data.pkl` is a pickle of a dict of tensors, and
//! each tensor's storage is the raw little-endian entry `<prefix>/data/<key>`. libtorch's
//! own `pickle_load` rejects torchvision's checkpoints, so this module runs a small pickle
//! machine that knows only what `torch.save` writes for a state dict; any other object
//! is refused by name rather than executed.
//!
//! The parts: `value` (what a state dict's pickle is made of, and the checks on it) and
//! `unpickler` (the machine, one opcode at a time).
use crate::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use tch::Tensor;
use unpickler::Unpickler;
use value::state_dict;
use zip::ZipArchive;

mod unpickler;
mod value;

/// Reads every tensor of a state dict, in file order, as contiguous CPU tensors with the
/// dtype, shape and values they were saved with.
pub fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    read(path).map_err(|reason| Error::Weights { path: path.to_path_buf(), reason })
}

/// Failures are plain strings here; `read_pth` adds the path.
pub(super) type Res<T> = std::result::Result<T, String>;

fn read(path: &Path) -> Res<Vec<(String, Tensor)>> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    // The file's real length bounds what honest entries can hold; no header is trusted.
    let file_len = file.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    let mut zip = ZipArchive::new(file).map_err(|e| {
        format!("not a zip archive ({e}); is it truncated, or saved by torch < 1.6 (legacy format, unsupported)?")
    })?;
    let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
    let pkl = names
        .iter()
        .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or("no data.pkl in the archive; not a torch.save file")?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let mut budget = Budget::new(file_len);
    let order = format!("{prefix}byteorder");
    if names.contains(&order) {
        let bytes = read_entry(&mut zip, &order, &mut budget)?;
        if bytes.trim_ascii() != b"little" {
            return Err(format!(
                "byte order is `{}`; only little-endian files are supported",
                String::from_utf8_lossy(&bytes)
            ));
        }
    }
    let data = read_entry(&mut zip, pkl, &mut budget)?;
    state_dict(Unpickler::new(&data, &mut zip, prefix, budget).run()?)
}

/// What a file may make us read and copy, fixed by its size before any size field inside
/// it is believed: a pickle that claims a 1 TB storage, or an entry that inflates without
/// end, is refused before the memory is asked for.
pub(super) struct Budget {
    pub(super) file_len: u64,
    /// Bytes of archive entries still allowed to be read (inflated).
    pub(super) read: u64,
    /// Bytes of tensor data still allowed to be produced.
    pub(super) copy: u64,
}

impl Budget {
    fn new(file_len: u64) -> Self {
        // torch.save stores entries uncompressed; 4x leaves room for other zip tools' deflate.
        let read = file_len.saturating_mul(4).saturating_add(1 << 20);
        // Shared storages and views are copied once per tensor: 16x the data is generous.
        Budget { file_len, read, copy: read.saturating_mul(4) }
    }
}

pub(super) fn read_entry(zip: &mut ZipArchive<File>, name: &str, budget: &mut Budget) -> Res<Vec<u8>> {
    let entry = zip.by_name(name).map_err(|e| format!("archive entry {name}: {e}"))?;
    let size = entry.size();
    if size > budget.read {
        return Err(format!(
            "archive entry {name} claims {size} bytes, more than a {}-byte file can hold; the file is damaged",
            budget.file_len
        ));
    }
    // The claim is checked above; reads stop at it even if the data goes on.
    let mut buf = Vec::with_capacity(size as usize);
    entry
        .take(size + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("archive entry {name} is unreadable ({e}); is the file truncated?"))?;
    if buf.len() as u64 != size {
        return Err(format!(
            "archive entry {name} has {} bytes, its header says {size}; is the file damaged?",
            buf.len()
        ));
    }
    budget.read -= size;
    Ok(buf)
}
