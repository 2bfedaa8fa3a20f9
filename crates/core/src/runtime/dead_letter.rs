//! The dead-letter record of a rejected input, within the size the producer
//! sends: a record the producer refuses stops the service, and the same input
//! would stop it again after every restart.

use super::{now_millis, InputRecord, Output, Rejection};
use crate::codec::{Codec, EncodeError};
use crate::contract::DeadLetter;

/// Bytes a record carries beyond its key and value (batch and record headers,
/// with room to spare).
const RECORD_OVERHEAD: usize = 1024;

/// The dead letter of `record`, rejected by `service` for `rejection`, as an
/// output to `topic`. Its original value is left out, and its message says
/// so, when the record would be larger than `max_bytes` (the producer's
/// `message.max.bytes`); the source topic, partition and offset still find it.
pub(super) fn dead_letter(
    codec: &Codec,
    service: &str,
    topic: &str,
    record: &InputRecord<'_>,
    rejection: Rejection,
    max_bytes: usize,
) -> Result<Output, EncodeError> {
    let key = record.key.map(<[u8]>::to_vec);
    let mut dead = DeadLetter {
        service: service.to_string(),
        source_topic: record.topic.to_string(),
        source_partition: record.partition,
        source_offset: record.offset,
        error_kind: rejection.kind,
        message: rejection.message,
        field_path: rejection.field_path,
        original_key: key.clone(),
        original_value: record.payload.map(<[u8]>::to_vec),
        failed_at: now_millis(),
    };
    let key = key.unwrap_or_default();
    let mut payload = codec.encode(&dead)?;
    if key.len() + payload.len() + RECORD_OVERHEAD > max_bytes {
        let omitted = dead.original_value.take().map_or(0, |v| v.len());
        dead.message.push_str(&format!(
            " (original value of {omitted} bytes left out: the dead letter would exceed \
             message.max.bytes, {max_bytes})"
        ));
        payload = codec.encode(&dead)?;
    }
    Ok(Output {
        topic: topic.to_string(),
        key,
        payload,
        timestamp: record.timestamp,
        headers: Vec::new(),
        partition: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ErrorKind;

    fn rejected(payload: &[u8], max_bytes: usize) -> DeadLetter {
        let codec = Codec::builtin();
        let record = InputRecord {
            topic: "raw",
            partition: 2,
            offset: 7,
            timestamp: 1,
            key: Some(b"k"),
            payload: Some(payload),
        };
        let rejection = Rejection {
            kind: ErrorKind::TooLarge,
            message: "too large".into(),
            field_path: None,
        };
        let output = dead_letter(&codec, "ingest", "dlq", &record, rejection, max_bytes).unwrap();
        assert!(output.key.len() + output.payload.len() + RECORD_OVERHEAD <= max_bytes);
        codec.decode(&output.payload).unwrap()
    }

    #[test]
    fn a_dead_letter_carries_the_original_value_while_it_fits_the_producer() {
        let dead = rejected(&[7; 1000], 1_000_000);
        assert_eq!(dead.original_value, Some(vec![7; 1000]));
        assert_eq!(dead.message, "too large");

        let dead = rejected(&[7; 999_000], 1_000_000);
        assert_eq!(dead.original_value, None);
        assert!(
            dead.message
                .starts_with("too large (original value of 999000 bytes left out"),
            "{}",
            dead.message
        );
        assert_eq!(
            (
                dead.source_topic.as_str(),
                dead.source_partition,
                dead.source_offset
            ),
            ("raw", 2, 7)
        );
        assert_eq!(dead.original_key, Some(b"k".to_vec()));
    }
}
