//! The deployment files, checked with the real tool: Debian's docker-compose
//! resolves `docker-compose.yml` (no Docker engine needed), and every Journey
//! container's settings are ones its binary actually reads, with values it
//! accepts.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use journey_core::config::{ConfigSource, ENV_PREFIX};
use journey_tests::repo_root;
use serde_yaml::Value;

/// Sections every binary reads.
const COMMON_SECTIONS: [&str; 4] = ["kafka", "topics", "log", "runtime"];

/// The compose file as docker-compose resolves it: anchors, merges, defaults.
fn resolved_compose() -> Value {
    let output = Command::new("docker-compose")
        .arg("--file")
        .arg(repo_root().join("docker-compose.yml"))
        .arg("config")
        .output()
        .expect("running docker-compose (scripts/setup.sh installs Debian's package)");
    assert!(
        output.status.success(),
        "docker-compose config refused docker-compose.yml:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_yaml::from_slice(&output.stdout).expect("docker-compose config prints YAML")
}

/// The services built from this repository's Dockerfile, by name.
fn journey_containers(compose: &Value) -> BTreeMap<String, Value> {
    let services = compose["services"]
        .as_mapping()
        .expect("compose file has services");
    services
        .iter()
        .filter(|(_, service)| service.get("build").is_some())
        .map(|(name, service)| {
            (
                name.as_str()
                    .expect("service names are strings")
                    .to_string(),
                service.clone(),
            )
        })
        .collect()
}

/// `ENV` settings of the Dockerfile's final stage: every container has them.
fn image_env() -> BTreeMap<String, String> {
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap_or_default();
    let joined = last_stage.replace("\\\n", " ");
    joined
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ENV "))
        .flat_map(|settings| settings.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// What a container's process sees: the image's settings, then the service's.
fn container_env(service: &Value) -> BTreeMap<String, String> {
    let mut env = image_env();
    if let Some(vars) = service.get("environment").and_then(Value::as_mapping) {
        for (k, v) in vars {
            let value = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other)
                    .expect("scalar")
                    .trim()
                    .to_string(),
            };
            env.insert(k.as_str().expect("variable names").to_string(), value);
        }
    }
    env
}

/// The program a container runs.
fn binary(service: &Value) -> String {
    service["command"][0]
        .as_str()
        .expect("Journey containers name their binary in `command`")
        .to_string()
}

/// Loads the named config section as its binary does.
type SectionLoader = fn(&ConfigSource, &str) -> anyhow::Result<()>;

fn load<T: serde::Serialize + serde::de::DeserializeOwned + Default>(
    source: &ConfigSource,
    section: &str,
) -> anyhow::Result<()> {
    source.section::<T>(section).map(drop)
}

/// The section `binary` reads besides the common ones, and how it loads it.
fn own_section(binary: &str) -> Option<(&'static str, SectionLoader)> {
    Some(match binary {
        "journey-ingest" => (journey_ingest::NAME, load::<journey_ingest::IngestConfig>),
        "journey-sessionizer" => (
            journey_sessionizer::NAME,
            load::<journey_sessionizer::SessionizerConfig>,
        ),
        "journey-classifier" => (
            journey_classifier::NAME,
            load::<journey_classifier::ClassifierConfig>,
        ),
        "journey-alerting" => (
            journey_alerting::NAME,
            load::<journey_alerting::AlertingConfig>,
        ),
        "journey" => ("registry", load::<journey_registry::RegistryConfig>),
        _ => return None,
    })
}

/// Checks `env` the way `binary` reads it at start-up: every `JOURNEY_*`
/// setting belongs to a section the binary reads, and every section loads.
fn check_settings(binary: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    let (own, load_own) =
        own_section(binary).ok_or_else(|| format!("unknown Journey binary `{binary}`"))?;
    for key in env.keys() {
        let Some(setting) = key.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let Some((section, _)) = setting.split_once("__") else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !COMMON_SECTIONS.contains(&section.as_str()) && section != own {
            return Err(format!(
                "{key}: {binary} does not read the `{section}` section"
            ));
        }
    }
    let vars = env.iter().map(|(k, v)| (k.clone(), v.clone()));
    let source = ConfigSource::with_env(None, vars).map_err(|e| e.to_string())?;
    source.common().map_err(|e| e.to_string())?;
    load_own(&source, own).map_err(|e| e.to_string())
}

#[test]
fn every_journey_container_sets_only_settings_its_binary_reads() {
    let compose = resolved_compose();
    let containers = journey_containers(&compose);
    assert!(
        containers.len() >= 5,
        "expected the four services and the topic job, found {:?}",
        containers.keys()
    );
    for (name, service) in &containers {
        let env = container_env(service);
        if let Err(e) = check_settings(&binary(service), &env) {
            panic!("service `{name}` in docker-compose.yml: {e}");
        }
    }
}

#[test]
fn a_misspelt_or_misplaced_setting_is_caught() {
    let compose = resolved_compose();
    let ingest = &journey_containers(&compose)["ingest"];
    let base = container_env(ingest);
    let with = |key: &str, value: &str| {
        let mut env = base.clone();
        env.insert(key.into(), value.into());
        check_settings("journey-ingest", &env)
    };
    assert_eq!(with("JOURNEY_INGEST__DEDUP_WINDOW", "12h"), Ok(()));
    let misspelt = with("JOURNEY_INGEST__DEDUP_WINDOWS", "12h").unwrap_err();
    assert!(misspelt.contains("dedup_windows"), "{misspelt}");
    let misplaced = with("JOURNEY_SESSIONIZER__GAP", "10m").unwrap_err();
    assert!(misplaced.contains("sessionizer"), "{misplaced}");
    let bad_value = with("JOURNEY_RUNTIME__COMMIT_INTERVAL", "soon").unwrap_err();
    assert!(bad_value.contains("runtime.commit_interval"), "{bad_value}");
}

#[test]
fn every_http_endpoint_address_is_a_setting_checked_by_name() {
    // Each service's /metrics, /healthz and /readyz, and the embedded registry.
    for (binary, field) in [
        ("journey-ingest", "ingest.http_listen"),
        ("journey-sessionizer", "sessionizer.http_listen"),
        ("journey-classifier", "classifier.http_listen"),
        ("journey-alerting", "alerting.http_listen"),
        ("journey", "registry.listen"),
    ] {
        let var = format!("JOURNEY_{}", field.to_ascii_uppercase().replace('.', "__"));
        let with =
            |value: &str| check_settings(binary, &BTreeMap::from([(var.clone(), value.into())]));
        for address in ["0.0.0.0:9100", "10.1.2.3:9100", "[::]:9100", "[::1]:9100"] {
            assert_eq!(with(address), Ok(()), "{var}={address}");
        }
        for address in ["localhost:9100", "10.1.2.3", "*:9100"] {
            let err = with(address).unwrap_err();
            assert!(
                err.contains(&format!("field `{field}`")),
                "{var}={address}: {err}"
            );
        }
    }
}

#[test]
fn services_scale_out_with_state_on_named_volumes() {
    let compose = resolved_compose();
    let named_volumes = compose["volumes"].as_mapping().expect("named volumes");
    for name in ["ingest", "sessionizer", "classifier", "alerting"] {
        let service = &journey_containers(&compose)[name];
        // `--scale` needs replicas that do not fight over a name or a host port.
        assert!(
            service.get("container_name").is_none(),
            "{name}: container_name prevents --scale"
        );
        assert!(
            service.get("ports").is_none(),
            "{name}: a published host port prevents --scale"
        );
        assert!(
            service.get("healthcheck").is_some(),
            "{name}: needs a healthcheck"
        );
        let state_dir = &container_env(service)["JOURNEY_RUNTIME__STATE_DIR"];
        let volumes = service["volumes"].as_sequence().expect("volumes");
        let state_volume = volumes
            .iter()
            .filter_map(Value::as_str)
            .find(|v| v.split(':').nth(1) == Some(state_dir.as_str()))
            .unwrap_or_else(|| panic!("{name}: no volume mounted at {state_dir}"));
        let volume = state_volume.split(':').next().unwrap_or_default();
        assert!(
            named_volumes.contains_key(volume),
            "{name}: state on `{volume}`, not a named volume"
        );
        for dependency in service["depends_on"]
            .as_mapping()
            .expect("depends_on")
            .values()
        {
            assert!(
                dependency.get("condition").is_some(),
                "{name}: depends_on without a condition"
            );
        }
    }
}

#[test]
fn every_file_compose_mounts_is_in_the_repository() {
    let compose = resolved_compose();
    let root = repo_root().canonicalize().expect("repository root");
    let services = compose["services"].as_mapping().expect("services");
    for (name, service) in services {
        let Some(volumes) = service.get("volumes").and_then(Value::as_sequence) else {
            continue;
        };
        for volume in volumes.iter().filter_map(Value::as_str) {
            let source = volume.split(':').next().unwrap_or_default();
            if Path::new(source).is_absolute() {
                assert!(
                    Path::new(source).starts_with(&root) && Path::new(source).exists(),
                    "{name:?} mounts {source}, which is not in the repository"
                );
            }
        }
    }
}
