//! A telemetry payload as it arrives, read straight from the JSON text: no intermediate tree of
//! values, and names borrowed from the input where they need no unescaping. Ingest parses every
//! message, so this is on the hot path; what the readings mean is checked by `parse_payload`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::SeqAccessDeserializer};

/// The readings of a payload: one (`{"ts", "values"}`), a list, or `{"readings": [...]}`.
#[derive(Debug)]
pub(super) struct RawPayload<'a>(pub(super) Vec<RawReading<'a>>);

/// One reading as sent.
#[derive(Debug)]
pub(super) struct RawReading<'a> {
    pub(super) ts: Option<Cow<'a, str>>,
    pub(super) values: Vec<(Cow<'a, str>, Scalar)>,
}

/// A measurement's value as sent: the types a reading may carry, and anything else.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scalar {
    Bool(bool),
    Number(f64),
    /// A string, list, object or null: the wrong type for every metric.
    Other,
}

/// The keys a reading (or a wrapped batch) may have.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Ts,
    Values,
    Readings,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawPayload<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Payload;
        impl<'de> Visitor<'de> for Payload {
            type Value = RawPayload<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a reading {"ts", "values"}, a list of readings or {"readings": [...]}"#)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(RawPayload)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(RawPayload(match read_object(map, true)? {
                    Object::Reading(r) => vec![r],
                    Object::Batch(v) => v,
                }))
            }
        }
        d.deserialize_any(Payload)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawReading<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Reading;
        impl<'de> Visitor<'de> for Reading {
            type Value = RawReading<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a reading {"ts", "values"}"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                match read_object(map, false)? {
                    Object::Reading(r) => Ok(r),
                    Object::Batch(_) => Err(de::Error::unknown_field("readings", &["ts", "values"])),
                }
            }
        }
        d.deserialize_map(Reading)
    }
}

enum Object<'a> {
    Reading(RawReading<'a>),
    Batch(Vec<RawReading<'a>>),
}

/// Reads a reading, or (at the top, `outer`) a wrapped batch; a key twice, an unknown key or a mix of
/// the two shapes is refused.
fn read_object<'de, A: MapAccess<'de>>(mut map: A, outer: bool) -> Result<Object<'de>, A::Error> {
    let (mut ts, mut values, mut readings) = (None, None, None);
    while let Some(key) = map.next_key::<Field>()? {
        match key {
            Field::Ts if ts.is_some() => return Err(de::Error::duplicate_field("ts")),
            Field::Ts => ts = Some(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0)),
            Field::Values if values.is_some() => return Err(de::Error::duplicate_field("values")),
            Field::Values => values = Some(map.next_value::<Values<'de>>()?.0),
            Field::Readings if !outer => return Err(de::Error::unknown_field("readings", &["ts", "values"])),
            Field::Readings if readings.is_some() => return Err(de::Error::duplicate_field("readings")),
            Field::Readings => readings = Some(map.next_value::<Vec<RawReading<'de>>>()?),
        }
    }
    match (readings, values) {
        (Some(batch), None) if ts.is_none() => Ok(Object::Batch(batch)),
        (None, Some(values)) => Ok(Object::Reading(RawReading { ts: ts.flatten(), values })),
        (None, None) => Err(de::Error::missing_field("values")),
        _ => Err(de::Error::custom("a payload has either `readings` or `ts` and `values`, not both")),
    }
}

/// A reading's `values` object, in the order sent.
struct Values<'a>(Vec<(Cow<'a, str>, Scalar)>);

impl<'de: 'a, 'a> Deserialize<'de> for Values<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Values<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of measurements")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(4).min(16));
                while let Some((name, value)) = map.next_entry::<Text<'de>, Scalar>()? {
                    out.push((name.0, value));
                }
                Ok(Values(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string, borrowed from the input unless it had escapes to undo (serde's own `Cow` always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct T;
        impl<'de> Visitor<'de> for T {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(T)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct S;
        impl<'de> Visitor<'de> for S {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a measurement")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(S)
    }
}
