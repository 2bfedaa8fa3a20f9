//! README's examples work as written: its Python producer block runs against
//! the embedded registry and a real broker, and ingest publishes the event.

use std::time::Duration;

use journey_core::config::ConfigSource;
use journey_core::contract::{CustomerEvent, EventType};
use journey_tests::{
    collect_raw, registry_codec, repo_root, Broker, EmbeddedRegistry, InProcessService,
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
    let ingest = InProcessService::ingest(
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

/// Every fenced block of `language` in the section under `heading` (up to
/// the next `## ` heading).
fn code_blocks(markdown: &str, heading: &str, language: &str) -> Vec<String> {
    let section = markdown
        .split_once(heading)
        .unwrap_or_else(|| panic!("README has no `{heading}`"))
        .1;
    let section = section.split("\n## ").next().unwrap_or_default();
    let fence = format!("```{language}\n");
    section
        .split(&fence)
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn readme_security_examples_load_as_configuration() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let heading = "## Security and personal data";
    // librdkafka loads ssl.ca.location at start-up: the examples' path gets a real CA.
    let pki = journey_tests::tls::TestPki::new();
    let ca = pki.ca_file().display().to_string();
    let real_ca = |text: &str| text.replace("/etc/journey/kafka-ca.pem", &ca);
    let dir = tempfile::tempdir().unwrap();
    let sections = |source: &ConfigSource| {
        let common = source.common().map_err(|e| format!("{e:#}"))?;
        source
            .section::<journey_classifier::ClassifierConfig>("classifier")
            .map_err(|e| format!("{e:#}"))?;
        source
            .section::<journey_registry::RegistryConfig>("registry")
            .map_err(|e| format!("{e:#}"))?;
        Ok::<_, String>(common)
    };

    let toml = code_blocks(&readme, heading, "toml");
    let sh = code_blocks(&readme, heading, "sh");
    assert_eq!((toml.len(), sh.len()), (5, 5), "{toml:?} {sh:?}");
    let mut loaded = Vec::new();
    for (i, (file, env)) in toml.iter().zip(&sh).enumerate() {
        let path = dir.path().join(format!("{i}.toml"));
        std::fs::write(&path, real_ca(file)).unwrap();
        let from_file = sections(&ConfigSource::load(Some(&path)).unwrap())
            .unwrap_or_else(|e| panic!("README TOML example {i}: {e}\n{file}"));
        let vars: Vec<(String, String)> = env
            .lines()
            .filter(|line| line.starts_with("JOURNEY_"))
            .map(|line| {
                let (key, value) = line.split_once('=').expect("KEY=value");
                (key.to_string(), real_ca(value))
            })
            .collect();
        let from_env = sections(&ConfigSource::with_env(None, vars).unwrap())
            .unwrap_or_else(|e| panic!("README environment example {i}: {e}\n{env}"));
        // Each pair of examples says the same thing.
        assert_eq!(
            format!("{from_file:?}"),
            format!("{from_env:?}"),
            "example {i}"
        );
        loaded.push(from_file);
    }
    assert_eq!(
        loaded[0]
            .kafka
            .properties
            .get("security.protocol")
            .map(String::as_str),
        Some("SASL_SSL")
    );
    assert!(loaded[1].kafka.schema_registry_password.is_some());
    assert!(loaded[3].log.customer_id_key.is_some());
    assert_eq!(
        loaded[4].topics.dead_letters_retention,
        Duration::from_secs(3 * 24 * 3600)
    );
}
