//! The pickle machine: the opcodes `torch.save` writes for a state dict, and nothing else.
//! Each opcode either changes the machine's state ([`Unpickler::control`]) or pushes one
//! value: a scalar ([`Unpickler::scalar`]), a container, or an object made from what is
//! on the stack ([`Unpickler::object`]). What torch's objects become (its globals, the
//! tensors rebuilt from storages) is in `torch`.
use super::value::{nested, nodes, Value, TOO_MANY};
use super::{Budget, Res};
use std::collections::HashMap;
use std::fs::File;
use std::rc::Rc;
use zip::ZipArchive;

mod torch;

/// The pickle opcodes this machine knows, by their names in Python's `pickletools`.
mod op {
    pub const PROTO: u8 = 0x80;
    /// Only a buffering hint.
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const MARK: u8 = b'(';
    pub const GLOBAL: u8 = b'c';
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const MEMOIZE: u8 = 0x94;
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const EMPTY_DICT: u8 = b'}';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE3: u8 = 0x87;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINBYTES: u8 = b'B';
    pub const NONE: u8 = b'N';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const REDUCE: u8 = b'R';
    pub const NEWOBJ: u8 = 0x81;
    pub const BUILD: u8 = b'b';
    pub const BINPERSID: u8 = b'Q';
}

pub(super) struct Unpickler<'a> {
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

impl<'a> Unpickler<'a> {
    pub(super) fn new(data: &'a [u8], zip: &'a mut ZipArchive<File>, prefix: String, budget: Budget) -> Self {
        Unpickler {
            data,
            pos: 0,
            stack: vec![],
            marks: vec![],
            memo: HashMap::new(),
            zip,
            prefix,
            storages: HashMap::new(),
            budget,
            nodes: data.len().saturating_mul(16).saturating_add(1 << 16),
        }
    }
}

impl Unpickler<'_> {
    /// Runs to STOP and returns the pickled object.
    pub(super) fn run(mut self) -> Res<Value> {
        loop {
            let at = self.pos;
            if let Some(top) = self.step().map_err(|e| format!("{e} (data.pkl byte {at})"))? {
                return Ok(top);
            }
        }
    }

    /// Executes one opcode; `Some` at STOP.
    fn step(&mut self) -> Res<Option<Value>> {
        use op::*;
        let code = self.take(1)?[0];
        match code {
            STOP => return self.pop().map(Some),
            PROTO | FRAME | MARK | BINPUT | LONG_BINPUT | MEMOIZE | APPEND | APPENDS | SETITEM | SETITEMS | BUILD => {
                self.control(code)?
            }
            _ => {
                let v = self.value(code)?;
                self.stack.push(v);
            }
        }
        Ok(None)
    }

    /// The opcodes that push nothing: framing, marks, the memo, container updates.
    fn control(&mut self, code: u8) -> Res<()> {
        use op::*;
        match code {
            PROTO => self.take(1).map(|_| ()),
            FRAME => self.take(8).map(|_| ()),
            MARK => {
                self.marks.push(self.stack.len());
                Ok(())
            }
            BINPUT => self.uint(1).and_then(|i| self.memoize(i as u32)),
            LONG_BINPUT => self.uint(4).and_then(|i| self.memoize(i as u32)),
            MEMOIZE => self.memoize(self.memo.len() as u32),
            APPEND | APPENDS | SETITEM | SETITEMS => {
                let items = match code {
                    APPEND => vec![self.pop()?],
                    SETITEM => self.pop_n(2)?,
                    _ => self.pop_mark()?,
                };
                self.add_items(items, matches!(code, SETITEM | SETITEMS))
            }
            BUILD => {
                // OrderedDict's state is its `_metadata` (module versions): not needed.
                self.pop()?;
                match self.stack.last() {
                    Some(Value::Dict(_)) => Ok(()),
                    _ => Err(format!("BUILD on a {}", self.top_name())),
                }
            }
            _ => unreachable!("not a control opcode: 0x{code:02x}"),
        }
    }

    /// The value an opcode pushes.
    fn value(&mut self, code: u8) -> Res<Value> {
        use op::*;
        match code {
            EMPTY_DICT => Ok(Value::Dict(vec![])),
            EMPTY_LIST => Ok(Value::List(vec![])),
            EMPTY_TUPLE => Ok(Value::Tuple(vec![])),
            TUPLE => Ok(Value::Tuple(nested(self.pop_mark()?)?)),
            TUPLE1..=TUPLE3 => Ok(Value::Tuple(nested(self.pop_n((code - TUPLE1 + 1) as usize)?)?)),
            BININT | BININT1 | BININT2 | LONG1 | BINFLOAT | BINUNICODE | SHORT_BINUNICODE | BINUNICODE8
            | SHORT_BINBYTES | BINBYTES | NONE | NEWTRUE | NEWFALSE => self.scalar(code),
            GLOBAL | STACK_GLOBAL | BINGET | LONG_BINGET | REDUCE | NEWOBJ | BINPERSID => self.object(code),
            _ => Err(format!("unsupported pickle opcode 0x{code:02x}")),
        }
    }

    /// Numbers, strings and the values a state dict never looks into.
    fn scalar(&mut self, code: u8) -> Res<Value> {
        use op::*;
        Ok(match code {
            BININT => Value::Int(i32::from_le_bytes(self.take(4)?.try_into().unwrap()) as i64),
            BININT1 => Value::Int(self.uint(1)? as i64),
            BININT2 => Value::Int(self.uint(2)? as i64),
            LONG1 => Value::Int(self.long1()?),
            BINFLOAT => self.take(8).map(|_| Value::Other("float"))?,
            BINUNICODE | SHORT_BINUNICODE | BINUNICODE8 => {
                let width = match code {
                    SHORT_BINUNICODE => 1,
                    BINUNICODE => 4,
                    _ => 8,
                };
                let n = self.uint(width)? as usize;
                let s = std::str::from_utf8(self.take(n)?).map_err(|_| "string is not UTF-8")?;
                Value::Str(s.to_owned())
            }
            SHORT_BINBYTES | BINBYTES => {
                let n = self.uint(if code == SHORT_BINBYTES { 1 } else { 4 })? as usize;
                self.take(n).map(|_| Value::Other("bytes"))?
            }
            NONE => Value::Other("None"),
            NEWTRUE | NEWFALSE => Value::Other("bool"),
            _ => unreachable!("not a scalar opcode: 0x{code:02x}"),
        })
    }

    /// LONG1: a two's complement little-endian integer of up to 8 bytes.
    fn long1(&mut self) -> Res<i64> {
        let n = self.uint(1)? as usize;
        let bytes = self.take(n)?;
        if n > 8 {
            return Err(format!("LONG1 of {n} bytes does not fit in 64 bits"));
        }
        // Sign-extend from the top byte.
        let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) { 0xff } else { 0 };
        let mut le = [fill; 8];
        le[..n].copy_from_slice(bytes);
        Ok(i64::from_le_bytes(le))
    }

    /// Globals, memo reads, calls and storages: values made from the file's references.
    fn object(&mut self, code: u8) -> Res<Value> {
        use op::*;
        match code {
            GLOBAL => {
                let module = self.line()?;
                let name = self.line()?;
                self.global(format!("{module}.{name}"))
            }
            STACK_GLOBAL => {
                let name = self.pop_str()?;
                let module = self.pop_str()?;
                self.global(format!("{module}.{name}"))
            }
            BINGET | LONG_BINGET => {
                let i = self.uint(if code == BINGET { 1 } else { 4 })? as u32;
                let v = self.memo.get(&i).ok_or_else(|| format!("memo entry {i} is missing"))?;
                self.nodes = self.nodes.checked_sub(nodes(v)).ok_or(TOO_MANY)?;
                Ok(v.clone())
            }
            REDUCE | NEWOBJ => {
                // REDUCE calls f(*args); NEWOBJ calls cls.__new__(cls, *args): the same for us.
                let args = self.pop()?;
                let f = self.pop()?;
                self.call(f, args)
            }
            BINPERSID => {
                let pid = self.pop()?;
                self.storage(pid)
            }
            _ => unreachable!("not an object opcode: 0x{code:02x}"),
        }
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
}
