//! The embedded registry against a local nisshi broker: registration, ids,
//! compatibility, error codes, restart from the `_schemas` topic, and the client.

#[path = "support/http.rs"]
mod http;

use http::{call, schema_body, SR_JSON};
use journey_registry::{RegistryClient, RegistryError};
use journey_tests::{Broker, EmbeddedRegistry};

const V1: &str =
    r#"{"type":"record","name":"Order","namespace":"t","fields":[{"name":"id","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"Order","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"note","type":["null","string"],"default":null}]}"#;
const REQUIRED_FIELD: &str = r#"{"type":"record","name":"Order","namespace":"t","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_schema_is_served_by_id_and_keeps_its_id() {
    let broker = Broker::start();
    let registry = EmbeddedRegistry::start(
        &broker.kafka(),
        ([127, 0, 0, 1], 0).into(),
        "_schemas-served",
    )
    .await;
    let client = RegistryClient::new(&registry.url).unwrap();

    let id = client.register("orders-value", V1).unwrap();
    assert_eq!(id, 1);
    assert_eq!(
        client.register("orders-value", V1).unwrap(),
        id,
        "same schema, same id"
    );
    let respelled = V1.replace(":", " : ");
    assert_eq!(client.register("orders-value", &respelled).unwrap(), id);
    assert_eq!(
        client.register("archive-value", V1).unwrap(),
        id,
        "same schema under another subject reuses the global id"
    );
    assert_eq!(client.schema_by_id(id).unwrap().canonical_form(), {
        apache_avro::Schema::parse_str(V1).unwrap().canonical_form()
    });

    let by_id = call("GET", format!("{}/schemas/ids/{id}", registry.url), None).await;
    assert_eq!(by_id.status, 200);
    assert_eq!(by_id.content_type, SR_JSON);
    assert_eq!(
        by_id.json(),
        serde_json::json!({ "schema": V1 }),
        "no schemaType for Avro"
    );

    let id2 = client.register("orders-value", V2).unwrap();
    assert_eq!(id2, 2);
    let latest = client.latest("orders-value").unwrap();
    assert_eq!(
        (latest.id, latest.version, latest.schema.as_str()),
        (2, 2, V2)
    );

    let subjects = call("GET", format!("{}/subjects", registry.url), None).await;
    assert_eq!(
        subjects.json(),
        serde_json::json!(["archive-value", "orders-value"])
    );
    let versions = call(
        "GET",
        format!("{}/subjects/orders-value/versions", registry.url),
        None,
    )
    .await;
    assert_eq!(versions.json(), serde_json::json!([1, 2]));
    let first = call(
        "GET",
        format!("{}/subjects/orders-value/versions/1", registry.url),
        None,
    )
    .await;
    assert_eq!(
        first.json(),
        serde_json::json!({ "subject": "orders-value", "id": 1, "version": 1, "schema": V1 })
    );
    let raw = call(
        "GET",
        format!("{}/subjects/orders-value/versions/-1/schema", registry.url),
        None,
    )
    .await;
    assert_eq!(raw.body, V2);
    let usages = call(
        "GET",
        format!("{}/schemas/ids/1/versions", registry.url),
        None,
    )
    .await;
    assert_eq!(
        usages.json(),
        serde_json::json!([
            { "subject": "archive-value", "version": 1 },
            { "subject": "orders-value", "version": 1 }
        ])
    );
    let lookup = call(
        "POST",
        format!("{}/subjects/orders-value", registry.url),
        Some(("application/json", schema_body(V2))),
    )
    .await;
    assert_eq!(lookup.json()["version"], 2);
    assert_eq!(lookup.json()["id"], 2);
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_version_is_refused_until_the_level_allows_it() {
    let broker = Broker::start();
    let registry = EmbeddedRegistry::start(
        &broker.kafka(),
        ([127, 0, 0, 1], 0).into(),
        "_schemas-compat",
    )
    .await;
    let client = RegistryClient::new(&registry.url).unwrap();
    client.register("orders-value", V1).unwrap();

    let refused = client.register("orders-value", REQUIRED_FIELD).unwrap_err();
    assert!(
        matches!(
            refused,
            RegistryError::Rejected {
                status: 409,
                code: 409,
                ..
            }
        ),
        "{refused}"
    );
    assert!(!refused.is_retryable());
    assert!(refused.to_string().contains("qty"), "{refused}");

    let url = format!(
        "{}/compatibility/subjects/orders-value/versions/latest",
        registry.url
    );
    let check = call(
        "POST",
        url.clone(),
        Some((SR_JSON, schema_body(REQUIRED_FIELD))),
    )
    .await;
    assert_eq!(check.json(), serde_json::json!({ "is_compatible": false }));
    let verbose = call(
        "POST",
        format!("{url}?verbose=true"),
        Some((SR_JSON, schema_body(REQUIRED_FIELD))),
    )
    .await;
    assert!(
        verbose.json()["messages"][0]
            .as_str()
            .unwrap()
            .contains("qty"),
        "{}",
        verbose.body
    );
    let fine = call("POST", url, Some((SR_JSON, schema_body(V2)))).await;
    assert_eq!(fine.json(), serde_json::json!({ "is_compatible": true }));

    let config = format!("{}/config/orders-value", registry.url);
    assert_eq!(call("GET", config.clone(), None).await.error_code(), 40408);
    let fallback = call("GET", format!("{config}?defaultToGlobal=true"), None).await;
    assert_eq!(
        fallback.json(),
        serde_json::json!({ "compatibilityLevel": "BACKWARD" })
    );
    let set = call(
        "PUT",
        config.clone(),
        Some((SR_JSON, r#"{"compatibility":"none"}"#.into())),
    )
    .await;
    assert_eq!(set.json(), serde_json::json!({ "compatibility": "NONE" }));
    assert_eq!(
        call("GET", config, None).await.json(),
        serde_json::json!({ "compatibilityLevel": "NONE" })
    );
    assert_eq!(client.register("orders-value", REQUIRED_FIELD).unwrap(), 2);

    let global = format!("{}/config", registry.url);
    call(
        "PUT",
        global.clone(),
        Some((SR_JSON, r#"{"compatibility":"FULL_TRANSITIVE"}"#.into())),
    )
    .await;
    assert_eq!(
        call("GET", global, None).await.json(),
        serde_json::json!({ "compatibilityLevel": "FULL_TRANSITIVE" })
    );
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_answer_with_confluent_error_codes() {
    let broker = Broker::start();
    let registry = EmbeddedRegistry::start(
        &broker.kafka(),
        ([127, 0, 0, 1], 0).into(),
        "_schemas-errors",
    )
    .await;
    let url = &registry.url;
    let post = |path: &str, content_type: &'static str, body: String| {
        call("POST", format!("{url}{path}"), Some((content_type, body)))
    };
    let registered = post(
        "/subjects/s/versions",
        "application/octet-stream",
        schema_body(V1),
    )
    .await;
    assert_eq!(
        registered.json(),
        serde_json::json!({ "id": 1 }),
        "octet-stream bodies are read as JSON"
    );

    let cases = [
        (
            call("GET", format!("{url}/subjects/nope/versions"), None).await,
            404,
            40401,
        ),
        (
            call("GET", format!("{url}/subjects/nope/versions/latest"), None).await,
            404,
            40401,
        ),
        (
            call("GET", format!("{url}/subjects/s/versions/7"), None).await,
            404,
            40402,
        ),
        (
            call("GET", format!("{url}/subjects/s/versions/zero"), None).await,
            422,
            42202,
        ),
        (
            call("GET", format!("{url}/schemas/ids/99"), None).await,
            404,
            40403,
        ),
        (
            post("/subjects/s", SR_JSON, schema_body(V2)).await,
            404,
            40403,
        ),
        (
            post("/subjects/nope", SR_JSON, schema_body(V1)).await,
            404,
            40401,
        ),
        (
            post(
                "/subjects/s/versions",
                SR_JSON,
                schema_body(r#"{"type":"record"}"#),
            )
            .await,
            422,
            42201,
        ),
        (
            post(
                "/subjects/s/versions",
                SR_JSON,
                serde_json::json!({ "schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF" })
                    .to_string(),
            )
            .await,
            422,
            42201,
        ),
        (
            post("/subjects/s/versions", SR_JSON, "{not json".into()).await,
            422,
            422,
        ),
        (
            call(
                "PUT",
                format!("{url}/config"),
                Some((SR_JSON, r#"{"compatibility":"SIDEWAYS"}"#.into())),
            )
            .await,
            422,
            42203,
        ),
    ];
    for (answer, status, code) in cases {
        assert_eq!(
            (answer.status, answer.error_code()),
            (status, code),
            "{answer:?}"
        );
        assert_eq!(answer.content_type, SR_JSON);
        assert!(answer.json()["message"].is_string());
    }
    registry.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_registry_serves_the_same_ids_and_versions() {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let topic = "_schemas-restart";
    let first = EmbeddedRegistry::start(&kafka, ([127, 0, 0, 1], 0).into(), topic).await;
    let client = RegistryClient::new(&first.url).unwrap();
    let a1 = client.register("a-value", V1).unwrap();
    let a2 = client.register("a-value", V2).unwrap();
    let b1 = client.register("b-value", V2).unwrap();
    call(
        "PUT",
        format!("{}/config/b-value", first.url),
        Some((SR_JSON, r#"{"compatibility":"NONE"}"#.into())),
    )
    .await;
    let before = call(
        "GET",
        format!("{}/subjects/a-value/versions/2", first.url),
        None,
    )
    .await
    .json();
    first.stop().await;

    let second = EmbeddedRegistry::start(&kafka, ([127, 0, 0, 1], 0).into(), topic).await;
    let client = RegistryClient::new(&second.url).unwrap();
    assert_eq!((a1, a2, b1), (1, 2, 2));
    assert_eq!(
        call(
            "GET",
            format!("{}/subjects/a-value/versions/2", second.url),
            None
        )
        .await
        .json(),
        before
    );
    assert_eq!(client.register("a-value", V1).unwrap(), a1);
    assert_eq!(client.latest("b-value").unwrap().id, b1);
    assert_eq!(
        call("GET", format!("{}/config/b-value", second.url), None)
            .await
            .json(),
        serde_json::json!({ "compatibilityLevel": "NONE" })
    );
    // b-value's NONE level survived: an incompatible schema is taken, with the next id.
    assert_eq!(client.register("b-value", REQUIRED_FIELD).unwrap(), 3);
    assert_eq!(
        call(
            "GET",
            format!("{}/subjects/b-value/versions", second.url),
            None
        )
        .await
        .json(),
        serde_json::json!([1, 2])
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_tells_an_unknown_id_from_an_unreachable_registry() {
    let broker = Broker::start();
    let registry = EmbeddedRegistry::start(
        &broker.kafka(),
        ([127, 0, 0, 1], 0).into(),
        "_schemas-client",
    )
    .await;
    let client = RegistryClient::new(&registry.url).unwrap();
    let missing = client.schema_by_id(4242).unwrap_err();
    assert!(
        matches!(missing, RegistryError::NotFound { code: 40403, .. }),
        "{missing}"
    );
    assert!(!missing.is_retryable());
    let missing = client.latest("nope").unwrap_err();
    assert!(
        matches!(missing, RegistryError::NotFound { code: 40401, .. }),
        "{missing}"
    );

    let id = client.register("s", V1).unwrap();
    let schema = client.schema_by_id(id).unwrap();
    registry.stop().await;
    // Cached for good: served without the registry.
    assert!(std::sync::Arc::ptr_eq(
        &schema,
        &client.schema_by_id(id).unwrap()
    ));

    let closed = format!("http://127.0.0.1:{}", journey_tests::free_port());
    let unreachable = RegistryClient::new(&closed).unwrap();
    let error = unreachable.schema_by_id(1).unwrap_err();
    assert!(matches!(error, RegistryError::Unavailable(_)), "{error}");
    assert!(error.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schemas_topic_is_created_compacted_with_one_partition() {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let broker = Broker::start();
    let kafka = broker.kafka();
    let registry =
        EmbeddedRegistry::start(&kafka, ([127, 0, 0, 1], 0).into(), "_schemas-layout").await;
    registry.stop().await;

    let admin: AdminClient<DefaultClientContext> =
        journey_core::kafka::client_config(&kafka).create().unwrap();
    let configs = admin
        .describe_configs(
            &[ResourceSpecifier::Topic("_schemas-layout")],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let config = configs.into_iter().next().unwrap().unwrap();
    let policy = config.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));
    let metadata = journey_core::kafka::input_partitions(&kafka, &["_schemas-layout".into()])
        .await
        .unwrap();
    assert_eq!(metadata, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_broker_reads_are_served_and_writes_fail_as_unavailable() {
    let broker = Broker::start();
    let registry = EmbeddedRegistry::start(
        &broker.kafka(),
        ([127, 0, 0, 1], 0).into(),
        "_schemas-outage",
    )
    .await;
    let client = RegistryClient::with_timeouts(
        &registry.url,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let id = client.register("s", V1).unwrap();
    drop(broker);

    let fresh = RegistryClient::new(&registry.url).unwrap();
    assert!(fresh.schema_by_id(id).is_ok(), "reads come from memory");
    let error = client.register("s", V2).unwrap_err();
    assert!(matches!(error, RegistryError::Unavailable(_)), "{error}");
    assert!(error.to_string().contains("HTTP 500"), "{error}");
    registry.stop().await;
}
