//! Decodes arbitrary bytes as a Confluent-framed CustomerEvent: as given, and
//! under the current, an older and a newer writer schema. The codec must
//! never panic, and where both the fast and the generic path decode a
//! record, they must agree.

#![no_main]

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use apache_avro::Schema;
use journey_core::codec::{AvroRecord, Codec, SchemaFetchError, SchemaSource, HEADER_LEN};
use journey_core::contract::CustomerEvent;
use libfuzzer_sys::fuzz_target;

const CURRENT_ID: u32 = 1;
const V0_ID: u32 = 100;
const V2_ID: u32 = 102;

/// The evolved schemas of the codec's tests, by id.
struct Fixtures(HashMap<u32, &'static str>);

impl SchemaSource for Fixtures {
    fn schema_text(&self, id: u32) -> Result<String, SchemaFetchError> {
        self.0
            .get(&id)
            .map(|text| text.to_string())
            .ok_or(SchemaFetchError::NotFound(id))
    }
}

static CODEC: LazyLock<Codec> = LazyLock::new(|| {
    let fixtures = Fixtures(HashMap::from([
        (
            V0_ID,
            include_str!("../../crates/core/tests/fixtures/customer_event_v0.avsc"),
        ),
        (
            V2_ID,
            include_str!("../../crates/core/tests/fixtures/customer_event_v2.avsc"),
        ),
    ]));
    Codec::with_source(Arc::new(fixtures)).with_writer_id::<CustomerEvent>(CURRENT_ID)
});

static READER: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(CustomerEvent::SCHEMA).expect("contract schema parses"));

/// The codec's decode beside apache-avro's decode, resolve and from_value.
fn decode_both_ways(framed: &[u8]) {
    let fast = CODEC.decode::<CustomerEvent>(framed);
    let generic = CODEC.decode_value(framed).ok().and_then(|(_, value)| {
        let value = value.resolve(&READER).ok()?;
        apache_avro::from_value::<CustomerEvent>(&value).ok()
    });
    if let (Ok(fast), Some(generic)) = (fast, generic) {
        // Debug output, so that NaN prices compare equal.
        assert_eq!(format!("{fast:?}"), format!("{generic:?}"));
    }
}

fuzz_target!(|data: &[u8]| {
    decode_both_ways(data);
    let datum = data.get(HEADER_LEN..).unwrap_or(data);
    for id in [CURRENT_ID, V0_ID, V2_ID] {
        let mut framed = vec![0];
        framed.extend_from_slice(&id.to_be_bytes());
        framed.extend_from_slice(datum);
        decode_both_ways(&framed);
    }
});
