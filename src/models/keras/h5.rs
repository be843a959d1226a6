//! Keras' legacy HDF5 weights files: what Keras 2's `model.save_weights("x.h5")` wrote and
//! Keras 3 writes through `legacy_h5_format.save_weights_to_hdf5_group`, the layout of
//! every `keras.applications` download.
//!
//! ```text
//! /                      attrs: layer_names (or layer_names0, layer_names1, ... when long)
//! /<layer>               attrs: weight_names, e.g. "conv1_conv/kernel:0" (Keras 3: no ":0")
//! /<layer>/<weight name> float32 datasets, Keras' layouts (a conv kernel is (kh, kw, in, out))
//! ```
//!
//! Parsing is hdf5-pure's (pure Rust: no libhdf5). The whole file is read into memory
//! first, so every size the file claims is checked against its length before anything is
//! allocated for it.
use crate::{Error, Result};
use hdf5_pure::{AttrValue, Datatype, DatatypeByteOrder, File, FloatingPointLayout};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// One layer's weights, in the file's order: `(weight name, tensor in Keras' layout)`.
pub struct KerasLayer {
    pub name: String,
    pub weights: Vec<(String, Tensor)>,
}

/// Reads every layer that has weights, in `layer_names` order (the order Keras'
/// `load_weights` matches layers by). Errors name the file and the layer or dataset.
pub fn read_layers(path: &Path) -> Result<Vec<KerasLayer>> {
    let werr = |reason: String| Error::Weights { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(werr("file not found; fetch it with `tlab fetch weights` or pass --weights PATH".into()));
    }
    let bytes = std::fs::read(path).map_err(|e| werr(format!("cannot be read: {e}")))?;
    let file_len = bytes.len() as u64;
    let file = File::from_bytes(bytes)
        .map_err(|e| werr(format!("not a readable HDF5 file ({e}); is it truncated or not a Keras .h5?")))?;
    let eof = file.superblock().eof_address;
    if eof > file_len {
        return Err(werr(format!("truncated: its header says {eof} bytes, the file has {file_len}")));
    }
    let root = file.root().attrs().map_err(|e| werr(format!("root attributes: {e}")))?;
    let layer_names = strings(&root, "layer_names").map_err(&werr)?.ok_or_else(|| {
        werr("no `layer_names` attribute: not a Keras weights file (a whole saved model keeps them under /model_weights)".into())
    })?;
    let mut layers = Vec::new();
    for name in layer_names {
        let lerr = |reason: String| werr(format!("layer `{name}`: {reason}"));
        let group = file.group(&name).map_err(|e| lerr(format!("listed in layer_names but unreadable: {e}")))?;
        let attrs = group.attrs().map_err(|e| lerr(format!("attributes: {e}")))?;
        let weight_names = strings(&attrs, "weight_names").map_err(lerr)?.unwrap_or_default();
        if weight_names.is_empty() {
            continue;
        }
        let mut weights = Vec::with_capacity(weight_names.len());
        for w in weight_names {
            let t =
                read_f32(&file, &format!("{name}/{w}"), file_len).map_err(|r| lerr(format!("dataset `{w}`: {r}")))?;
            weights.push((w, t));
        }
        layers.push(KerasLayer { name, weights });
    }
    Ok(layers)
}

type Strings = std::result::Result<Option<Vec<String>>, String>;

/// A string-array attribute, Keras' way: `name`, or its chunks `name0`, `name1`, ...
/// (Keras splits attributes over 64 KiB); `None` when absent. An empty float64 array is
/// what Keras writes for a layer without weights (numpy's default dtype for `[]`).
fn strings(attrs: &HashMap<String, AttrValue>, name: &str) -> Strings {
    let one = |key: &str| -> Strings {
        use AttrValue::*;
        Ok(Some(match attrs.get(key) {
            None => return Ok(None),
            Some(
                StringArray(v)
                | AsciiStringArray(v)
                | VarLenStringArray(v)
                | VarLenAsciiStringArray(v)
                | VarLenAsciiCharArray(v),
            ) => v.clone(),
            Some(StringArraySized { values, .. } | AsciiStringArraySized { values, .. }) => values.clone(),
            Some(String(s) | AsciiString(s) | VarLenString(s) | VarLenAsciiString(s)) => vec![s.clone()],
            Some(StringSized { value, .. } | AsciiStringSized { value, .. }) => vec![value.clone()],
            Some(F64Array(v)) if v.is_empty() => vec![],
            Some(other) => return Err(format!("attribute `{key}` is not an array of strings ({})", kind(other))),
        }))
    };
    if let Some(v) = one(name)? {
        return Ok(Some(v));
    }
    let (mut all, mut i) = (None, 0);
    while let Some(v) = one(&format!("{name}{i}"))? {
        all.get_or_insert_with(Vec::new).extend(v);
        i += 1;
    }
    Ok(all)
}

/// The variant's name, without its values (which may be long).
fn kind(v: &AttrValue) -> String {
    let s = format!("{v:?}");
    s.split(['(', ' ', '{']).next().unwrap_or("").to_string()
}

/// A float32 dataset as a tensor of its shape; a claim beyond the file's length is refused
/// before anything is allocated for it. The bytes are copied as they are (no per-value
/// decoding: little-endian IEEE float32, as every Keras file and our targets have).
fn read_f32(file: &File, path: &str, file_len: u64) -> std::result::Result<Tensor, String> {
    let d = file.dataset(path).map_err(|e| format!("missing or unreadable ({e})"))?;
    let dtype = d.datatype().map_err(|e| format!("datatype: {e}"))?;
    match &dtype {
        Datatype::FloatingPoint { size: 4, byte_order: DatatypeByteOrder::LittleEndian, layout }
            if *layout == FloatingPointLayout::IEEE754_BINARY32 => {}
        other => return Err(format!("{other:?} values; Keras weights are little-endian float32")),
    }
    let shape = d.shape().map_err(|e| format!("shape: {e}"))?;
    let bytes = shape.iter().try_fold(4u64, |acc, &s| acc.checked_mul(s));
    let bytes = match bytes {
        Some(b) if b <= file_len => b,
        _ => return Err(format!("shape {shape:?} claims more bytes than the file's {file_len}")),
    };
    let raw = d.read_raw().map_err(|e| format!("data: {e}"))?;
    if raw.len() as u64 != bytes {
        return Err(format!("{} bytes of data for shape {shape:?}", raw.len()));
    }
    let dims: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
    Tensor::f_from_data_size(&raw, &dims, Kind::Float).map_err(|e| e.to_string())
}
