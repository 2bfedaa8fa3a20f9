use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicUsize, Ordering};

use apache_avro::types::Value;
use apache_avro::Schema;
use proptest::prelude::*;
use serde::de::DeserializeOwned;

use super::*;
use crate::contract::*;

const V0: &str = include_str!("../../tests/fixtures/customer_event_v0.avsc");
const V2: &str = include_str!("../../tests/fixtures/customer_event_v2.avsc");
const V0_ID: u32 = 100;
const V2_ID: u32 = 102;

/// A registry stand-in: fixed schemas by id, counting the questions.
#[derive(Default)]
struct Fixtures {
    schemas: HashMap<u32, Result<String, &'static str>>,
    asked: AtomicUsize,
}

impl Fixtures {
    fn evolved() -> Self {
        Fixtures {
            schemas: HashMap::from([(V0_ID, Ok(V0.to_string())), (V2_ID, Ok(V2.to_string()))]),
            ..Fixtures::default()
        }
    }
}

impl SchemaSource for Fixtures {
    fn schema_text(&self, id: u32) -> Result<String, SchemaFetchError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        match self.schemas.get(&id) {
            Some(Ok(text)) => Ok(text.clone()),
            Some(Err(reason)) => Err(SchemaFetchError::Unavailable(reason.to_string())),
            None => Err(SchemaFetchError::NotFound(id)),
        }
    }
}

fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![MAGIC_BYTE];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// `record` as apache-avro writes it with `writer` (fields the writer lacks dropped).
fn apache_datum(writer: &Schema, record: Value) -> Vec<u8> {
    let value = record
        .resolve(writer)
        .expect("record fits the writer schema");
    apache_avro::to_avro_datum(writer, value).expect("apache-avro encodes")
}

/// Decodes `datum` written with `writer_text` as `T` on both paths, checking
/// the fast path is the one the codec takes.
fn both_paths<T: AvroRecord + Debug>(writer_text: &str, datum: &[u8]) -> (T, T) {
    let writer = Schema::parse_str(writer_text).unwrap();
    let reader = &readers::of::<T>().avro;
    let fast_writer = resolution::fast_schema(writer_text, &writer, reader)
        .unwrap_or_else(|| panic!("the fast path should serve this writer for {}", T::NAME));
    let fast = fast::decode::<T>(&fast_writer, datum).expect("fast path decodes");
    let generic = generic::decode::<T>(&writer, reader, datum).expect("generic path decodes");
    (fast, generic)
}

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

fn stage_change() -> StageChange {
    StageChange {
        change_id: "x".into(),
        customer_id: "c".into(),
        from_stage: Some(Stage::Consideration),
        to_stage: Stage::Loyal,
        rule: "first_touch".into(),
        evidence_id: "e".into(),
        changed_at: 5,
    }
}

fn session() -> SessionSummary {
    SessionSummary {
        session_id: "s".into(),
        customer_id: "c".into(),
        channels: vec!["WEB".into()],
        page_views: 3,
        checkout_started: true,
        revenue: 12.5,
        furthest_step: FunnelStep::Cart,
        nps_scores: vec![4],
        engaged: true,
        ..SessionSummary::default()
    }
}

fn alert() -> Alert {
    Alert {
        alert_id: "a".into(),
        rule: "detractor_feedback".into(),
        severity: Severity::Critical,
        customer_id: Some("c".into()),
        context: BTreeMap::from([("stage".into(), "PURCHASE".into())]),
        ..Alert::default()
    }
}

fn dead_letter() -> DeadLetter {
    DeadLetter {
        service: "ingest".into(),
        source_topic: "raw".into(),
        source_partition: 2,
        source_offset: 9,
        error_kind: ErrorKind::NotAvro,
        message: "m".into(),
        field_path: None,
        original_key: Some(b"k".to_vec()),
        original_value: Some(vec![1, 2, 3]),
        failed_at: 1,
    }
}

fn round_trips<T: AvroRecord + PartialEq + Debug>(codec: &Codec, record: &T) {
    let bytes = codec.encode(record).unwrap();
    assert_eq!(&codec.decode::<T>(&bytes).unwrap(), record, "{}", T::NAME);
    let (fast, generic) = both_paths::<T>(T::SCHEMA, &bytes[HEADER_LEN..]);
    assert_eq!(&fast, record, "{}", T::NAME);
    assert_eq!(&generic, record, "{}", T::NAME);
}

#[test]
fn every_contract_record_round_trips_on_the_fast_path() {
    let codec = Codec::builtin();
    round_trips(&codec, &event());
    round_trips(&codec, &stage_change());
    round_trips(&codec, &session());
    round_trips(&codec, &alert());
    round_trips(&codec, &dead_letter());
    let (request, task, progress, confirmation) = erasure_records();
    round_trips(&codec, &request);
    round_trips(&codec, &task);
    round_trips(&codec, &progress);
    round_trips(&codec, &confirmation);
}

fn erasure_records() -> (
    ErasureRequest,
    ErasureTask,
    ErasureProgress,
    ErasureConfirmation,
) {
    let request = ErasureRequest {
        request_id: "r-1".into(),
        customer_id: "c-1".into(),
        anonymous_ids: vec!["a-1".into(), "a-2".into()],
        requested_at: 1_700_000_000_000,
    };
    let task = ErasureTask {
        request_id: "r-1".into(),
        customer_id: "c-1".into(),
        subject: "a-1".into(),
        requested_at: request.requested_at,
    };
    let progress = ErasureProgress {
        request_id: "r-1".into(),
        customer_id: "c-1".into(),
        step: ErasureStep::Scanned,
        service: "ingest".into(),
        subjects: vec!["a-3".into()],
        partition: Some(4),
        partition_count: None,
        requested_at: request.requested_at,
        at: request.requested_at + 5,
    };
    let confirmation = ErasureConfirmation {
        request_id: "r-1".into(),
        customer_id: "c-1".into(),
        subjects: vec!["c-1".into(), "a-1".into()],
        services: vec!["ingest".into(), "sessionizer".into()],
        requested_at: request.requested_at,
        confirmed_at: request.requested_at + 900,
    };
    (request, task, progress, confirmation)
}

/// Every field with a default, left out of the writer schema, on both paths.
fn fields_with_defaults_fill_in<T: AvroRecord + PartialEq + Debug>(record: &T) {
    let reader: serde_json::Value = serde_json::from_str(T::SCHEMA).unwrap();
    let fields = reader["fields"].as_array().unwrap();
    for (i, field) in fields.iter().enumerate() {
        if field.get("default").is_none() {
            continue;
        }
        let mut writer = reader.clone();
        writer["fields"].as_array_mut().unwrap().remove(i);
        let writer_text = writer.to_string();
        // Without the field that defines a named type, the rest may not parse.
        let Ok(writer) = Schema::parse_str(&writer_text) else {
            continue;
        };
        let datum = apache_datum(&writer, apache_avro::to_value(record).unwrap());
        let (fast, generic) = both_paths::<T>(&writer_text, &datum);
        assert_eq!(fast, generic, "{} without {}", T::NAME, field["name"]);
    }
}

#[test]
fn fields_missing_from_the_writer_take_their_defaults_on_both_paths() {
    fields_with_defaults_fill_in(&event());
    fields_with_defaults_fill_in(&stage_change());
    fields_with_defaults_fill_in(&session());
    fields_with_defaults_fill_in(&alert());
    fields_with_defaults_fill_in(&dead_letter());
    let (request, _, progress, _) = erasure_records();
    fields_with_defaults_fill_in(&request);
    fields_with_defaults_fill_in(&progress);
}

#[test]
fn an_unknown_enum_symbol_becomes_the_reader_default_on_both_paths() {
    // A newer Stage with a symbol in front: every index shifts, and the
    // enum is also used by reference (to_stage).
    let mut writer: serde_json::Value = serde_json::from_str(StageChange::SCHEMA).unwrap();
    let symbols = writer["fields"][2]["type"][1]["symbols"]
        .as_array_mut()
        .unwrap();
    symbols.insert(0, "PROSPECT".into());
    let writer_text = writer.to_string();
    let mut record = apache_avro::to_value(stage_change()).unwrap();
    set_field(
        &mut record,
        "from_stage",
        Value::Union(1, Box::new(Value::Enum(0, "PROSPECT".into()))),
    );
    let datum = apache_datum(&Schema::parse_str(&writer_text).unwrap(), record);
    let (fast, generic) = both_paths::<StageChange>(&writer_text, &datum);
    assert_eq!(fast, generic);
    assert_eq!(fast.from_stage, Some(Stage::Awareness));
    assert_eq!(fast.to_stage, stage_change().to_stage);
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
    let mut trailing = codec.encode(&event()).unwrap();
    trailing.push(0);
    assert!(matches!(
        codec.decode::<CustomerEvent>(&trailing),
        Err(DecodeError::SchemaViolation(_))
    ));
}

#[test]
fn a_corrupt_length_prefix_is_a_schema_violation_on_both_paths() {
    // An event id claiming 2^62 bytes, then a session claiming 2^62 channels.
    let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    let codec = Codec::builtin();
    for (slot, bytes) in [
        (0, &huge[..]),
        (1, &[&[2, b's', 2, b'c', 0, 0, 0, 0][..], &huge].concat()),
    ] {
        let framed = framed(slot as u32 + 1, bytes);
        let fast = match slot {
            0 => codec.decode::<CustomerEvent>(&framed).err(),
            _ => codec.decode::<SessionSummary>(&framed).err(),
        };
        let generic = generic::decode::<serde_json::Value>(
            &readers::all()[slot].avro,
            &readers::all()[slot].avro,
            bytes,
        )
        .err();
        assert!(
            matches!(fast, Some(DecodeError::SchemaViolation(_))),
            "{fast:?}"
        );
        assert!(
            matches!(generic, Some(DecodeError::SchemaViolation(_))),
            "{generic:?}"
        );
    }
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

#[test]
fn unknown_schemas_are_fetched_once_from_the_source() {
    let source = Arc::new(Fixtures::evolved());
    let codec = Codec::with_source(source.clone());
    let datum = apache_datum(
        &Schema::parse_str(V0).unwrap(),
        apache_avro::to_value(event()).unwrap(),
    );
    for _ in 0..3 {
        let decoded: CustomerEvent = codec.clone().decode(&framed(V0_ID, &datum)).unwrap();
        assert_eq!(decoded.event_id, "e-1");
    }
    assert_eq!(source.asked.load(Ordering::Relaxed), 1);
}

#[test]
fn schema_source_failures_map_to_error_kinds() {
    let source = Fixtures {
        schemas: HashMap::from([(7, Err("connection refused")), (8, Ok("{not json".into()))]),
        ..Fixtures::default()
    };
    let codec = Codec::with_source(Arc::new(source));
    let kind = |id: u32| {
        codec
            .decode::<CustomerEvent>(&framed(id, &[0]))
            .unwrap_err()
            .kind()
    };
    assert_eq!(kind(7), ErrorKind::RegistryUnavailable);
    assert_eq!(kind(8), ErrorKind::UnknownSchema);
    assert_eq!(kind(9), ErrorKind::UnknownSchema);
    assert!(matches!(
        codec.decode::<CustomerEvent>(&framed(8, &[0])),
        Err(DecodeError::InvalidSchema { id: 8, .. })
    ));
}

#[test]
fn records_are_written_with_the_ids_they_were_given() {
    let source = Arc::new(Fixtures::default());
    let codec = Codec::with_source(source.clone()).with_writer_id::<CustomerEvent>(42);
    assert!(matches!(
        codec.encode(&alert()),
        Err(EncodeError::NoWriterId("Alert"))
    ));
    let bytes = codec.encode(&event()).unwrap();
    assert_eq!(split_frame(&bytes).unwrap().0, 42);
    assert_eq!(codec.decode::<CustomerEvent>(&bytes).unwrap(), event());
    assert_eq!(source.asked.load(Ordering::Relaxed), 0);
}

#[test]
fn a_writer_schema_the_fast_path_cannot_serve_decodes_on_the_generic_path() {
    // A three-branch union: schema resolution picks the reader's string branch.
    let mut writer: serde_json::Value = serde_json::from_str(V0).unwrap();
    writer["fields"][3]["type"] = serde_json::json!(["null", "string", "int"]);
    let writer_text = writer.to_string();
    let writer_schema = Schema::parse_str(&writer_text).unwrap();
    let reader = &readers::of::<CustomerEvent>().avro;
    assert!(resolution::fast_schema(&writer_text, &writer_schema, reader).is_none());
    let source = Fixtures {
        schemas: HashMap::from([(3, Ok(writer_text))]),
        ..Fixtures::default()
    };
    let codec = Codec::with_source(Arc::new(source));
    let datum = apache_datum(&writer_schema, apache_avro::to_value(event()).unwrap());
    let decoded: CustomerEvent = codec.decode(&framed(3, &datum)).unwrap();
    assert_eq!(decoded.customer_id.as_deref(), Some("c-1"));
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,10}"
}

fn symbol_of<E: DeserializeOwned + Debug>(enum_name: &str) -> impl Strategy<Value = E> {
    let reader: serde_json::Value = serde_json::from_str(CustomerEvent::SCHEMA).unwrap();
    let symbols: Vec<String> = reader["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["type"])
        .find(|t| t["name"] == enum_name)
        .and_then(|t| t["symbols"].as_array())
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    proptest::sample::select(symbols)
        .prop_map(|s| serde_json::from_value(serde_json::Value::String(s)).unwrap())
}

fn money() -> impl Strategy<Value = f64> {
    -1e12..1e12f64
}

fn customer_event() -> impl Strategy<Value = CustomerEvent> {
    use proptest::option::of;
    let ids = (
        text(),
        symbol_of::<EventType>("EventType"),
        any::<i64>(),
        of(any::<i64>()),
        of(text()),
        of(text()),
        symbol_of::<Channel>("Channel"),
    );
    let details = (
        of((of(text()), of(text()), of(text()))),
        of((text(), of(text()), of(text()))),
        of((
            text(),
            of(text()),
            of(text()),
            of(money()),
            of(any::<i32>()),
        )),
        of((text(), money(), text(), of(any::<i32>()))),
        of((of(any::<i32>()), of(any::<i32>()), of(text()), of(text()))),
        of((text(), of(text()))),
        of((text(), of(text()), of(text()))),
        proptest::collection::btree_map(text(), text(), 0..4),
    );
    (ids, details).prop_map(|(ids, details)| {
        let (event_id, event_type, occurred_at, received_at, customer_id, anonymous_id, channel) =
            ids;
        let (device, page, product, order, feedback, support, campaign, properties) = details;
        CustomerEvent {
            event_id,
            event_type,
            occurred_at,
            received_at,
            customer_id,
            anonymous_id,
            channel,
            device: device.map(|(device_type, os, user_agent)| Device {
                device_type,
                os,
                user_agent,
            }),
            page: page.map(|(url, title, referrer)| Page {
                url,
                title,
                referrer,
            }),
            product: product.map(|(product_id, name, category, price, quantity)| Product {
                product_id,
                name,
                category,
                price,
                quantity,
            }),
            order: order.map(|(order_id, revenue, currency, item_count)| Order {
                order_id,
                revenue,
                currency,
                item_count,
            }),
            feedback: feedback.map(|(nps, csat, comment, survey_id)| Feedback {
                nps,
                csat,
                comment,
                survey_id,
            }),
            support: support.map(|(case_id, reason)| Support { case_id, reason }),
            campaign: campaign.map(|(source, medium, name)| Campaign {
                source,
                medium,
                name,
            }),
            properties,
        }
    })
}

/// Replaces (or adds) field `name` of a record value.
fn set_field(record: &mut Value, name: &str, value: Value) {
    let Value::Record(fields) = record else {
        panic!("not a record: {record:?}")
    };
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = value,
        None => fields.push((name.to_string(), value)),
    }
}

proptest! {
    #[test]
    fn events_of_the_current_schema_decode_alike_on_both_paths(event in customer_event()) {
        let codec = Codec::builtin();
        let bytes = codec.encode(&event).unwrap();
        // apache-avro writes map entries in hash order, so the bytes may
        // differ from its own; reading them back on both paths is the check.
        let (fast, generic) = both_paths::<CustomerEvent>(CustomerEvent::SCHEMA, &bytes[HEADER_LEN..]);
        prop_assert_eq!(&fast, &event);
        prop_assert_eq!(&generic, &event);
        prop_assert_eq!(codec.decode::<CustomerEvent>(&bytes).unwrap(), event);
    }

    #[test]
    fn the_event_writer_writes_what_serde_avro_fast_writes(event in customer_event()) {
        let mut written = Vec::new();
        event_writer::write(&event, &mut written);
        let serialized = fast::encode(&readers::of::<CustomerEvent>().fast, &event, Vec::new()).unwrap();
        prop_assert_eq!(&written, &serialized);
        prop_assert_eq!(event_reader::read(&written).unwrap(), event);
    }

    #[test]
    fn the_event_reader_reads_damaged_datums_as_serde_avro_fast_does(
        event in customer_event(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let mut datum = Vec::new();
        event_writer::write(&event, &mut datum);
        let at = at % datum.len();
        datum[at] = byte;
        // The hand-written reader may refuse more (overlong varints), never read differently.
        if let Ok(read) = event_reader::read(&datum) {
            let serde = fast::decode::<CustomerEvent>(&readers::of::<CustomerEvent>().fast, &datum);
            // Debug output, so that NaN compares equal.
            prop_assert_eq!(format!("{read:?}"), format!("{:?}", serde.unwrap()));
        }
    }

    #[test]
    fn events_of_an_older_schema_decode_alike_on_both_paths(event in customer_event()) {
        let datum = apache_datum(&Schema::parse_str(V0).unwrap(), apache_avro::to_value(&event).unwrap());
        let (fast, generic) = both_paths::<CustomerEvent>(V0, &datum);
        prop_assert_eq!(&fast, &generic);
        let expected = CustomerEvent {
            received_at: None,
            campaign: None,
            properties: BTreeMap::new(),
            device: event.device.clone().map(|d| Device { user_agent: None, ..d }),
            ..event
        };
        prop_assert_eq!(&fast, &expected);
        let codec = Codec::with_source(Arc::new(Fixtures::evolved()));
        prop_assert_eq!(codec.decode::<CustomerEvent>(&framed(V0_ID, &datum)).unwrap(), expected);
    }

    #[test]
    fn events_of_a_newer_schema_decode_alike_on_both_paths(
        event in customer_event(),
        subscribe in any::<bool>(),
        kiosk in any::<bool>(),
        consent in proptest::option::of(text()),
        tags in proptest::collection::vec(text(), 0..3),
    ) {
        let mut record = apache_avro::to_value(&event).unwrap();
        if subscribe {
            set_field(&mut record, "event_type", Value::Enum(19, "SUBSCRIBE".into()));
        }
        if kiosk {
            set_field(&mut record, "channel", Value::Enum(8, "KIOSK".into()));
        }
        set_field(&mut record, "consent", consent.map_or(Value::Null, Value::String));
        set_field(&mut record, "tags", Value::Array(tags.into_iter().map(Value::String).collect()));
        let datum = apache_datum(&Schema::parse_str(V2).unwrap(), record);
        let (fast, generic) = both_paths::<CustomerEvent>(V2, &datum);
        prop_assert_eq!(&fast, &generic);
        let expected = CustomerEvent {
            event_type: if subscribe { EventType::Other } else { event.event_type },
            channel: if kiosk { Channel::Other } else { event.channel },
            ..event
        };
        prop_assert_eq!(&fast, &expected);
        let codec = Codec::with_source(Arc::new(Fixtures::evolved()));
        prop_assert_eq!(codec.decode::<CustomerEvent>(&framed(V2_ID, &datum)).unwrap(), expected);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let codec = Codec::with_source(Arc::new(Fixtures::evolved()))
            .with_writer_id::<CustomerEvent>(1)
            .with_writer_id::<SessionSummary>(2)
            .with_writer_id::<StageChange>(3)
            .with_writer_id::<Alert>(4)
            .with_writer_id::<DeadLetter>(5);
        let _ = codec.decode::<CustomerEvent>(&bytes);
        for id in [1, 2, 3, 4, 5, V0_ID, V2_ID] {
            let framed = framed(id, &bytes);
            let _ = codec.decode::<CustomerEvent>(&framed);
            let _ = codec.decode::<SessionSummary>(&framed);
            let _ = codec.decode::<StageChange>(&framed);
            let _ = codec.decode::<Alert>(&framed);
            let _ = codec.decode::<DeadLetter>(&framed);
            let _ = codec.decode_json(&framed);
        }
    }
}
