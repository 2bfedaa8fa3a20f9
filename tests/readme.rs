//! README's examples work as written: its Python producer block runs against
//! the embedded registry and a real broker, and ingest publishes the event.

use std::time::Duration;

use journey_core::contract::{CustomerEvent, EventType};
use journey_tests::{
    collect_raw, registry_codec, repo_root, Broker, EmbeddedRegistry, IngestService,
};

/// The first fenced block of `language` after the heading `heading`.
fn code_block(markdown: &str, heading: &str, language: &str) -> String {
    let section = markdown
        .split_once(heading)
        .unwrap_or_else(|| panic!("README has no `{heading}`"))
        .1;
    let fence = format!("```{language}\n");
    let start = section.find(&fence).expect("a code block") + fence.len();
    let end = section[start..].find("```").expect("a closed code block") + start;
    section[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_python_producer_example_reaches_ingest_output() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let example = code_block(&readme, "## Producing events", "python");
    let broker = Broker::start();
    let kafka = broker.kafka();
    let registry =
        EmbeddedRegistry::start(&kafka, ([127, 0, 0, 1], 0).into(), "_schemas-readme").await;
    let ingest = IngestService::start(
        &broker,
        "ingest-readme",
        &format!("schema_registry_url = \"{}\"", registry.url),
    )
    .await;

    let out = tokio::task::spawn_blocking({
        let bootstrap = broker.bootstrap.clone();
        let url = registry.url.clone();
        move || {
            std::process::Command::new("python3")
                .arg("-c")
                .arg(example)
                .current_dir(repo_root())
                .env("BOOTSTRAP_SERVERS", bootstrap)
                .env("REGISTRY_URL", url)
                .env("EVENT_ID", "readme-example-1")
                .output()
                .expect("running python3")
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "README's Python example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let records = collect_raw(
        &kafka,
        "journey.events",
        1,
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let event: CustomerEvent = registry_codec(&registry.url).decode(&records[0].1).unwrap();
    assert_eq!(event.event_id, "readme-example-1");
    assert_eq!(event.event_type, EventType::AddToCart);
    assert_eq!(event.customer_id.as_deref(), Some("customer-42"));
    assert_eq!(records[0].0, b"customer-42");
    assert_eq!(
        event.product.map(|p| (p.product_id, p.price)),
        Some(("sku-1".to_string(), Some(59.0)))
    );

    ingest.shutdown().await;
    registry.stop().await;
}
