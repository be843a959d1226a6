//! Reads `torch.save(model.state_dict())` files (`.pth`) without Python.
//!
//! Such a file is a zip archive: `<prefix>/data.pkl` is a pickle of a dict of tensors, and
//! each tensor's storage is the raw little-endian entry `<prefix>/data/<key>`. libtorch's
//! own `pickle_load` rejects torchvision's checkpoints, so this module runs a small pickle
//! machine that knows only what `torch.save` writes for a state dict; any other object
//! is refused by name rather than executed.
use crate::{Error, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;
use tch::{Kind, Tensor};
use zip::ZipArchive;

/// Reads every tensor of a state dict, in file order, as contiguous CPU tensors with the
/// dtype, shape and values they were saved with.
pub fn read_pth(path: &Path) -> Result<Vec<(String, Tensor)>> {
    read(path).map_err(|reason| Error::Weights { path: path.to_path_buf(), reason })
}

/// Failures are plain strings here; `read_pth` adds the path.
type Res<T> = std::result::Result<T, String>;

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
    let nodes = data.len().saturating_mul(16).saturating_add(1 << 16);
    let vm = Unpickler {
        data: &data,
        pos: 0,
        stack: vec![],
        marks: vec![],
        memo: HashMap::new(),
        zip: &mut zip,
        prefix,
        storages: HashMap::new(),
        budget,
        nodes,
    };
    state_dict(vm.run()?)
}

/// What a file may make us read and copy, fixed by its size before any size field inside
/// it is believed: a pickle that claims a 1 TB storage, or an entry that inflates without
/// end, is refused before the memory is asked for.
struct Budget {
    file_len: u64,
    /// Bytes of archive entries still allowed to be read (inflated).
    read: u64,
    /// Bytes of tensor data still allowed to be produced.
    copy: u64,
}

impl Budget {
    fn new(file_len: u64) -> Self {
        // torch.save stores entries uncompressed; 4x leaves room for other zip tools' deflate.
        let read = file_len.saturating_mul(4).saturating_add(1 << 20);
        // Shared storages and views are copied once per tensor: 16x the data is generous.
        Budget { file_len, read, copy: read.saturating_mul(4) }
    }
}

fn read_entry(zip: &mut ZipArchive<File>, name: &str, budget: &mut Budget) -> Res<Vec<u8>> {
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

/// Containers nested deeper than this are refused: state dicts nest 3 deep, and deeper
/// values would be dropped and cloned by deep recursion.
const MAX_DEPTH: usize = 64;

/// Nesting depth of `v` (1 for a scalar). Every value is checked when it is nested, so the
/// recursion is at most `MAX_DEPTH` deep.
fn depth(v: &Value) -> usize {
    1 + match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(depth).max().unwrap_or(0),
        Value::Dict(pairs) => pairs.iter().map(|(k, v)| depth(k).max(depth(v))).max().unwrap_or(0),
        _ => 0,
    }
}

/// Values in `v`, itself included: what cloning it costs.
fn nodes(v: &Value) -> usize {
    1 + match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(nodes).sum(),
        Value::Dict(pairs) => pairs.iter().map(|(k, v)| nodes(k) + nodes(v)).sum(),
        _ => 0,
    }
}

/// The pickle objects a state dict is made of. Containers are values, not shared
/// references: a memoized dict or list that is mutated later is stale in the memo, which
/// only matters for objects referenced twice, and state dicts share only tensors and tuples.
#[derive(Clone)]
enum Value {
    Int(i64),
    Str(String),
    /// A value a state dict never needs to look into (None, bool, float, bytes): its type.
    Other(&'static str),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Python dicts never pickle duplicate keys, so pairs are kept in file order as is.
    Dict(Vec<(Value, Value)>),
    /// `module.name` of an allowed global.
    Global(String),
    /// A storage reference from a persistent id: zip entry `data/<key>`.
    Storage {
        key: String,
        kind: Kind,
        numel: i64,
    },
    Tensor(Rc<Tensor>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Str(_) => "str",
            Value::Other(name) => name,
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "class or function",
            Value::Storage { .. } => "storage",
            Value::Tensor(_) => "tensor",
        }
    }
}

/// torch's typed storage classes (`torch.FloatStorage`, ...) and their element types.
#[rustfmt::skip]
const STORAGES: [(&str, Kind); 12] = [
    ("FloatStorage", Kind::Float), ("DoubleStorage", Kind::Double), ("HalfStorage", Kind::Half),
    ("BFloat16Storage", Kind::BFloat16), ("LongStorage", Kind::Int64), ("IntStorage", Kind::Int),
    ("ShortStorage", Kind::Int16), ("CharStorage", Kind::Int8), ("ByteStorage", Kind::Uint8),
    ("BoolStorage", Kind::Bool), ("ComplexFloatStorage", Kind::ComplexFloat),
    ("ComplexDoubleStorage", Kind::ComplexDouble),
];

fn storage_kind(global: &str) -> Option<Kind> {
    let name = global.strip_prefix("torch.")?;
    STORAGES.iter().find(|(n, _)| *n == name).map(|&(_, kind)| kind)
}

const CALLABLE: [&str; 3] =
    ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"];

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    /// Stack lengths at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    zip: &'a mut ZipArchive<File>,
    prefix: String,
    /// Storage entries read so far: views of one storage read it once.
    storages: HashMap<String, Rc<Vec<u8>>>,
    budget: Budget,
    /// Values that memo copies may still create: repeated GETs of a memoized list appended
    /// to itself would otherwise grow exponentially.
    nodes: usize,
}

impl Unpickler<'_> {
    /// Runs to STOP and returns the pickled object.
    fn run(mut self) -> Res<Value> {
        loop {
            let at = self.pos;
            if let Some(top) = self.step().map_err(|e| format!("{e} (data.pkl byte {at})"))? {
                return Ok(top);
            }
        }
    }

    /// Executes one opcode; `Some` at STOP.
    fn step(&mut self) -> Res<Option<Value>> {
        let op = self.take(1)?[0];
        let v = match op {
            0x80 => return self.take(1).map(|_| None), // PROTO
            0x95 => return self.take(8).map(|_| None), // FRAME: only a buffering hint
            b'.' => return self.pop().map(Some),       // STOP
            b'(' => {
                self.marks.push(self.stack.len());
                return Ok(None);
            }
            b'c' => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(format!("{module}.{name}"))?
            }
            0x93 => {
                let name = self.pop_str()?;
                let module = self.pop_str()?;
                self.global(format!("{module}.{name}"))?
            }
            b'q' => return self.uint(1).and_then(|i| self.memoize(i as u32)).map(|_| None),
            b'r' => return self.uint(4).and_then(|i| self.memoize(i as u32)).map(|_| None),
            0x94 => return self.memoize(self.memo.len() as u32).map(|_| None),
            b'h' | b'j' => {
                let i = self.uint(if op == b'h' { 1 } else { 4 })? as u32;
                let v = self.memo.get(&i).ok_or_else(|| format!("memo entry {i} is missing"))?;
                self.nodes = self.nodes.checked_sub(nodes(v)).ok_or(TOO_MANY)?;
                v.clone()
            }
            b'}' => Value::Dict(vec![]),
            b']' => Value::List(vec![]),
            b')' => Value::Tuple(vec![]),
            b't' => Value::Tuple(nested(self.pop_mark()?)?),
            0x85..=0x87 => Value::Tuple(nested(self.pop_n((op - 0x84) as usize)?)?),
            b'J' => Value::Int(i32::from_le_bytes(self.take(4)?.try_into().unwrap()) as i64),
            b'K' => Value::Int(self.uint(1)? as i64),
            b'M' => Value::Int(self.uint(2)? as i64),
            0x8a => {
                let n = self.uint(1)? as usize;
                let bytes = self.take(n)?;
                if n > 8 {
                    return Err(format!("LONG1 of {n} bytes does not fit in 64 bits"));
                }
                // Two's complement, little-endian: sign-extend from the top byte.
                let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
                let mut le = [fill; 8];
                le[..n].copy_from_slice(bytes);
                Value::Int(i64::from_le_bytes(le))
            }
            b'G' => self.take(8).map(|_| Value::Other("float"))?,
            b'X' | 0x8c | 0x8d => {
                let width = if op == 0x8c {
                    1
                } else if op == b'X' {
                    4
                } else {
                    8
                };
                let n = self.uint(width)? as usize;
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| "string is not UTF-8")?;
                Value::Str(s.to_owned())
            }
            b'C' | b'B' => {
                let n = self.uint(if op == b'C' { 1 } else { 4 })? as usize;
                self.take(n).map(|_| Value::Other("bytes"))?
            }
            b'N' => Value::Other("None"),
            0x88 | 0x89 => Value::Other("bool"),
            b'a' | b'e' | b's' | b'u' => {
                let items = match op {
                    b'a' => vec![self.pop()?],
                    b's' => self.pop_n(2)?,
                    _ => self.pop_mark()?,
                };
                return self.add_items(items, matches!(op, b's' | b'u')).map(|_| None);
            }
            b'R' | 0x81 => {
                // REDUCE calls f(*args); NEWOBJ calls cls.__new__(cls, *args): the same for us.
                let args = self.pop()?;
                let f = self.pop()?;
                self.call(f, args)?
            }
            b'b' => {
                // OrderedDict's state is its `_metadata` (module versions): not needed.
                self.pop()?;
                return match self.stack.last() {
                    Some(Value::Dict(_)) => Ok(None),
                    _ => Err(format!("BUILD on a {}", self.top_name())),
                };
            }
            b'Q' => {
                let pid = self.pop()?;
                self.storage(pid)?
            }
            _ => return Err(format!("unsupported pickle opcode 0x{op:02x}")),
        };
        self.stack.push(v);
        Ok(None)
    }

    /// APPEND(S) to the list, or SETITEM(S) `[k, v, k, v, ...]` to the dict, atop the stack.
    fn add_items(&mut self, items: Vec<Value>, to_dict: bool) -> Res<()> {
        let items = nested(items)?;
        match self.stack.last_mut() {
            Some(Value::List(list)) if !to_dict => list.extend(items),
            Some(Value::Dict(dict)) if to_dict && items.len() % 2 == 0 => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    dict.push((k, v));
                }
            }
            _ => return Err(format!("cannot add {} items to a {}", items.len(), self.top_name())),
        }
        Ok(())
    }

    fn top_name(&self) -> &'static str {
        self.stack.last().map_or("empty stack", Value::type_name)
    }

    fn take(&mut self, n: usize) -> Res<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or("data.pkl ends early")?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// An unsigned little-endian integer of `n` <= 8 bytes.
    fn uint(&mut self, n: usize) -> Res<u64> {
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(self.take(n)?);
        Ok(u64::from_le_bytes(le))
    }

    /// A newline-terminated ASCII argument (GLOBAL's module and name).
    fn line(&mut self) -> Res<String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("data.pkl ends early")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Res<Value> {
        self.stack.pop().ok_or_else(|| "stack underflow".into())
    }

    fn pop_n(&mut self, n: usize) -> Res<Vec<Value>> {
        let from = self.stack.len().checked_sub(n).ok_or("stack underflow")?;
        Ok(self.stack.split_off(from))
    }

    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let mark = self.marks.pop().ok_or("no MARK on the stack")?;
        let from = mark.min(self.stack.len());
        Ok(self.stack.split_off(from))
    }

    fn pop_str(&mut self) -> Res<String> {
        match self.pop()? {
            Value::Str(s) => Ok(s),
            v => Err(format!("expected a str for STACK_GLOBAL, got a {}", v.type_name())),
        }
    }

    fn memoize(&mut self, i: u32) -> Res<()> {
        let top = self.stack.last().ok_or("MEMOIZE on an empty stack")?;
        self.nodes = self.nodes.checked_sub(nodes(top)).ok_or(TOO_MANY)?;
        self.memo.insert(i, top.clone());
        Ok(())
    }

    /// Allows only the few globals a state dict needs: nothing else is ever "imported".
    fn global(&self, name: String) -> Res<Value> {
        if CALLABLE.contains(&name.as_str()) || storage_kind(&name).is_some() {
            return Ok(Value::Global(name));
        }
        Err(format!(
            "unsupported global `{name}`: not a state dict (only str -> tensor dicts can be read, not pickled models or other objects)"
        ))
    }

    fn call(&mut self, f: Value, args: Value) -> Res<Value> {
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
    fn storage(&self, pid: Value) -> Res<Value> {
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

const TOO_MANY: &str = "the pickle copies more values than a state dict of its size can hold; the file is damaged";

/// `items` once they are known to nest within `MAX_DEPTH`.
fn nested(items: Vec<Value>) -> Res<Vec<Value>> {
    if items.iter().any(|v| depth(v) >= MAX_DEPTH) {
        return Err(format!("values nest more than {MAX_DEPTH} deep; not a state dict"));
    }
    Ok(items)
}

fn ints(v: &Value) -> Res<Vec<i64>> {
    let Value::Tuple(items) = v else {
        return Err(format!("expected a tuple of ints, got a {}", v.type_name()));
    };
    items
        .iter()
        .map(|x| if let Value::Int(i) = x { Ok(*i) } else { Err(format!("expected an int, got a {}", x.type_name())) })
        .collect()
}

/// The top-level object as `(name, tensor)` pairs, or why it is not a state dict.
fn state_dict(top: Value) -> Res<Vec<(String, Tensor)>> {
    let Value::Dict(items) = top else {
        return Err(format!("not a state dict: the file holds a {}, not a dict of tensors", top.type_name()));
    };
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Ok((k, Rc::try_unwrap(t).unwrap_or_else(|t| t.shallow_clone()))),
            (Value::Str(k), v) => Err(format!("not a state dict: `{k}` holds a {}, not a tensor", v.type_name())),
            (k, _) => Err(format!("not a state dict: a key is a {}, not a str", k.type_name())),
        })
        .collect()
}
