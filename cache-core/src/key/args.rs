//! The serializer of a default key's arguments: MessagePack as `rmp_serde` writes it (named
//! struct fields, the default byte mode), byte for byte, so that keys stored by earlier releases
//! are still found, with two exceptions where `rmp_serde`'s form is not a function of the value
//! alone or not one-to-one:
//!
//! - `Some(x)` is `x`, as in `rmp_serde`, unless `x` is written as nil (`None`, `()`) or as the
//!   marker below: then `None` and `Some(None)` (or `Some(())`) would be the same bytes, and one
//!   would be served for the other. Such an `x` is replaced by a marker that counts the `Some`s,
//!   a MessagePack extension value (`fixext4`, type [`SOME_EXT`], the count as a big-endian
//!   `u32`) that no `Serialize` impl writes (only `rmp_serde`'s `_ExtStruct` writes extensions).
//! - A map of known length (`HashMap`, `BTreeMap`, ...) has its entries sorted by their encoded
//!   bytes: a `HashMap` iterates in a different order in every process, and its key would
//!   differ for equal maps. A map of unknown length (the fields of a struct with
//!   `#[serde(flatten)]`) is left in its order, which the struct fixes.
//!
//! Scalars are written by `rmp_serde` itself; only the compound forms are spelled out here.

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
};

use super::render::ArgBytes;

pub(super) type Error = rmp_serde::encode::Error;

/// The extension type of the marker that stands for `Some` around a nil (see the module docs).
pub(super) const SOME_EXT: u8 = 0x53;

/// Writes one value into an [`ArgBytes`].
pub(super) struct KeySerializer<'a> {
    pub(super) out: &'a mut ArgBytes,
}

impl KeySerializer<'_> {
    /// `rmp_serde`'s serializer over the same output, for a scalar (the default configuration:
    /// only structs depend on the configuration, and they are written here).
    #[inline(always)]
    fn rmp(&mut self) -> rmp_serde::Serializer<&mut ArgBytes> {
        rmp_serde::Serializer::new(&mut *self.out)
    }
}

/// The header of a MessagePack array (`0x90`) or map (`0x80`) of `len` elements, in the smallest
/// form, as `rmp::encode::write_array_len` / `write_map_len` write it.
#[inline(always)]
fn header(out: &mut ArgBytes, fix: u8, len: usize) {
    let len = len as u32;
    if len < 16 {
        out.push(&[fix | len as u8]);
    } else if len <= u32::from(u16::MAX) {
        // `0xdc`/`0xde`: array 16/map 16; `0xdd`/`0xdf`: the 32-bit forms.
        let tag = if fix == 0x90 { 0xdc } else { 0xde };
        out.push(&[tag]);
        out.push(&(len as u16).to_be_bytes());
    } else {
        let tag = if fix == 0x90 { 0xdd } else { 0xdf };
        out.push(&[tag]);
        out.push(&len.to_be_bytes());
    }
}

const ARRAY: u8 = 0x90;
const MAP: u8 = 0x80;

fn write_str(out: &mut ArgBytes, s: &str) -> Result<(), Error> {
    ser::Serializer::serialize_str(&mut rmp_serde::Serializer::new(out), s)
}

macro_rules! scalars {
    ($($method:ident($t:ty)),* $(,)?) => {$(
        #[inline]
        fn $method(mut self, v: $t) -> Result<(), Error> {
            ser::Serializer::$method(&mut self.rmp(), v)
        }
    )*};
}

impl<'a> ser::Serializer for KeySerializer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Map<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    // `rmp_serde`'s default: types with two forms (addresses, times) take the compact one.
    fn is_human_readable(&self) -> bool {
        false
    }

    scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
    );

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
        let start = self.out.len();
        value.serialize(KeySerializer {
            out: &mut *self.out,
        })?;
        let somes = match &self.out.as_bytes()[start..] {
            [0xc0] => 0,
            [0xd6, SOME_EXT, count @ ..] => {
                u32::from_be_bytes(count.try_into().unwrap_or_default())
            }
            _ => return Ok(()),
        };
        self.out.truncate(start);
        self.out.push(&[0xd6, SOME_EXT]);
        self.out.push(&(somes + 1).to_be_bytes());
        Ok(())
    }

    fn serialize_unit(mut self) -> Result<(), Error> {
        ser::Serializer::serialize_unit(&mut self.rmp())
    }

    fn serialize_unit_struct(mut self, name: &'static str) -> Result<(), Error> {
        ser::Serializer::serialize_unit_struct(&mut self.rmp(), name)
    }

    fn serialize_unit_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        ser::Serializer::serialize_unit_variant(&mut self.rmp(), name, index, variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        if name == rmp_serde::MSGPACK_EXT_STRUCT_NAME {
            // `rmp_serde`'s extension values: its own business, written by it.
            return ser::Serializer::serialize_newtype_struct(&mut self.rmp(), name, value);
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        // `{variant: value}`
        header(self.out, MAP, 1);
        write_str(self.out, variant)?;
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a>, Error> {
        Ok(match len {
            Some(len) => {
                header(self.out, ARRAY, len);
                Seq {
                    out: self.out,
                    unknown: None,
                }
            }
            // The length is written first: the elements wait in a buffer, counted.
            None => Seq {
                out: self.out,
                unknown: Some((ArgBytes::new(), 0)),
            },
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        header(self.out, ARRAY, len);
        Ok(Compound { out: self.out })
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        header(self.out, ARRAY, len);
        Ok(Compound { out: self.out })
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        // `{variant: [fields]}`
        header(self.out, MAP, 1);
        write_str(self.out, variant)?;
        header(self.out, ARRAY, len);
        Ok(Compound { out: self.out })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Map<'a>, Error> {
        Ok(Map {
            out: self.out,
            sorted: len.is_some(),
            entries: Vec::with_capacity(len.unwrap_or(0)),
            entry: ArgBytes::new(),
        })
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        // Named fields: `{name: value, ..}`.
        header(self.out, MAP, len);
        Ok(Compound { out: self.out })
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, Error> {
        // `{variant: {name: value, ..}}`
        header(self.out, MAP, 1);
        write_str(self.out, variant)?;
        header(self.out, MAP, len);
        Ok(Compound { out: self.out })
    }
}

/// The elements of a tuple, tuple struct or variant, or the fields of a struct, written in place
/// after their header.
pub(super) struct Compound<'a> {
    out: &'a mut ArgBytes,
}

impl Compound<'_> {
    fn value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(KeySerializer {
            out: &mut *self.out,
        })
    }

    fn field<T: ?Sized + Serialize>(&mut self, name: &str, value: &T) -> Result<(), Error> {
        write_str(self.out, name)?;
        self.value(value)
    }
}

macro_rules! compound {
    ($($trait:ident :: $method:ident),*) => {$(
        impl $trait for Compound<'_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
                self.value(value)
            }
            fn end(self) -> Result<(), Error> {
                Ok(())
            }
        }
    )*};
}
compound!(
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

impl SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(name, value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

/// A sequence: in place after its header, or, of unknown length, buffered and counted.
pub(super) struct Seq<'a> {
    out: &'a mut ArgBytes,
    unknown: Option<(ArgBytes, usize)>,
}

impl SerializeSeq for Seq<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        match &mut self.unknown {
            None => value.serialize(KeySerializer {
                out: &mut *self.out,
            }),
            Some((buf, count)) => {
                *count += 1;
                value.serialize(KeySerializer { out: buf })
            }
        }
    }
    fn end(self) -> Result<(), Error> {
        if let Some((buf, count)) = self.unknown {
            header(self.out, ARRAY, count);
            self.out.push(buf.as_bytes());
        }
        Ok(())
    }
}

/// A map's entries, each encoded on its own (key, then value), written after the header at the
/// end: sorted by their bytes when the map said its length (see the module docs), else in order.
pub(super) struct Map<'a> {
    out: &'a mut ArgBytes,
    sorted: bool,
    entries: Vec<ArgBytes>,
    /// The entry being written: its key, then its value.
    entry: ArgBytes,
}

impl SerializeMap for Map<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        key.serialize(KeySerializer {
            out: &mut self.entry,
        })
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(KeySerializer {
            out: &mut self.entry,
        })?;
        let entry = std::mem::replace(&mut self.entry, ArgBytes::new());
        self.entries.push(entry);
        Ok(())
    }
    fn end(mut self) -> Result<(), Error> {
        if self.sorted {
            // Keys are distinct, and an encoded key is never a prefix of another (MessagePack
            // is self-delimiting), so this is the order of the keys' bytes.
            self.entries
                .sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        }
        header(self.out, MAP, self.entries.len());
        for entry in &self.entries {
            self.out.push(entry.as_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::*;
    use crate::key::KeyArgs;

    fn ours<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = ArgBytes::new();
        value.serialize_for_key(&mut out).unwrap();
        out.as_bytes().to_vec()
    }

    fn rmp<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        value
            .serialize(&mut rmp_serde::Serializer::new(&mut out).with_struct_map())
            .unwrap();
        out
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(u32);

    #[derive(Serialize)]
    struct Pair(i8, String);

    #[derive(Serialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Line(i32, i32),
        Rect { w: u16, h: u16 },
    }

    #[derive(Serialize)]
    struct Filter {
        name: String,
        limit: Option<u32>,
        tags: Vec<&'static str>,
        shape: Shape,
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
    }

    #[derive(Serialize)]
    struct Page {
        size: u32,
        #[serde(flatten)]
        filter: Filter,
    }

    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// Stored default keys (in Redis) outlive a release: whatever has no `Some` around a nil and
    /// no map of two or more entries must encode exactly as `rmp_serde` encodes it.
    #[test]
    fn everything_else_encodes_as_rmp_serde_does() {
        fn same<T: Serialize + ?Sized>(value: &T) {
            assert_eq!(ours(value), rmp(value), "{}", std::any::type_name::<T>());
        }
        same(&true);
        for n in [0i64, -1, -33, 127, 128, -129, 70_000, i64::MIN, i64::MAX] {
            same(&n);
            same(&(n as i8));
            same(&(n as u32));
        }
        same(&u64::MAX);
        same(&i128::MIN);
        same(&u128::MAX);
        same(&1.5f32);
        same(&-2.25f64);
        same(&'é');
        same("");
        same(&"x".repeat(40));
        same(&"y".repeat(300));
        same(&Bytes(&[1, 2, 255]));
        same(&());
        same(&Unit);
        same(&Newtype(7));
        same(&Pair(-3, "p".into()));
        same(&[1u8, 200]);
        same(&(1u8, "a", 2.5f64));
        same(&vec![1u16; 20]);
        same(&vec![0u8; 70_000]);
        same(&Vec::<u8>::new());
        same(&(0..20).collect::<Vec<u32>>());
        same(&[Shape::Dot, Shape::Circle(1.0), Shape::Line(1, -1)]);
        same(&Shape::Rect { w: 1, h: 2 });
        same(&None::<u8>);
        same(&Some(5u8));
        same(&Some("a"));
        same(&Some(Some(5u8)));
        same(&Some(Unit));
        let filter = || Filter {
            name: "a:b".repeat(30),
            limit: Some(3),
            tags: vec!["x", "y"],
            shape: Shape::Circle(2.0),
            after: None,
        };
        same(&filter());
        same(&Page {
            size: 10,
            filter: filter(),
        });
        same(&BTreeMap::from([(1u8, "one")]));
        same(&HashMap::from([("only", 1)]));
        same(&BTreeMap::<u8, u8>::new());
        // A map already in its bytes' order.
        same(&BTreeMap::from([(1u8, "a"), (2, "b"), (100, "c")]));
        same(&(0..40u32).map(|i| (i, i)).collect::<BTreeMap<_, _>>());
    }

    /// `rmp_serde` writes `Some(x)` as `x`, so `None`, `Some(None)` and `Some(())` were one
    /// key: each now has its own.
    #[test]
    fn nested_options_are_one_to_one() {
        let encodings = [
            ours(&None::<Option<Option<u8>>>),
            ours(&Some(None::<Option<u8>>)),
            ours(&Some(Some(None::<u8>))),
            ours(&Some(Some(Some(0u8)))),
        ];
        for (i, a) in encodings.iter().enumerate() {
            for b in &encodings[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(ours(&None::<()>), ours(&Some(())));
        assert_ne!(ours(&None::<Newtype>), ours(&Some(Unit)));
        #[derive(Serialize)]
        struct Wrap(Option<()>);
        assert_ne!(ours(&Some(Wrap(None))), ours(&None::<Wrap>));
        assert_ne!(ours(&Some(Wrap(None))), ours(&Some(Wrap(Some(())))));
        // Nested in a struct, in a sequence, in a map.
        #[derive(Serialize)]
        struct Query {
            limit: Option<Option<u32>>,
        }
        assert_ne!(
            ours(&Query { limit: None }),
            ours(&Query { limit: Some(None) })
        );
        assert_ne!(ours(&[None::<Option<u8>>]), ours(&[Some(None::<u8>)]));
        assert_ne!(
            ours(&BTreeMap::from([(1u8, None::<Option<u8>>)])),
            ours(&BTreeMap::from([(1u8, Some(None::<u8>))]))
        );
        // The marker counts the `Some`s.
        assert_eq!(ours(&Some(None::<u8>)), [0xd6, SOME_EXT, 0, 0, 0, 1]);
        assert_eq!(ours(&Some(Some(None::<u8>))), [0xd6, SOME_EXT, 0, 0, 0, 2]);
        assert_eq!(ours(&Some(Some(1u8))), [1]);
    }

    /// A struct is written as `rmp_serde` writes it, fields in their declared order (keys stored
    /// by earlier releases depend on it): declaring the same fields in another order is another
    /// key, as docs/guide.md warns, unlike the order of a map's entries.
    #[test]
    fn a_structs_fields_are_keyed_in_their_declared_order() {
        #[derive(Serialize)]
        struct Before {
            id: u32,
            name: &'static str,
        }
        #[derive(Serialize)]
        struct After {
            name: &'static str,
            id: u32,
        }
        let before = ours(&Before { id: 7, name: "ada" });
        assert_eq!(before, rmp(&Before { id: 7, name: "ada" }));
        assert_ne!(before, ours(&After { name: "ada", id: 7 }));
    }

    /// A `HashMap` iterates in a different order in each process (each map, even): its key must
    /// not depend on that.
    #[test]
    fn a_map_encodes_the_same_in_any_order() {
        let entries: Vec<(String, u32)> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let forward: HashMap<_, _> = entries.iter().cloned().collect();
        let backward: HashMap<_, _> = entries.iter().rev().cloned().collect();
        let btree: BTreeMap<_, _> = entries.iter().cloned().collect();
        assert_eq!(ours(&forward), ours(&backward));
        assert_eq!(ours(&forward), ours(&btree));
        for _ in 0..10 {
            let fresh: HashMap<_, _> = entries.iter().cloned().collect();
            assert_eq!(ours(&fresh), ours(&forward));
        }
        assert_ne!(ours(&forward), ours(&HashMap::<String, u32>::new()));
        // Sorted by the entries' bytes: `"b"` (`0xa1 ..`) before `"aa"` (`0xa2 ..`).
        assert_eq!(
            ours(&BTreeMap::from([("aa", 1u8), ("b", 2)])),
            [0x82, 0xa1, b'b', 2, 0xa2, b'a', b'a', 1]
        );
    }

    #[test]
    fn a_spilled_buffer_truncated_back_inline_keeps_its_bytes() {
        let long = "z".repeat(100);
        let value = (long.as_str(), Some(None::<u8>), Some(Some(None::<u8>)));
        let mut out = ArgBytes::new();
        value.serialize_for_key(&mut out).unwrap();
        let mut expected = vec![0x93, 0xd9, 100];
        expected.extend_from_slice(long.as_bytes());
        expected.extend_from_slice(&[0xd6, SOME_EXT, 0, 0, 0, 1, 0xd6, SOME_EXT, 0, 0, 0, 2]);
        assert_eq!(out.as_bytes(), expected);
        let mut out = ArgBytes::new();
        out.push(&[7; 80]);
        out.truncate(3);
        out.push(&[8]);
        assert_eq!(out.as_bytes(), [7, 7, 7, 8]);
    }
}
