//! What SREs and CX teams see, checked with the real tools: Prometheus's
//! config, alerting rules and their unit tests (`promtool`), Alertmanager's
//! config (`amtool`), the runbooks the alerts link to, and the Grafana
//! provisioning, whose every query must name a metric the services export.
//!
//! `promtool` and `amtool` come from Debian's `prometheus` and
//! `prometheus-alertmanager` packages (`scripts/setup.sh` installs them).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use journey_core::config::TopicsConfig;
use journey_core::metrics::{registry, RuntimeMetrics};
use journey_tests::repo_root;
use prometheus::{IntCounter, Registry};

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

/// Runs `tool` with `args` in the repository root; panics with its output if it fails.
fn run(tool: &str, args: &[&str]) {
    let out = Command::new(tool)
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap_or_else(|e| {
            panic!("running {tool}: {e} (install Debian's prometheus and prometheus-alertmanager: scripts/setup.sh)")
        });
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn relative(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.strip_prefix(repo_root()).unwrap().display().to_string())
        .collect()
}

/// The value of every `key: value` line of a YAML file (values unquoted).
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix(key)?
                .strip_prefix(':')
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn prometheus_config_rules_and_rule_unit_tests_pass_promtool() {
    run("promtool", &["check", "config", "deploy/prometheus.yml"]);
    let rules = relative(&files(&deploy().join("prometheus/rules"), ".yml"));
    let tests = relative(&files(&deploy().join("prometheus/tests"), ".yml"));
    assert!(!rules.is_empty() && !tests.is_empty());
    let mut check = vec!["check", "rules"];
    check.extend(rules.iter().map(String::as_str));
    run("promtool", &check);
    let mut test = vec!["test", "rules"];
    test.extend(tests.iter().map(String::as_str));
    run("promtool", &test);
}

#[test]
fn every_prometheus_alert_has_a_unit_test_severity_summary_description_and_runbook() {
    let tested: BTreeSet<String> = files(&deploy().join("prometheus/tests"), ".yml")
        .iter()
        .flat_map(|f| yaml_values(&read(f), "alertname"))
        .collect();
    let mut alerts = 0;
    for file in files(&deploy().join("prometheus/rules"), ".yml") {
        let text = read(&file);
        // Each alert's block runs from its `- alert:` line to the next one.
        for block in text.split("- alert:").skip(1) {
            let name = block.lines().next().unwrap().trim().to_string();
            alerts += 1;
            assert!(tested.contains(&name), "{name} has no promtool unit test");
            for key in ["severity", "summary", "description", "runbook_url"] {
                assert!(
                    !yaml_values(block, key).is_empty(),
                    "{name} in {} has no {key}",
                    file.display()
                );
            }
            let runbook = &yaml_values(block, "runbook_url")[0];
            assert!(
                repo_root().join(runbook).is_file(),
                "{name}: no runbook {runbook}"
            );
        }
    }
    assert!(alerts >= 10, "only {alerts} alerts");
}

#[test]
fn alertmanager_config_passes_amtool() {
    run("amtool", &["check-config", "deploy/alertmanager.yml"]);
}

/// Every service's metrics registry, as the service builds it.
fn service_registries() -> Vec<(&'static str, Registry)> {
    let topics = TopicsConfig::default();
    let with_runtime = |name| {
        let r = registry(name);
        RuntimeMetrics::new(&r);
        r
    };
    let ingest = with_runtime(journey_ingest::NAME);
    journey_ingest::Ingest::new(
        &Default::default(),
        journey_ingest::IngestTopics::new(&topics, "journey-ingest"),
        &ingest,
    );
    let sessionizer = with_runtime(journey_sessionizer::NAME);
    journey_sessionizer::Sessionizer::new(
        journey_sessionizer::Windows {
            gap: 1,
            grace: 0,
            max_session: 1,
        },
        None,
        journey_sessionizer::SessionizerTopics::new(&topics, "journey-sessionizer"),
        &sessionizer,
    );
    let classifier = with_runtime(journey_classifier::NAME);
    journey_classifier::Classifier::new(
        std::sync::Arc::new(journey_classifier::Rules::load(None).expect("default stage rules")),
        journey_classifier::ClassifierTopics::new(&topics, "journey-classifier"),
        journey_classifier::LocalPartitions::default(),
        journey_classifier::ClassifierConfig::default()
            .visitor_retention_ms()
            .expect("default retention"),
        &classifier,
    );
    let alerting = with_runtime(journey_alerting::NAME);
    journey_alerting::processor(
        &Default::default(),
        journey_alerting::RuleSet::default(),
        journey_alerting::Topics::new(&topics, "journey-alerting"),
        &alerting,
    )
    .unwrap();
    // As `journey_alerting::run` does, for its webhook relays.
    journey_alerting::webhook::DeliveryMetrics::new(&alerting);
    vec![
        (journey_ingest::NAME, ingest),
        (journey_sessionizer::NAME, sessionizer),
        (journey_classifier::NAME, classifier),
        (journey_alerting::NAME, alerting),
    ]
}

/// Whether `registry` holds a metric named `name` (without the
/// `journey_<service>_` prefix): registering another under that name is refused.
fn holds(registry: &Registry, name: &str) -> bool {
    let probe = IntCounter::new(name, "probe").expect("a valid name");
    match registry.register(Box::new(probe.clone())) {
        Ok(()) => {
            registry.unregister(Box::new(probe)).unwrap();
            false
        }
        Err(_) => true,
    }
}

/// Whether some service exports the series `name` (histogram series included).
fn exported(registries: &[(&str, Registry)], name: &str) -> bool {
    registries.iter().any(|(service, registry)| {
        let Some(rest) = name.strip_prefix(&format!("journey_{service}_")) else {
            return false;
        };
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| rest.strip_suffix(s))
            .filter(|base| holds(registry, base));
        base.is_some() || holds(registry, rest)
    })
}

/// The Journey metric names a PromQL expression uses, with
/// `journey_(a|b)_suffix` name patterns expanded.
fn metric_names(expr: &str) -> Vec<String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || "_|()".contains(c);
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("journey_") {
        let tail = &rest[at..];
        let end = tail.find(|c| !name_char(c)).unwrap_or(tail.len());
        let token = &tail[..end];
        match (token.find('('), token.find(')')) {
            (Some(open), Some(close)) if open < close => {
                for alternative in token[open + 1..close].split('|') {
                    names.push(format!(
                        "{}{alternative}{}",
                        &token[..open],
                        &token[close + 1..]
                    ));
                }
            }
            _ => names.push(token.trim_end_matches(['(', ')', '|']).to_string()),
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn promql_metric_names_are_found_and_expanded() {
    assert_eq!(
        metric_names(
            r#"sum(rate({__name__=~"journey_(ingest|alerting)_retries_total"}[5m])) / journey_x_y"#
        ),
        [
            "journey_ingest_retries_total",
            "journey_alerting_retries_total",
            "journey_x_y"
        ]
    );
}

#[test]
fn the_metric_probe_tells_registered_names_from_others() {
    let registries = service_registries();
    assert!(exported(&registries, "journey_alerting_alerts_total"));
    assert!(exported(
        &registries,
        "journey_ingest_process_latency_seconds_bucket"
    ));
    assert!(!exported(
        &registries,
        "journey_alerting_no_such_metric_total"
    ));
    assert!(!exported(
        &registries,
        "journey_nowhere_records_processed_total"
    ));
}

/// Every query of every dashboard panel, by dashboard and panel title.
fn dashboard_queries() -> Vec<(String, String, String)> {
    let mut queries = Vec::new();
    for file in files(&deploy().join("grafana/dashboards"), ".json") {
        let dashboard: serde_json::Value = serde_json::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let panels = dashboard["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name} has no panels");
        for panel in panels {
            let title = panel["title"].as_str().expect("a panel title").to_string();
            let targets = panel["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(!targets.is_empty(), "{name}: panel {title} has no query");
            for target in targets {
                let expr = target["expr"].as_str().expect("a PromQL expr").to_string();
                queries.push((name.clone(), title.clone(), expr));
            }
        }
    }
    queries
}

#[test]
fn every_dashboard_panel_queries_metrics_the_services_export() {
    let registries = service_registries();
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "only {} queries", queries.len());
    let mut missing = BTreeSet::new();
    for (dashboard, panel, expr) in &queries {
        let names = metric_names(expr);
        assert!(
            !names.is_empty() || expr.contains("up{"),
            "{dashboard}: panel {panel} queries no Journey metric: {expr}"
        );
        for name in names {
            if !exported(&registries, &name) {
                missing.insert(format!("{name} (in {dashboard}, panel {panel})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics the dashboards query but no service exports:\n  {}",
        missing.into_iter().collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn every_alert_expression_queries_metrics_the_services_export() {
    let registries = service_registries();
    let mut exprs: Vec<String> = files(&deploy().join("prometheus/rules"), ".yml")
        .iter()
        .flat_map(|f| yaml_values(&read(f), "expr"))
        .collect();
    exprs.extend(yaml_values(
        &read(&deploy().join("grafana/provisioning/alerting/journey.yml")),
        "expr",
    ));
    let missing: Vec<String> = exprs
        .iter()
        .flat_map(|e| metric_names(e))
        .filter(|name| !exported(&registries, name))
        .collect();
    assert!(
        missing.is_empty(),
        "alert expressions name unknown metrics: {missing:?}"
    );
}

#[test]
fn grafana_provisioning_files_are_version_1_and_link_existing_runbooks() {
    let provisioning = deploy().join("grafana/provisioning");
    for kind in ["datasources", "dashboards", "alerting"] {
        let found = files(&provisioning.join(kind), ".yml");
        assert!(!found.is_empty(), "no {kind} provisioning");
        for file in found {
            let text = read(&file);
            assert_eq!(
                yaml_values(&text, "apiVersion"),
                ["1"],
                "{}",
                file.display()
            );
            for runbook in yaml_values(&text, "runbook_url") {
                assert!(repo_root().join(&runbook).is_file(), "no runbook {runbook}");
            }
        }
    }
}
