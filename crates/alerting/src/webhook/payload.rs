//! Alertmanager's webhook payload (version 4) for one alert record.

use journey_core::contract::{Alert, AlertStatus};
use serde_json::{json, Map, Value};

/// Alertmanager's "no end" time, sent as `endsAt` of firing alerts.
const NO_END: &str = "0001-01-01T00:00:00Z";

/// The notification of `alert` to `receiver`, grouped by rule.
/// `ends_at` is the resolution time of a resolved alert.
pub fn notification(
    alert: &Alert,
    receiver: &str,
    external_url: &str,
    ends_at: Option<i64>,
) -> Value {
    let status = match alert.status {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    };
    let mut labels = Map::new();
    labels.insert("alertname".into(), alert.rule.clone().into());
    labels.insert(
        "severity".into(),
        alert.severity.as_str().to_ascii_lowercase().into(),
    );
    labels.insert("alert_id".into(), alert.alert_id.clone().into());
    if let Some(customer) = &alert.customer_id {
        labels.insert("customer_id".into(), customer.clone().into());
    }
    if let Some(scope) = alert.context.get("scope") {
        labels.insert("scope".into(), scope.clone().into());
    }
    let mut annotations = Map::new();
    annotations.insert("summary".into(), alert.summary.clone().into());
    if let Some(plan) = &alert.action_plan {
        annotations.insert("action_plan".into(), plan.clone().into());
    }
    for (key, value) in &alert.context {
        annotations.insert(key.clone(), value.clone().into());
    }
    let group_labels = json!({ "alertname": alert.rule });
    let common_labels = json!({
        "alertname": alert.rule,
        "severity": labels["severity"],
    });
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", alert.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": { "summary": alert.summary },
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": annotations,
            "startsAt": rfc3339(alert.fired_at),
            "endsAt": ends_at.map_or_else(|| NO_END.to_string(), rfc3339),
            "generatorURL": format!("{}/metrics", external_url.trim_end_matches('/')),
            "fingerprint": &alert.alert_id[..alert.alert_id.len().min(16)],
        }],
    })
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use journey_core::contract::Severity;

    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_payload_has_every_field_alertmanager_sends() {
        let alert = Alert {
            alert_id: "0123456789abcdef0123456789abcdef".into(),
            rule: "detractor_feedback".into(),
            severity: Severity::Critical,
            status: AlertStatus::Resolved,
            customer_id: Some("carol".into()),
            summary: "Detractor feedback (NPS 2)".into(),
            action_plan: Some("Call back".into()),
            evidence_id: "c2".into(),
            fired_at: 0,
            context: BTreeMap::from([("feedback_text".into(), "late".into())]),
        };
        let body = notification(&alert, "cx", "http://alerting:9104", Some(1_000));
        for field in [
            "version",
            "groupKey",
            "truncatedAlerts",
            "status",
            "receiver",
            "groupLabels",
            "commonLabels",
            "commonAnnotations",
            "externalURL",
            "alerts",
        ] {
            assert!(body.get(field).is_some(), "{field}");
        }
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "resolved");
        assert_eq!(body["groupKey"], "{}:{alertname=\"detractor_feedback\"}");
        let a = &body["alerts"][0];
        assert_eq!(a["labels"]["alertname"], "detractor_feedback");
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["customer_id"], "carol");
        assert_eq!(a["annotations"]["action_plan"], "Call back");
        assert_eq!(a["annotations"]["feedback_text"], "late");
        assert_eq!(a["startsAt"], "1970-01-01T00:00:00.000Z");
        assert_eq!(a["endsAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(a["fingerprint"], "0123456789abcdef");
        assert_eq!(a["generatorURL"], "http://alerting:9104/metrics");
    }
}
