//! What `torch.save`'s objects become: the few globals a state dict needs, and tensors
//! rebuilt from their zip-entry storages, checked against the file before any copy.
use super::super::value::{ints, storage_kind, Value, CALLABLE};
use super::super::{read_entry, Res};
use super::Unpickler;
use std::rc::Rc;
use tch::Tensor;

impl Unpickler<'_> {
    /// Allows only the few globals a state dict needs: nothing else is ever "imported".
    pub(super) fn global(&self, name: String) -> Res<Value> {
        if CALLABLE.contains(&name.as_str()) || storage_kind(&name).is_some() {
            return Ok(Value::Global(name));
        }
        Err(format!(
            "unsupported global `{name}`: not a state dict (only str -> tensor dicts can be read, not pickled models or other objects)"
        ))
    }

    pub(super) fn call(&mut self, f: Value, args: Value) -> Res<Value> {
        let (Value::Global(name), Value::Tuple(args)) = (&f, args) else {
            return Err(format!("cannot call a {}", f.type_name()));
        };
        match (name.as_str(), args.as_slice()) {
            ("collections.OrderedDict", []) => Ok(Value::Dict(vec![])),
            ("torch._utils._rebuild_tensor_v2", [storage, Value::Int(offset), size, stride, ..]) => {
                self.tensor(storage, *offset, &ints(size)?, &ints(stride)?).map(|t| Value::Tensor(Rc::new(t)))
            }
            ("torch._utils._rebuild_parameter", [t @ Value::Tensor(_), ..]) => Ok(t.clone()),
            _ => Err(format!("unexpected arguments for `{name}`")),
        }
    }

    /// BINPERSID: `('storage', torch.XStorage, key, location, numel)`.
    pub(super) fn storage(&self, pid: Value) -> Res<Value> {
        match pid {
            Value::Tuple(t) => match t.as_slice() {
                [Value::Str(tag), Value::Global(class), Value::Str(key), _, Value::Int(numel)] if tag == "storage" => {
                    let kind = storage_kind(class).ok_or_else(|| format!("`{class}` is not a storage type"))?;
                    Ok(Value::Storage { key: key.clone(), kind, numel: *numel })
                }
                _ => Err("unrecognised persistent id; expected ('storage', type, key, location, numel)".into()),
            },
            v => Err(format!("persistent id is a {}, not a tuple", v.type_name())),
        }
    }

    /// `_rebuild_tensor_v2`: a strided view of a storage, made contiguous and owned.
    fn tensor(&mut self, storage: &Value, offset: i64, size: &[i64], stride: &[i64]) -> Res<Tensor> {
        let Value::Storage { key, kind, numel } = storage else {
            return Err(format!("tensor storage is a {}", storage.type_name()));
        };
        let name = format!("{}data/{key}", self.prefix);
        let bytes = match self.storages.get(&name) {
            Some(b) => b.clone(),
            None => {
                let b = Rc::new(read_entry(self.zip, &name, &mut self.budget)?);
                self.storages.insert(name.clone(), b.clone());
                b
            }
        };
        let elt = kind.elt_size_in_bytes();
        let have = (bytes.len() / elt) as i64;
        if have < *numel {
            return Err(format!("storage {name} holds {have} elements of {kind:?}, the pickle says {numel}"));
        }
        if size.len() != stride.len() || size.iter().chain(stride).any(|&x| x < 0) || offset < 0 {
            return Err(format!("bad tensor geometry: size {size:?}, stride {stride:?}, offset {offset}"));
        }
        // The view's own element count is a size field too: checked before anything is allocated.
        let count = size.iter().try_fold(1i64, |n, &d| n.checked_mul(d)).filter(|&n| n <= have.max(1));
        let Some(count) = count else {
            return Err(format!("tensor of size {size:?} is larger than its storage {name} ({have} elements)"));
        };
        // Highest element index + 1 the view touches (none when it is empty).
        let extent = if count == 0 {
            0
        } else {
            size.iter()
                .zip(stride)
                .map(|(&n, &s)| (n - 1).saturating_mul(s))
                .fold(offset, i64::saturating_add)
                .saturating_add(1)
        };
        if extent > have {
            return Err(format!(
                "storage {name} is too small: size {size:?}, stride {stride:?}, offset {offset} need {extent} elements, it has {have}"
            ));
        }
        let out = (count as u64).saturating_mul(elt as u64);
        self.budget.copy = self.budget.copy.checked_sub(out).ok_or_else(|| {
            format!(
                "the tensors copy more data than a {}-byte file can hold; the file is damaged",
                self.budget.file_len
            )
        })?;
        // Copy only the elements the view spans, so a slice does not keep its whole storage.
        let lo = if extent == 0 { 0 } else { offset };
        let flat = Tensor::f_from_data_size(&bytes[lo as usize * elt..extent as usize * elt], &[extent - lo], *kind);
        flat.and_then(|t| t.f_as_strided(size, stride, 0)?.f_contiguous()).map_err(|e| format!("storage {name}: {e}"))
    }
}
