//! The generic path: apache-avro decodes the datum into a `Value` tree with
//! the writer schema, resolves it to the reader schema, then into the type.

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;

use super::DecodeError;

/// The datum as a generic value of the writer schema; it must use every byte.
pub(super) fn decode_value(writer: &Schema, mut datum: &[u8]) -> Result<Value, DecodeError> {
    let value = apache_avro::from_avro_datum(writer, &mut datum, None)
        .map_err(|e| DecodeError::SchemaViolation(e.to_string()))?;
    if !datum.is_empty() {
        return Err(DecodeError::SchemaViolation(format!(
            "{} bytes left after the record",
            datum.len()
        )));
    }
    Ok(value)
}

/// The datum, written with `writer`, as a `T` of schema `reader`.
pub(super) fn decode<T: DeserializeOwned>(
    writer: &Schema,
    reader: &Schema,
    datum: &[u8],
) -> Result<T, DecodeError> {
    let value = decode_value(writer, datum)?
        .resolve(reader)
        .map_err(|e| DecodeError::SchemaViolation(e.to_string()))?;
    apache_avro::from_value(&value).map_err(|e| DecodeError::SchemaViolation(e.to_string()))
}
