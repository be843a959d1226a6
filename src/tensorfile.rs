//! Safetensors files with metadata, written atomically. tch writes none, and a resume
//! checkpoint keeps its training state there, so that weights, optimiser and progress
//! change together in one rename.
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, TchError, Tensor};

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), source: TchError::FileFormat(reason.into()) }
}

fn dtype(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Bool => Dtype::BOOL,
        Kind::Uint8 => Dtype::U8,
        Kind::Int8 => Dtype::I8,
        Kind::Int16 => Dtype::I16,
        Kind::Int => Dtype::I32,
        Kind::Int64 => Dtype::I64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        _ => return None,
    })
}

fn kind(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// One tensor's bytes, copied off the device once.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes `tensors` and `metadata` to `path` through a temp file. The bytes depend only on
/// the names, values and metadata (safetensors orders the header), so equal states give
/// equal files.
pub fn write(path: &Path, tensors: &[(String, Tensor)], metadata: &HashMap<String, String>) -> Result<()> {
    // safetensors 0.3 writes a header of metadata alone that it cannot read back (found by
    // tests/testsuite/fuzz): a checkpoint always holds tensors, so none is refused here.
    if tensors.is_empty() {
        return Err(bad(path, "a checkpoint needs at least one tensor"));
    }
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        let dtype = dtype(t.kind()).ok_or_else(|| bad(path, format!("{name}: cannot store {:?}", t.kind())))?;
        let numel = t.numel();
        let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut data, numel).map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })?;
        views.push((name.clone(), Bytes { dtype, shape: t.size().iter().map(|&d| d as usize).collect(), data }));
    }
    let meta = (!metadata.is_empty()).then(|| metadata.clone());
    let bytes = safetensors::tensor::serialize(views.iter().map(|(n, b)| (n.as_str(), b)), &meta)
        .map_err(|e| bad(path, e.to_string()))?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// The tensors (on the CPU) and metadata of a safetensors file.
pub fn read(path: &Path) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::Checkpoint { path: path.to_path_buf(), source: e.into() })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e.to_string()))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let k = kind(view.dtype()).ok_or_else(|| bad(path, format!("{name}: unsupported dtype {:?}", view.dtype())))?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, k)
            .map_err(|source| Error::Checkpoint { path: path.to_path_buf(), source })?;
        tensors.insert(name, t);
    }
    Ok((tensors, metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tensors_and_metadata_and_equal_states_give_equal_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let ts = vec![
            ("b".to_string(), Tensor::from_slice(&[1.5f32, -2.0]).reshape([2, 1])),
            ("a".to_string(), Tensor::from(7i64)),
        ];
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        let (p, q) = (dir.path().join("x.safetensors"), dir.path().join("y.safetensors"));
        write(&p, &ts, &meta).unwrap();
        let swapped: Vec<(String, Tensor)> = ts.iter().rev().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        write(&q, &swapped, &meta).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap(), "order of the list must not matter");
        let (back, m) = read(&p).unwrap();
        assert_eq!(m, meta);
        assert_eq!(back["b"].size(), [2, 1]);
        assert_eq!(Vec::<f32>::try_from(back["b"].flatten(0, -1)).unwrap(), [1.5, -2.0]);
        assert_eq!(back["a"].int64_value(&[]), 7);
        std::fs::write(&p, &std::fs::read(&q).unwrap()[..20]).unwrap();
        let err = read(&p).unwrap_err().to_string();
        assert!(err.contains("x.safetensors"), "{err}");
    }
}
