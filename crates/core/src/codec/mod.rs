//! Avro in the Confluent wire format: a zero magic byte, the writer schema id
//! as a 4-byte big-endian integer, then the Avro binary datum.
//!
//! Decoding resolves the writer schema (looked up by id) to the reader schema
//! of the Rust type, so compatible older and newer producers keep working.

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::types::Value;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::contract::{Alert, CustomerEvent, DeadLetter, ErrorKind, SessionSummary, StageChange};

/// The magic byte that opens every Confluent-framed record.
pub const MAGIC_BYTE: u8 = 0;
/// Bytes before the Avro datum: magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// The largest single allocation the Avro decoder may make for one value.
const MAX_ALLOCATION_BYTES: usize = 8 * 1024 * 1024;

/// A record type of the contract, with its schema in `schemas/`.
pub trait AvroRecord: Serialize + DeserializeOwned {
    /// The record's subject-independent name, e.g. `CustomerEvent`.
    const NAME: &'static str;
    /// The schema text (`.avsc`).
    const SCHEMA: &'static str;
}

macro_rules! avro_record {
    ($ty:ty, $file:literal) => {
        impl AvroRecord for $ty {
            const NAME: &'static str = stringify!($ty);
            const SCHEMA: &'static str = include_str!(concat!("../../../schemas/", $file));
        }
    };
}

avro_record!(CustomerEvent, "customer_event.avsc");
avro_record!(SessionSummary, "session_summary.avsc");
avro_record!(StageChange, "stage_change.avsc");
avro_record!(Alert, "alert.avsc");
avro_record!(DeadLetter, "dead_letter.avsc");

/// Why bytes could not be decoded; maps onto a dead letter's error kind.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not Confluent-framed Avro: {0}")]
    NotAvro(String),
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
    #[error("record does not match schema: {0}")]
    SchemaViolation(String),
}

impl DecodeError {
    /// The dead-letter error kind for this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecodeError::NotAvro(_) => ErrorKind::NotAvro,
            DecodeError::UnknownSchema(_) => ErrorKind::UnknownSchema,
            DecodeError::SchemaViolation(_) => ErrorKind::SchemaViolation,
        }
    }
}

/// An encoding failure: a bug or a contract mismatch, never bad input.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {record} as Avro: {source}")]
pub struct EncodeError {
    record: &'static str,
    source: apache_avro::Error,
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
/// The built-in catalog numbers the contract's schemas 1 to 5.
#[derive(Clone)]
pub struct Codec {
    by_id: HashMap<u32, Arc<Schema>>,
    writer_ids: HashMap<&'static str, u32>,
    readers: HashMap<&'static str, Arc<Schema>>,
}

impl Codec {
    /// The contract's schemas with fixed ids: CustomerEvent 1, SessionSummary 2,
    /// StageChange 3, Alert 4, DeadLetter 5.
    pub fn builtin() -> Self {
        // A corrupt length prefix must not make the decoder allocate gigabytes.
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
        let mut codec = Codec {
            by_id: HashMap::new(),
            writer_ids: HashMap::new(),
            readers: HashMap::new(),
        };
        codec.add_contract::<CustomerEvent>(1);
        codec.add_contract::<SessionSummary>(2);
        codec.add_contract::<StageChange>(3);
        codec.add_contract::<Alert>(4);
        codec.add_contract::<DeadLetter>(5);
        codec
    }

    fn add_contract<T: AvroRecord>(&mut self, id: u32) {
        // The schemas are compiled in and covered by tests: failing here is a build defect.
        let schema = Arc::new(
            Schema::parse_str(T::SCHEMA)
                .unwrap_or_else(|e| panic!("schema of {} does not parse: {e}", T::NAME)),
        );
        self.by_id.insert(id, schema.clone());
        self.writer_ids.insert(T::NAME, id);
        self.readers.insert(T::NAME, schema);
    }

    /// The id `T` is written with.
    fn writer_id<T: AvroRecord>(&self) -> u32 {
        self.writer_ids[T::NAME]
    }

    /// Encodes `record` Confluent-framed with its contract schema.
    pub fn encode<T: AvroRecord>(&self, record: &T) -> Result<Vec<u8>, EncodeError> {
        let id = self.writer_id::<T>();
        let schema = &self.readers[T::NAME];
        let fail = |source| EncodeError {
            record: T::NAME,
            source,
        };
        let value = apache_avro::to_value(record)
            .and_then(|v| v.resolve(schema))
            .map_err(fail)?;
        let datum = apache_avro::to_avro_datum(schema, value).map_err(fail)?;
        let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
        out.push(MAGIC_BYTE);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&datum);
        Ok(out)
    }

    /// Decodes a Confluent-framed record into `T`, resolving the writer schema
    /// to `T`'s schema.
    pub fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (id, value) = self.decode_value(bytes)?;
        let reader = &self.readers[T::NAME];
        let writer = &self.by_id[&id];
        let value = if Arc::ptr_eq(reader, writer) {
            value
        } else {
            value
                .resolve(reader)
                .map_err(|e| DecodeError::SchemaViolation(e.to_string()))?
        };
        apache_avro::from_value(&value).map_err(|e| DecodeError::SchemaViolation(e.to_string()))
    }

    /// Decodes a Confluent-framed record with its writer schema into a generic
    /// Avro value, returning the schema id too.
    pub fn decode_value(&self, bytes: &[u8]) -> Result<(u32, Value), DecodeError> {
        let (id, mut datum) = split_frame(bytes)?;
        let writer = self.by_id.get(&id).ok_or(DecodeError::UnknownSchema(id))?;
        let value = apache_avro::from_avro_datum(writer, &mut datum, None)
            .map_err(|e| DecodeError::SchemaViolation(e.to_string()))?;
        if !datum.is_empty() {
            return Err(DecodeError::SchemaViolation(format!(
                "{} bytes left after the record",
                datum.len()
            )));
        }
        Ok((id, value))
    }

    /// Decodes any contract record into JSON, for humans and tools.
    pub fn decode_json(&self, bytes: &[u8]) -> Result<serde_json::Value, DecodeError> {
        let (_, value) = self.decode_value(bytes)?;
        serde_json::Value::try_from(value).map_err(|e| DecodeError::SchemaViolation(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::contract::*;

    fn event() -> CustomerEvent {
        CustomerEvent {
            event_id: "e-1".into(),
            event_type: EventType::Feedback,
            occurred_at: 1_700_000_000_000,
            customer_id: Some("c-1".into()),
            channel: Channel::Survey,
            feedback: Some(Feedback {
                nps: Some(3),
                comment: Some("slow delivery".into()),
                ..Feedback::default()
            }),
            properties: BTreeMap::from([("k".into(), "v".into())]),
            ..CustomerEvent::default()
        }
    }

    #[test]
    fn every_contract_record_round_trips() {
        let codec = Codec::builtin();
        let e = event();
        assert_eq!(
            codec
                .decode::<CustomerEvent>(&codec.encode(&e).unwrap())
                .unwrap(),
            e
        );

        let change = StageChange {
            change_id: "x".into(),
            customer_id: "c".into(),
            from_stage: None,
            to_stage: Stage::Awareness,
            rule: "first_touch".into(),
            evidence_id: "e".into(),
            changed_at: 5,
        };
        assert_eq!(
            codec
                .decode::<StageChange>(&codec.encode(&change).unwrap())
                .unwrap(),
            change
        );

        let summary = SessionSummary {
            session_id: "s".into(),
            customer_id: "c".into(),
            channels: vec!["WEB".into()],
            furthest_step: FunnelStep::Cart,
            nps_scores: vec![4],
            ..SessionSummary::default()
        };
        assert_eq!(
            codec
                .decode::<SessionSummary>(&codec.encode(&summary).unwrap())
                .unwrap(),
            summary
        );

        let alert = Alert {
            alert_id: "a".into(),
            rule: "detractor_feedback".into(),
            severity: Severity::Critical,
            customer_id: Some("c".into()),
            context: BTreeMap::from([("stage".into(), "PURCHASE".into())]),
            ..Alert::default()
        };
        assert_eq!(
            codec
                .decode::<Alert>(&codec.encode(&alert).unwrap())
                .unwrap(),
            alert
        );

        let dead = DeadLetter {
            service: "ingest".into(),
            source_topic: "raw".into(),
            source_partition: 2,
            source_offset: 9,
            error_kind: ErrorKind::NotAvro,
            message: "m".into(),
            field_path: None,
            original_key: None,
            original_value: Some(vec![1, 2, 3]),
            failed_at: 1,
        };
        assert_eq!(
            codec
                .decode::<DeadLetter>(&codec.encode(&dead).unwrap())
                .unwrap(),
            dead
        );
    }

    #[test]
    fn frame_errors_name_the_problem() {
        let codec = Codec::builtin();
        assert!(matches!(
            codec.decode::<CustomerEvent>(b"{}"),
            Err(DecodeError::NotAvro(_))
        ));
        assert!(matches!(
            codec.decode::<CustomerEvent>(&[1, 0, 0, 0, 1, 2]),
            Err(DecodeError::NotAvro(_))
        ));
        assert!(matches!(
            codec.decode::<CustomerEvent>(&[0, 0, 0, 0, 99, 2]),
            Err(DecodeError::UnknownSchema(99))
        ));
        let mut truncated = codec.encode(&event()).unwrap();
        truncated.truncate(12);
        assert!(matches!(
            codec.decode::<CustomerEvent>(&truncated),
            Err(DecodeError::SchemaViolation(_))
        ));
    }

    #[test]
    fn reading_a_session_as_an_event_is_a_schema_violation() {
        let codec = Codec::builtin();
        let bytes = codec.encode(&SessionSummary::default()).unwrap();
        assert!(codec.decode::<CustomerEvent>(&bytes).is_err());
    }

    #[test]
    fn decode_json_shows_symbols_and_fields() {
        let codec = Codec::builtin();
        let json = codec.decode_json(&codec.encode(&event()).unwrap()).unwrap();
        assert_eq!(json["event_type"], "FEEDBACK");
        assert_eq!(json["customer_id"], "c-1");
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let codec = Codec::builtin();
            let _ = codec.decode::<CustomerEvent>(&bytes);
            let mut framed = vec![0, 0, 0, 0, 1];
            framed.extend_from_slice(&bytes);
            let _ = codec.decode::<CustomerEvent>(&framed);
        }
    }
}
