//! Wire formats: one module per format, each with its constants, a checked and size-capped
//! parser, and a writer.
//!
//! Shared here: [`FormatError`] and [`parse_json_no_duplicates`], the JSON reader every parser of
//! signed JSON uses. Go's `encoding/json` and `serde_json::Value` both keep the *last* of two
//! equal keys while derived structs reject them, so a signer and a verifier could read different
//! documents from the same signed bytes (e.g. two `docker-manifest-digest` or `predicateType`
//! keys). Signed JSON with a duplicate key at any depth is therefore rejected outright.

pub mod cyclonedx;
pub mod dsse;
pub mod intoto;
pub mod promotion;
pub mod revocation;
pub mod simplesigning;
pub mod slsa;
pub mod spdx;

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Errors of the format parsers. Each names the document (`what`) and what was wrong with it.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The input is larger than the parser's cap.
    #[error("{what} is {actual} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// The kind of document.
        what: &'static str,
        /// The cap in bytes.
        limit: usize,
        /// The input's size in bytes.
        actual: usize,
    },
    /// Not JSON (syntax error, bad UTF-8, trailing data, nesting too deep).
    #[error("{what} is not valid JSON: {reason}")]
    Json {
        /// The kind of document.
        what: &'static str,
        /// serde_json's message, with line and column.
        reason: String,
    },
    /// The same key twice in one JSON object.
    #[error("{what} has the key {key:?} more than once{}", at_path(path))]
    DuplicateKey {
        /// The kind of document.
        what: &'static str,
        /// The repeated key.
        key: String,
        /// Where the object is, as dotted keys and `[index]` (empty for the top level).
        path: String,
    },
    /// A required field is missing.
    #[error("{what}: {field} is missing")]
    MissingField {
        /// The kind of document.
        what: &'static str,
        /// The field, as a dotted path.
        field: String,
    },
    /// A field that the format does not allow.
    #[error("{what}: unexpected field {field}")]
    UnknownField {
        /// The kind of document.
        what: &'static str,
        /// The field, as a dotted path.
        field: String,
    },
    /// A field has the wrong JSON type or an unacceptable value.
    #[error("{what}: {field} {reason}")]
    InvalidField {
        /// The kind of document.
        what: &'static str,
        /// The field, as a dotted path.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not valid base64 of the required flavour.
    #[error("{what} is not valid base64: {reason}")]
    Base64 {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn at_path(path: &str) -> String {
    if path.is_empty() {
        " (top level)".into()
    } else {
        format!(" (in {path})")
    }
}

/// Parses `bytes` as one JSON document of at most `max_len` bytes, rejecting duplicate object
/// keys at any depth (after unescaping, so `"a"` and `"\u0061"` collide) and trailing data.
/// Nesting is limited by serde_json's recursion limit (128).
pub fn parse_json_no_duplicates(bytes: &[u8], max_len: usize) -> Result<Value, FormatError> {
    parse_json_document("JSON document", bytes, max_len)
}

/// [`parse_json_no_duplicates`] with the document's name (`what`) used in errors.
pub fn parse_json_document(
    what: &'static str,
    bytes: &[u8],
    max_len: usize,
) -> Result<Value, FormatError> {
    if bytes.len() > max_len {
        return Err(FormatError::TooLarge {
            what,
            limit: max_len,
            actual: bytes.len(),
        });
    }
    let state = DupState::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = ValueSeed { state: &state }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    match parsed {
        Ok(value) => Ok(value),
        Err(e) => match state.duplicate.borrow_mut().take() {
            Some(key) => {
                let mut path = state.path.borrow_mut();
                path.reverse();
                Err(FormatError::DuplicateKey {
                    what,
                    key,
                    path: path.join("."),
                })
            }
            None => Err(FormatError::Json {
                what,
                reason: e.to_string(),
            }),
        },
    }
}

/// Side channel for the duplicate-key error: serde errors are opaque strings, so the key that
/// was repeated, and the keys of the enclosing objects (innermost first), are kept here.
#[derive(Default)]
struct DupState {
    duplicate: RefCell<Option<String>>,
    path: RefCell<Vec<String>>,
}

#[derive(Clone, Copy)]
struct ValueSeed<'s> {
    state: &'s DupState,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        let mut index = 0usize;
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => {
                    if self.state.duplicate.borrow().is_some() {
                        self.state.path.borrow_mut().push(format!("[{index}]"));
                    }
                    return Err(e);
                }
            }
            index = index.saturating_add(1);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                let message = format!("duplicate key {key:?}");
                *self.state.duplicate.borrow_mut() = Some(key);
                return Err(de::Error::custom(message));
            }
            match access.next_value_seed(self) {
                Ok(value) => {
                    map.insert(key, value);
                }
                Err(e) => {
                    if self.state.duplicate.borrow().is_some() {
                        self.state.path.borrow_mut().push(key);
                    }
                    return Err(e);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_json_and_keeps_values() {
        let v = parse_json_no_duplicates(br#"{"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}}"#, 1024)
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}})
        );
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        for (doc, key, path) in [
            (r#"{"a":1,"a":2}"#, "a", ""),
            (r#"{"a":{"b":1,"c":2,"b":1}}"#, "b", "a"),
            (r#"{"x":[{"y":1},{"y":1,"y":2}]}"#, "y", "x.[1]"),
            (r#"{"a":1,"\u0061":1}"#, "a", ""),
        ] {
            match parse_json_no_duplicates(doc.as_bytes(), 1024) {
                Err(FormatError::DuplicateKey {
                    key: k, path: p, ..
                }) => {
                    assert_eq!((k.as_str(), p.as_str()), (key, path), "{doc}")
                }
                other => panic!("{doc}: {other:?}"),
            }
        }
    }

    #[test]
    fn rejects_non_json_trailing_data_and_oversize() {
        for doc in [
            "not json",
            "{} {}",
            "{\"a\":1",
            "",
            "{\"a\":\"\u{0}\"}",
            "[1,]",
        ] {
            assert!(
                matches!(
                    parse_json_no_duplicates(doc.as_bytes(), 1024),
                    Err(FormatError::Json { .. })
                ),
                "{doc:?}"
            );
        }
        assert!(matches!(
            parse_json_no_duplicates(b"\xff", 1024),
            Err(FormatError::Json { .. })
        ));
        assert!(matches!(
            parse_json_no_duplicates(b"[1, 2]", 5),
            Err(FormatError::TooLarge {
                limit: 5,
                actual: 6,
                ..
            })
        ));
        // Deep nesting is an error, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_json_no_duplicates(deep.as_bytes(), 1 << 20),
            Err(FormatError::Json { .. })
        ));
    }
}
