//! The fast path: datums straight into the contract's types and back with
//! `serde_avro_fast`, no `Value` tree in between. Decoding follows the writer
//! schema and lets serde match fields by name; `resolution` decides when that
//! equals Avro schema resolution.
//!
//! Allocations stay bounded by the datum: strings and bytes are checked
//! against the bytes left before they are copied, and sequences never
//! preallocate from a length prefix.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_avro_fast::de::read::SliceRead;
use serde_avro_fast::de::{DeserializerConfig, DeserializerState};
use serde_avro_fast::ser::{SerError, SerializerConfig};
use serde_avro_fast::Schema;

use super::DecodeError;

/// The most items an array or map may hold: zero-byte items (nulls) would
/// otherwise let a few bytes of length prefix loop for seconds.
const MAX_ITEMS: usize = 1 << 20;

/// The datum, written with `writer`, as a `T`; it must use every byte.
pub(super) fn decode<T: DeserializeOwned>(writer: &Schema, datum: &[u8]) -> Result<T, DecodeError> {
    let mut config = DeserializerConfig::new(writer);
    config.max_seq_size = MAX_ITEMS;
    let mut state = DeserializerState::with_config(SliceRead::new(datum), config);
    let value = T::deserialize(state.deserializer())
        .map_err(|e| DecodeError::SchemaViolation(e.to_string()))?;
    let mut rest = state.into_reader();
    let left = std::io::BufRead::fill_buf(&mut rest).map_or(0, |rest| rest.len());
    if left > 0 {
        return Err(DecodeError::SchemaViolation(format!(
            "{left} bytes left after the record"
        )));
    }
    Ok(value)
}

/// Appends `record`'s datum in `schema` to `out`.
pub(super) fn encode<T: Serialize>(
    schema: &Schema,
    record: &T,
    out: Vec<u8>,
) -> Result<Vec<u8>, SerError> {
    serde_avro_fast::to_datum(record, out, &mut SerializerConfig::new(schema))
}
