//! `tf.train.Example` and `tf.train.SequenceExample` protobufs, decoded by hand.
//!
//! The messages use three wire types (varint, 32-bit, length-delimited) and six message types
//! (`tensorflow/core/example/{example,feature}.proto`); a ~150-line decoder avoids `prost` and its
//! proc-macro build. Both packed and unpacked repeated scalars are accepted, as protobuf requires.
//!
//! ```
//! use magma_data::example::{encode_example, Example, Feature};
//!
//! let bytes = encode_example(&[
//!     ("steps/action", Feature::Floats(vec![0.5, -1.0])),
//!     ("steps/language_instruction", Feature::Bytes(vec![b"pick up the can".to_vec()])),
//! ]);
//! let example = Example::decode(&bytes)?;
//! assert_eq!(example.floats("steps/action")?, &[0.5, -1.0]);
//! assert_eq!(example.string("steps/language_instruction", 0)?, "pick up the can");
//! # Ok::<(), magma_data::DataError>(())
//! ```

use std::collections::BTreeMap;

use crate::{DataError, Result};

/// One feature value list.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    /// `bytes_list` (strings, encoded images).
    Bytes(Vec<Vec<u8>>),
    /// `float_list`.
    Floats(Vec<f32>),
    /// `int64_list`.
    Ints(Vec<i64>),
}

impl Feature {
    fn kind(&self) -> &'static str {
        match self {
            Feature::Bytes(_) => "bytes_list",
            Feature::Floats(_) => "float_list",
            Feature::Ints(_) => "int64_list",
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Feature::Bytes(v) => v.len(),
            Feature::Floats(v) => v.len(),
            Feature::Ints(v) => v.len(),
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A decoded `tf.train.Example` (its `features` map).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Example {
    /// Feature name → values.
    pub features: BTreeMap<String, Feature>,
}

/// A decoded `tf.train.SequenceExample`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceExample {
    /// Per-sequence features.
    pub context: Example,
    /// Per-step features: name → one feature per step.
    pub feature_lists: BTreeMap<String, Vec<Feature>>,
}

impl Example {
    /// Decodes a serialised `tf.train.Example`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut example = Example::default();
        for field in Fields::new(bytes) {
            let (number, value) = field?;
            if number == 1 {
                example.features = decode_features(value.bytes("Example.features")?)?;
            }
        }
        Ok(example)
    }

    /// The feature `name`, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Feature> {
        self.features
            .get(name)
            .ok_or_else(|| DataError::Proto(format!("feature `{name}` is missing")))
    }

    /// The float list `name`.
    pub fn floats(&self, name: &str) -> Result<&[f32]> {
        match self.get(name)? {
            Feature::Floats(v) => Ok(v),
            other => Err(wrong_kind(name, "float_list", other)),
        }
    }

    /// The int64 list `name`.
    pub fn ints(&self, name: &str) -> Result<&[i64]> {
        match self.get(name)? {
            Feature::Ints(v) => Ok(v),
            other => Err(wrong_kind(name, "int64_list", other)),
        }
    }

    /// The bytes list `name`.
    pub fn bytes(&self, name: &str) -> Result<&[Vec<u8>]> {
        match self.get(name)? {
            Feature::Bytes(v) => Ok(v),
            other => Err(wrong_kind(name, "bytes_list", other)),
        }
    }

    /// Entry `index` of the bytes list `name` as UTF-8 text.
    pub fn string(&self, name: &str, index: usize) -> Result<String> {
        let list = self.bytes(name)?;
        let raw = list.get(index).ok_or_else(|| {
            DataError::Proto(format!(
                "feature `{name}` has {} values, wanted index {index}",
                list.len()
            ))
        })?;
        String::from_utf8(raw.clone())
            .map_err(|_| DataError::Proto(format!("feature `{name}`[{index}] is not UTF-8")))
    }
}

impl SequenceExample {
    /// Decodes a serialised `tf.train.SequenceExample`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut seq = SequenceExample::default();
        for field in Fields::new(bytes) {
            let (number, value) = field?;
            match number {
                1 => {
                    seq.context.features = decode_features(value.bytes("SequenceExample.context")?)?
                }
                2 => {
                    for entry in Fields::new(value.bytes("SequenceExample.feature_lists")?) {
                        let (n, v) = entry?;
                        if n == 1 {
                            let (key, list) =
                                decode_map_entry(v.bytes("FeatureLists.feature_list")?, |b| {
                                    let mut features = Vec::new();
                                    for f in Fields::new(b) {
                                        let (n, v) = f?;
                                        if n == 1 {
                                            features.push(decode_feature(
                                                v.bytes("FeatureList.feature")?,
                                            )?);
                                        }
                                    }
                                    Ok(features)
                                })?;
                            seq.feature_lists.insert(key, list);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(seq)
    }
}

fn wrong_kind(name: &str, wanted: &str, got: &Feature) -> DataError {
    DataError::Proto(format!(
        "feature `{name}` is a {}, expected {wanted}",
        got.kind()
    ))
}

fn decode_features(bytes: &[u8]) -> Result<BTreeMap<String, Feature>> {
    let mut map = BTreeMap::new();
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        if number == 1 {
            let (key, feature) =
                decode_map_entry(value.bytes("Features.feature")?, decode_feature)?;
            map.insert(key, feature);
        }
    }
    Ok(map)
}

/// A protobuf map entry: key = field 1 (string), value = field 2 (message).
fn decode_map_entry<T: Default>(
    bytes: &[u8],
    value: impl Fn(&[u8]) -> Result<T>,
) -> Result<(String, T)> {
    let mut key = String::new();
    let mut decoded = None;
    for field in Fields::new(bytes) {
        let (number, v) = field?;
        match number {
            1 => {
                key = String::from_utf8(v.bytes("map key")?.to_vec())
                    .map_err(|_| DataError::Proto("feature name is not UTF-8".into()))?
            }
            2 => decoded = Some(value(v.bytes("map value")?)?),
            _ => {}
        }
    }
    Ok((key, decoded.unwrap_or_default()))
}

impl Default for Feature {
    fn default() -> Self {
        Feature::Bytes(Vec::new())
    }
}

fn decode_feature(bytes: &[u8]) -> Result<Feature> {
    let mut feature = Feature::default();
    for field in Fields::new(bytes) {
        let (number, value) = field?;
        let list = value.bytes("Feature.kind")?;
        feature = match number {
            1 => {
                let mut out = Vec::new();
                for f in Fields::new(list) {
                    let (n, v) = f?;
                    if n == 1 {
                        out.push(v.bytes("BytesList.value")?.to_vec());
                    }
                }
                Feature::Bytes(out)
            }
            2 => {
                let mut out = Vec::new();
                for f in Fields::new(list) {
                    match f? {
                        (1, Value::Fixed32(bits)) => out.push(f32::from_bits(bits)),
                        (1, Value::Bytes(packed)) => {
                            if packed.len() % 4 != 0 {
                                return Err(DataError::Proto(
                                    "packed float_list length is not a multiple of 4".into(),
                                ));
                            }
                            out.extend(
                                packed
                                    .chunks_exact(4)
                                    .map(|c| f32::from_le_bytes(c.try_into().expect("4"))),
                            );
                        }
                        (1, other) => {
                            return Err(DataError::Proto(format!(
                                "float_list value has wire type {}",
                                other.wire_type()
                            )))
                        }
                        _ => {}
                    }
                }
                Feature::Floats(out)
            }
            3 => {
                let mut out = Vec::new();
                for f in Fields::new(list) {
                    match f? {
                        (1, Value::Varint(v)) => out.push(v as i64),
                        (1, Value::Bytes(packed)) => {
                            let mut pos = 0;
                            while pos < packed.len() {
                                out.push(read_varint(packed, &mut pos)? as i64);
                            }
                        }
                        (1, other) => {
                            return Err(DataError::Proto(format!(
                                "int64_list value has wire type {}",
                                other.wire_type()
                            )))
                        }
                        _ => {}
                    }
                }
                Feature::Ints(out)
            }
            _ => continue,
        };
    }
    Ok(feature)
}

/// A field value by wire type.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    /// Skipped: no field of these messages is 64-bit fixed.
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64 => 1,
            Value::Bytes(_) => 2,
            Value::Fixed32(_) => 5,
        }
    }

    fn bytes(self, what: &str) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            other => Err(DataError::Proto(format!(
                "{what}: expected a length-delimited field, got wire type {}",
                other.wire_type()
            ))),
        }
    }
}

/// Iterates over the top-level fields of a message.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields {
            bytes,
            pos: 0,
            failed: false,
        }
    }

    fn field(&mut self) -> Result<(u64, Value<'a>)> {
        let at = self.pos;
        let key = read_varint(self.bytes, &mut self.pos)?;
        let number = key >> 3;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(self.bytes, &mut self.pos)?),
            1 => {
                self.take(8, at)?;
                Value::Fixed64
            }
            2 => {
                let len = read_varint(self.bytes, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| {
                    DataError::Proto(format!("length {len} too large at byte {at}"))
                })?;
                Value::Bytes(self.take(len, at)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4, at)?.try_into().expect("4"))),
            wt => {
                return Err(DataError::Proto(format!(
                    "unsupported wire type {wt} at byte {at}"
                )))
            }
        };
        Ok((number, value))
    }

    fn take(&mut self, n: usize, at: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| {
                DataError::Proto(format!(
                    "field at byte {at} needs {n} bytes, {} left (truncated message)",
                    self.bytes.len() - self.pos
                ))
            })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Result<u64> {
    let start = *pos;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes
            .get(*pos)
            .ok_or_else(|| DataError::Proto(format!("truncated varint at byte {start}")))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DataError::Proto(format!(
        "varint longer than 10 bytes at byte {start}"
    )))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    put_varint(out, (number << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Serialises a `tf.train.Example` (packed scalars, as TensorFlow writes them). Used to build test
/// inputs and by tools that emit TFRecords.
pub fn encode_example(features: &[(&str, Feature)]) -> Vec<u8> {
    let mut map = Vec::new();
    for (name, feature) in features {
        let mut list = Vec::new();
        let number = match feature {
            Feature::Bytes(values) => {
                for v in values {
                    put_bytes(&mut list, 1, v);
                }
                1
            }
            Feature::Floats(values) => {
                let packed: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                put_bytes(&mut list, 1, &packed);
                2
            }
            Feature::Ints(values) => {
                let mut packed = Vec::new();
                for &v in values {
                    put_varint(&mut packed, v as u64);
                }
                put_bytes(&mut list, 1, &packed);
                3
            }
        };
        let mut feat = Vec::new();
        put_bytes(&mut feat, number, &list);
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, name.as_bytes());
        put_bytes(&mut entry, 2, &feat);
        put_bytes(&mut map, 1, &entry);
    }
    let mut out = Vec::new();
    put_bytes(&mut out, 1, &map);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_ints_and_unpacked_floats_decode() {
        // int64 -5 as a ten-byte varint; floats written unpacked (wire type 5) one by one.
        let mut ints = Vec::new();
        put_varint(&mut ints, (-5i64) as u64);
        let mut ilist = Vec::new();
        put_bytes(&mut ilist, 1, &ints);
        let mut flist = Vec::new();
        for v in [1.5f32, 2.5] {
            put_varint(&mut flist, (1 << 3) | 5);
            flist.extend_from_slice(&v.to_le_bytes());
        }
        let mut map = Vec::new();
        for (name, number, list) in [("i", 3, &ilist), ("f", 2, &flist)] {
            let mut feat = Vec::new();
            put_bytes(&mut feat, number, list);
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, name.as_bytes());
            put_bytes(&mut entry, 2, &feat);
            put_bytes(&mut map, 1, &entry);
        }
        let mut bytes = Vec::new();
        put_bytes(&mut bytes, 1, &map);
        let ex = Example::decode(&bytes).unwrap();
        assert_eq!(ex.ints("i").unwrap(), &[-5]);
        assert_eq!(ex.floats("f").unwrap(), &[1.5, 2.5]);
        assert!(ex
            .bytes("f")
            .unwrap_err()
            .to_string()
            .contains("is a float_list"));
    }

    #[test]
    fn sequence_example_context_and_feature_lists_decode() {
        // SequenceExample { context = 1: Features, feature_lists = 2: FeatureLists { map<string,
        // FeatureList { repeated Feature feature = 1 }> feature_list = 1 } }.
        let context = encode_example(&[("episode", Feature::Ints(vec![7]))]);
        let context_features = match Fields::new(&context).next().unwrap().unwrap() {
            (1, Value::Bytes(b)) => b.to_vec(),
            _ => unreachable!(),
        };
        let step = |v: f32| {
            let ex = encode_example(&[("x", Feature::Floats(vec![v]))]);
            // The inner Feature message of the single map entry.
            let features = match Fields::new(&ex).next().unwrap().unwrap() {
                (1, Value::Bytes(b)) => b.to_vec(),
                _ => unreachable!(),
            };
            let entry = match Fields::new(&features).next().unwrap().unwrap() {
                (1, Value::Bytes(b)) => b.to_vec(),
                _ => unreachable!(),
            };
            Fields::new(&entry)
                .map(|f| f.unwrap())
                .find_map(|(n, v)| (n == 2).then(|| v.bytes("").unwrap().to_vec()))
                .unwrap()
        };
        let mut list = Vec::new();
        put_bytes(&mut list, 1, &step(0.5));
        put_bytes(&mut list, 1, &step(-2.0));
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, b"steps/x");
        put_bytes(&mut entry, 2, &list);
        let mut lists = Vec::new();
        put_bytes(&mut lists, 1, &entry);
        let mut bytes = Vec::new();
        put_bytes(&mut bytes, 1, &context_features);
        put_bytes(&mut bytes, 2, &lists);
        let seq = SequenceExample::decode(&bytes).unwrap();
        assert_eq!(seq.context.ints("episode").unwrap(), &[7]);
        assert_eq!(
            seq.feature_lists["steps/x"],
            vec![Feature::Floats(vec![0.5]), Feature::Floats(vec![-2.0])]
        );
    }

    #[test]
    fn truncated_messages_are_errors_not_panics() {
        let bytes = encode_example(&[("a", Feature::Bytes(vec![vec![7; 40]]))]);
        for cut in 1..bytes.len() {
            assert!(Example::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
