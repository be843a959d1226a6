//! The values a state dict's pickle is made of, and the checks that keep a hostile file
//! from making them deep or many.
use super::Res;
use std::rc::Rc;
use tch::{Kind, Tensor};

/// Containers nested deeper than this are refused: state dicts nest 3 deep, and deeper
/// values would be dropped and cloned by deep recursion.
pub(super) const MAX_DEPTH: usize = 64;

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
pub(super) fn nodes(v: &Value) -> usize {
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
pub(super) enum Value {
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
    pub(super) fn type_name(&self) -> &'static str {
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

pub(super) fn storage_kind(global: &str) -> Option<Kind> {
    let name = global.strip_prefix("torch.")?;
    STORAGES.iter().find(|(n, _)| *n == name).map(|&(_, kind)| kind)
}

pub(super) const CALLABLE: [&str; 3] =
    ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"];

pub(super) const TOO_MANY: &str =
    "the pickle copies more values than a state dict of its size can hold; the file is damaged";

/// `items` once they are known to nest within `MAX_DEPTH`.
pub(super) fn nested(items: Vec<Value>) -> Res<Vec<Value>> {
    if items.iter().any(|v| depth(v) >= MAX_DEPTH) {
        return Err(format!("values nest more than {MAX_DEPTH} deep; not a state dict"));
    }
    Ok(items)
}

pub(super) fn ints(v: &Value) -> Res<Vec<i64>> {
    let Value::Tuple(items) = v else {
        return Err(format!("expected a tuple of ints, got a {}", v.type_name()));
    };
    items
        .iter()
        .map(|x| if let Value::Int(i) = x { Ok(*i) } else { Err(format!("expected an int, got a {}", x.type_name())) })
        .collect()
}

/// The top-level object as `(name, tensor)` pairs, or why it is not a state dict.
pub(super) fn state_dict(top: Value) -> Res<Vec<(String, Tensor)>> {
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
