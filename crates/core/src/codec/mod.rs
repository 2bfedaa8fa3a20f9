//! Avro in the Confluent wire format: a zero magic byte, the writer schema id
//! as a 4-byte big-endian integer, then the Avro binary datum.
//!
//! Decoding looks the writer schema up by id, in a cache that fills itself
//! from a [`SchemaSource`] (a schema registry) on a miss, and resolves it to
//! the schema of the Rust type, so compatible older and newer producers keep
//! working. Records decode straight into the contract's types with
//! `serde_avro_fast` whenever that gives what Avro schema resolution gives:
//! the same schema, fields added or removed with defaults, enum symbols
//! added, numeric promotions (see `resolution`). Any other writer schema
//! takes apache-avro's generic path (datum, `Value` tree, resolve, type).
//! Encoding writes the contract schema with `serde_avro_fast`.
//! `CustomerEvent`, the hottest record, has a hand-written writer, and a
//! hand-written reader for datums of its own schema. apache-avro parses
//! schemas and is the reference for resolution.
//!
//! ```
//! use journey_core::codec::Codec;
//! use journey_core::contract::CustomerEvent;
//!
//! let codec = Codec::builtin();
//! let event = CustomerEvent { event_id: "e-1".into(), ..CustomerEvent::default() };
//! let bytes = codec.encode(&event).unwrap();
//! assert_eq!(codec.decode::<CustomerEvent>(&bytes).unwrap(), event);
//! ```

mod event_reader;
mod event_writer;
mod fast;
mod generic;
mod readers;
mod resolution;
mod writers;

use std::sync::Arc;

use apache_avro::types::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::contract::{
    Alert, CustomerEvent, DeadLetter, ErasureConfirmation, ErasureProgress, ErasureRequest,
    ErasureTask, ErrorKind, IdentityMerge, SessionSummary, StageChange,
};
use readers::RECORDS;
pub use writers::{SchemaFetchError, SchemaSource};
use writers::{Writer, Writers};

/// The magic byte that opens every Confluent-framed record.
pub const MAGIC_BYTE: u8 = 0;
/// Bytes before the Avro datum: magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// The largest single allocation the generic decoder may make for one value;
/// the fast path never allocates more than the datum's own length for one.
const MAX_ALLOCATION_BYTES: usize = 8 * 1024 * 1024;

mod sealed {
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_avro_fast::ser::SerError;

    use super::DecodeError;

    /// Only the contract's records are [`super::AvroRecord`]s.
    pub trait Sealed {
        /// Reads a datum written with the record's contract schema, `schema`.
        fn read_datum(datum: &[u8], schema: &serde_avro_fast::Schema) -> Result<Self, DecodeError>
        where
            Self: DeserializeOwned + Sized,
        {
            super::fast::decode(schema, datum)
        }

        /// Appends the record's datum in `schema`, its contract schema, to `out`.
        fn write_datum(
            &self,
            schema: &serde_avro_fast::Schema,
            out: Vec<u8>,
        ) -> Result<Vec<u8>, SerError>
        where
            Self: Serialize + Sized,
        {
            super::fast::encode(schema, self, out)
        }
    }
}

/// A record type of the contract, with its schema in `schemas/`.
pub trait AvroRecord: Serialize + DeserializeOwned + sealed::Sealed {
    /// The record's subject-independent name, e.g. `CustomerEvent`.
    const NAME: &'static str;
    /// The schema text (`.avsc`).
    const SCHEMA: &'static str;
}

macro_rules! avro_record {
    ($ty:ty, $file:literal) => {
        impl AvroRecord for $ty {
            const NAME: &'static str = stringify!($ty);
            const SCHEMA: &'static str = include_str!(concat!("../../../../schemas/", $file));
        }
    };
}

avro_record!(CustomerEvent, "customer_event.avsc");
avro_record!(SessionSummary, "session_summary.avsc");
avro_record!(StageChange, "stage_change.avsc");
avro_record!(Alert, "alert.avsc");
avro_record!(DeadLetter, "dead_letter.avsc");
avro_record!(IdentityMerge, "identity_merge.avsc");
avro_record!(ErasureRequest, "erasure_request.avsc");
avro_record!(ErasureTask, "erasure_task.avsc");
avro_record!(ErasureProgress, "erasure_progress.avsc");
avro_record!(ErasureConfirmation, "erasure_confirmation.avsc");

impl sealed::Sealed for CustomerEvent {
    fn read_datum(datum: &[u8], _schema: &serde_avro_fast::Schema) -> Result<Self, DecodeError> {
        event_reader::read(datum)
    }

    fn write_datum(
        &self,
        _schema: &serde_avro_fast::Schema,
        mut out: Vec<u8>,
    ) -> Result<Vec<u8>, serde_avro_fast::ser::SerError> {
        event_writer::write(self, &mut out);
        Ok(out)
    }
}
impl sealed::Sealed for SessionSummary {}
impl sealed::Sealed for StageChange {}
impl sealed::Sealed for Alert {}
impl sealed::Sealed for DeadLetter {}
impl sealed::Sealed for IdentityMerge {}
impl sealed::Sealed for ErasureRequest {}
impl sealed::Sealed for ErasureTask {}
impl sealed::Sealed for ErasureProgress {}
impl sealed::Sealed for ErasureConfirmation {}

/// Why bytes could not be decoded; maps onto a dead letter's error kind.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not Confluent-framed Avro: {0}")]
    NotAvro(String),
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
    /// The source gave a schema for the id that does not parse; dead-lettered
    /// as an unknown schema, since no record with that id can be read.
    #[error("schema id {id} is not a valid Avro schema: {message}")]
    InvalidSchema { id: u32, message: String },
    /// The schema source could not be asked; the record is fine and worth a retry.
    #[error("schema registry unavailable: {0}")]
    RegistryUnavailable(String),
    #[error("record does not match schema: {0}")]
    SchemaViolation(String),
}

impl DecodeError {
    /// The dead-letter error kind for this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::NotAvro(_) => ErrorKind::NotAvro,
            DecodeError::UnknownSchema(_) | DecodeError::InvalidSchema { .. } => {
                ErrorKind::UnknownSchema
            }
            DecodeError::RegistryUnavailable(_) => ErrorKind::RegistryUnavailable,
            DecodeError::SchemaViolation(_) => ErrorKind::SchemaViolation,
        }
    }
}

/// An encoding failure: a bug or a set-up mistake, never bad input.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("no schema id to write {0} with")]
    NoWriterId(&'static str),
    #[error("cannot encode {record} as Avro: {source}")]
    Avro {
        record: &'static str,
        source: serde_avro_fast::ser::SerError,
    },
}

/// Splits a Confluent-framed record into its schema id and Avro datum.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::NotAvro(format!(
            "{} bytes, shorter than the 5-byte header",
            bytes.len()
        )));
    }
    if bytes[0] != MAGIC_BYTE {
        return Err(DecodeError::NotAvro(format!(
            "magic byte is {:#04x}, expected 0x00",
            bytes[0]
        )));
    }
    let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    Ok((id, &bytes[HEADER_LEN..]))
}

/// Writer schemas by id, and the id each contract record is written with.
///
/// Cheap to clone: clones share the schema cache.
#[derive(Clone)]
pub struct Codec {
    writers: Arc<Writers>,
    /// By contract record, in `readers` order.
    writer_ids: [Option<u32>; RECORDS],
}

impl Codec {
    /// The contract's schemas with fixed ids, also written with them:
    /// CustomerEvent 1, SessionSummary 2, StageChange 3, Alert 4, DeadLetter 5,
    /// IdentityMerge 6, ErasureRequest 7, ErasureTask 8, ErasureProgress 9,
    /// ErasureConfirmation 10.
    pub fn builtin() -> Self {
        Codec::empty(None)
            .with_writer_id::<CustomerEvent>(1)
            .with_writer_id::<SessionSummary>(2)
            .with_writer_id::<StageChange>(3)
            .with_writer_id::<Alert>(4)
            .with_writer_id::<DeadLetter>(5)
            .with_writer_id::<IdentityMerge>(6)
            .with_writer_id::<ErasureRequest>(7)
            .with_writer_id::<ErasureTask>(8)
            .with_writer_id::<ErasureProgress>(9)
            .with_writer_id::<ErasureConfirmation>(10)
    }

    /// A codec that asks `source` for every writer schema it does not know;
    /// it writes no record until told the ids with [`Codec::with_writer_id`].
    pub fn with_source(source: Arc<dyn SchemaSource>) -> Self {
        Codec::empty(Some(source))
    }

    fn empty(source: Option<Arc<dyn SchemaSource>>) -> Self {
        // A corrupt length prefix must not make the generic decoder allocate gigabytes.
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        Codec {
            writers: Arc::new(Writers::new(source)),
            writer_ids: [None; RECORDS],
        }
    }

    /// Writes `T` with schema id `id` (its schema's id in the registry); the
    /// id then decodes with `T`'s schema without asking the source.
    pub fn with_writer_id<T: AvroRecord>(mut self, id: u32) -> Self {
        self.writers.insert(id, Writer::contract::<T>());
        self.writer_ids[readers::slot::<T>()] = Some(id);
        self
    }

    /// Encodes `record` Confluent-framed with its contract schema.
    pub fn encode<T: AvroRecord>(&self, record: &T) -> Result<Vec<u8>, EncodeError> {
        let id = self.writer_ids[readers::slot::<T>()].ok_or(EncodeError::NoWriterId(T::NAME))?;
        let mut out = Vec::with_capacity(256);
        out.push(MAGIC_BYTE);
        out.extend_from_slice(&id.to_be_bytes());
        record
            .write_datum(&readers::of::<T>().fast, out)
            .map_err(|source| EncodeError::Avro {
                record: T::NAME,
                source,
            })
    }

    /// Decodes a Confluent-framed record into `T`, resolving the writer schema
    /// to `T`'s schema.
    pub fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (id, datum) = split_frame(bytes)?;
        self.writers.with(id, |writer| writer.decode::<T>(datum))?
    }

    /// Decodes a Confluent-framed record with its writer schema into a generic
    /// Avro value, returning the schema id too.
    pub fn decode_value(&self, bytes: &[u8]) -> Result<(u32, Value), DecodeError> {
        let (id, datum) = split_frame(bytes)?;
        let value = self
            .writers
            .with(id, |writer| generic::decode_value(&writer.avro, datum))??;
        Ok((id, value))
    }

    /// Decodes any contract record into JSON, for humans and tools.
    pub fn decode_json(&self, bytes: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let (_, value) = self.decode_value(bytes)?;
        serde_json::Value::try_from(value).map_err(|e| DecodeError::SchemaViolation(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
