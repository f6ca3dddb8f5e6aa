//! The few ONNX protobuf messages an exported classifier needs, written by hand.
//!
//! Protobuf's wire format is small: each field is a key (`number << 3 | wire type`) then a
//! varint, or a length and bytes (strings, packed data, nested messages). Writing the five
//! messages ONNX needs here takes less code than a protobuf compiler in the build (which would
//! need `protoc` on every machine that builds the app). Field numbers are `onnx.proto3`'s.

/// A message being written: its fields, in order.
#[derive(Debug, Default, Clone)]
pub struct Message(Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Message {
    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }

    /// An integer field (int32, int64 and enums share the varint encoding; negative numbers
    /// take ten bytes, as protobuf's two's complement says).
    pub fn int(mut self, field: u32, v: i64) -> Self {
        self.key(field, 0);
        varint(&mut self.0, v as u64);
        self
    }

    /// Each value as its own integer field (the unpacked form every reader accepts).
    pub fn ints(self, field: u32, vs: &[i64]) -> Self {
        vs.iter().fold(self, |m, &v| m.int(field, v))
    }

    /// A 32-bit float field.
    pub fn float(mut self, field: u32, v: f32) -> Self {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A bytes field.
    pub fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.key(field, 2);
        varint(&mut self.0, v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }

    /// A string field.
    pub fn string(self, field: u32, v: &str) -> Self {
        self.bytes(field, v.as_bytes())
    }

    /// A nested message.
    pub fn message(self, field: u32, m: &Message) -> Self {
        self.bytes(field, &m.0)
    }

    /// The encoded message.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// ONNX's element type of float32 tensors (`TensorProto.DataType.FLOAT`).
pub const FLOAT: i64 = 1;
/// ONNX's element type of int64 tensors.
pub const INT64: i64 = 7;

/// A `TensorProto`: `name`, `dims`, element type and little-endian `raw_data`.
pub fn tensor(name: &str, dims: &[usize], data_type: i64, raw: &[u8]) -> Message {
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    Message::default()
        .ints(1, &dims)
        .int(2, data_type)
        .string(8, name)
        .bytes(9, raw)
}

/// A node attribute (`AttributeProto`).
#[derive(Debug, Clone)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(&'static str),
}

fn attribute(name: &str, value: &Attr) -> Message {
    // AttributeProto.type: FLOAT 1, INT 2, STRING 3, INTS 7.
    let m = Message::default().string(1, name);
    match value {
        Attr::Float(f) => m.float(2, *f).int(20, 1),
        Attr::Int(i) => m.int(3, *i).int(20, 2),
        Attr::Ints(is) => m.ints(8, is).int(20, 7),
        Attr::Str(v) => m.string(4, v).int(20, 3),
    }
}

/// A `NodeProto`: `op_type` from `inputs` to `outputs`, with attributes.
pub fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: &[(&str, Attr)],
) -> Message {
    let mut m = Message::default();
    for i in inputs {
        m = m.string(1, i);
    }
    for o in outputs {
        m = m.string(2, o);
    }
    m = m.string(3, name).string(4, op_type);
    for (n, a) in attrs {
        m = m.message(5, &attribute(n, a));
    }
    m
}

/// One dimension of a declared shape: a size, or a named symbol (the batch `N`).
#[derive(Debug, Clone)]
pub enum Dim {
    Size(usize),
    Symbol(&'static str),
}

/// A `ValueInfoProto` of a float32 tensor of `shape`.
pub fn value_info(name: &str, shape: &[Dim]) -> Message {
    let shape = shape.iter().fold(Message::default(), |m, d| {
        let dim = match d {
            Dim::Size(s) => Message::default().int(1, *s as i64),
            Dim::Symbol(s) => Message::default().string(2, s),
        };
        m.message(1, &dim)
    });
    let tensor_type = Message::default().int(1, FLOAT).message(2, &shape);
    let type_proto = Message::default().message(1, &tensor_type);
    Message::default().string(1, name).message(2, &type_proto)
}

/// A `StringStringEntryProto` (model metadata).
pub fn entry(key: &str, value: &str) -> Message {
    Message::default().string(1, key).string(2, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encodings protobuf's documentation gives as examples.
    #[test]
    fn encodes_like_protobuf() {
        // "150 as field 1" is 08 96 01; the string "testing" as field 2 is 12 07 74 65 ...
        assert_eq!(
            Message::default().int(1, 150).into_bytes(),
            [0x08, 0x96, 0x01]
        );
        assert_eq!(
            Message::default().string(2, "testing").into_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        // -1 as int64 takes ten bytes.
        assert_eq!(Message::default().int(1, -1).into_bytes().len(), 11);
        assert_eq!(
            Message::default().float(2, 1.0).into_bytes(),
            [0x15, 0, 0, 0x80, 0x3f]
        );
    }
}
