//! The live terminal view of `journey run`: what the services' `/metrics`
//! say, redrawn every second, with the latest alerts and dead letters.
//!
//! It reads the same figures Prometheus scrapes, so what it shows is what
//! Grafana would.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many alerts and dead letters the view keeps.
const LATEST: usize = 6;

/// One scrape of Prometheus' text format: every sample, with its labels.
#[derive(Debug, Default)]
pub struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// Parses the text format; lines it cannot read (comments, garbage) are skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(parse_sample)
            .collect();
        Scrape { samples }
    }

    /// The sum of every sample of `name`, or `None` when there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
            .reduce(|a, b| a + b)
    }

    /// The samples of `name` summed per value of `label`.
    pub fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for (_, labels, value) in self.samples.iter().filter(|(n, _, _)| n == name) {
            let key = labels.get(label).cloned().unwrap_or_default();
            *sums.entry(key).or_insert(0.0) += value;
        }
        sums
    }

    /// The sum over every metric whose name ends with `suffix`.
    pub fn sum_suffix(&self, suffix: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(n, _, _)| n.ends_with(suffix))
            .map(|(_, _, v)| v)
            .sum()
    }
}

/// `name{label="value",...} number` (labels optional).
fn parse_sample(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &inner[i + 1..];
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    chars.next().filter(|(_, c)| *c == '"')?;
                    let mut value = String::new();
                    loop {
                        match chars.next()?.1 {
                            '"' => break,
                            '\\' => match chars.next()?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            other => value.push(other),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), value);
                }
                other => key.push(other),
            }
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name.to_string(), labels, value))
}

/// The figures the view shows, from one scrape of every service.
#[derive(Debug, Default, PartialEq)]
pub struct Figures {
    pub events_valid: f64,
    pub duplicates: f64,
    pub dead_letters: f64,
    pub open_sessions: Option<f64>,
    pub sessions_closed: f64,
    pub stages: BTreeMap<String, f64>,
    pub alerts: f64,
    pub consumer_lag: f64,
    pub restore_remaining: f64,
}

impl Figures {
    /// Reads the figures out of the services' scrapes.
    pub fn from_scrapes(scrapes: &[Scrape]) -> Self {
        let sum = |name: &str| scrapes.iter().filter_map(|s| s.sum(name)).sum::<f64>();
        let open_sessions = scrapes
            .iter()
            .filter_map(|s| s.sum("journey_sessionizer_open_sessions"))
            .reduce(|a, b| a + b);
        let mut stages = BTreeMap::new();
        for scrape in scrapes {
            for (stage, n) in scrape.sum_by("journey_classifier_customers", "stage") {
                *stages.entry(stage).or_insert(0.0) += n;
            }
        }
        Figures {
            events_valid: sum("journey_ingest_events_valid_total"),
            duplicates: sum("journey_ingest_events_duplicate_total"),
            dead_letters: scrapes
                .iter()
                .map(|s| s.sum_suffix("_dead_letters_total"))
                .sum(),
            open_sessions,
            sessions_closed: sum("journey_sessionizer_sessions_closed_total"),
            stages,
            alerts: sum("journey_alerting_alerts_total"),
            consumer_lag: scrapes
                .iter()
                .map(|s| s.sum_suffix("_consumer_lag_records"))
                .sum(),
            restore_remaining: scrapes
                .iter()
                .map(|s| s.sum_suffix("_restore_remaining_records"))
                .sum(),
        }
    }
}

/// The view's memory between redraws: rates need the previous figures.
pub struct View {
    started: Instant,
    previous: Option<(Instant, f64)>,
    events_per_second: f64,
    restore_total: f64,
    alerts: VecDeque<String>,
    dead_letters: VecDeque<String>,
}

impl Default for View {
    fn default() -> Self {
        View {
            started: Instant::now(),
            previous: None,
            events_per_second: 0.0,
            restore_total: 0.0,
            alerts: VecDeque::new(),
            dead_letters: VecDeque::new(),
        }
    }
}

impl View {
    /// Remembers an alert line (newest first).
    pub fn alert(&mut self, line: String) {
        push_latest(&mut self.alerts, line);
    }

    /// Remembers a dead-letter line (newest first).
    pub fn dead_letter(&mut self, line: String) {
        push_latest(&mut self.dead_letters, line);
    }

    /// Takes in figures scraped at `at`.
    pub fn update(&mut self, figures: &Figures, at: Instant) {
        if let Some((then, valid)) = self.previous {
            let seconds = at.duration_since(then).as_secs_f64();
            if seconds > 0.0 {
                self.events_per_second = (figures.events_valid - valid).max(0.0) / seconds;
            }
        }
        self.previous = Some((at, figures.events_valid));
        self.restore_total = self.restore_total.max(figures.restore_remaining);
    }

    /// The whole screen as text.
    pub fn render(&self, figures: &Figures, now: Instant) -> String {
        let mut out = String::new();
        let uptime = now.duration_since(self.started).as_secs();
        let _ = writeln!(
            out,
            "Journey, embedded run: up {}m{:02}s   (Ctrl-C stops everything)",
            uptime / 60,
            uptime % 60
        );
        let _ = writeln!(out);
        if figures.restore_remaining > 0.0 {
            let done = 1.0 - figures.restore_remaining / self.restore_total.max(1.0);
            let _ = writeln!(
                out,
                "restoring state {}  {:.0} records left",
                bar(done, 30),
                figures.restore_remaining
            );
        }
        let _ = writeln!(
            out,
            "events      {:>9.0}/s   valid {:>10.0}   duplicates {:>7.0}   consumer lag {:>7.0}",
            self.events_per_second, figures.events_valid, figures.duplicates, figures.consumer_lag
        );
        let open = figures
            .open_sessions
            .map_or_else(|| "-".to_string(), |n| format!("{n:.0}"));
        let _ = writeln!(
            out,
            "sessions    {open:>9} open   closed {:>9.0}",
            figures.sessions_closed
        );
        let _ = writeln!(
            out,
            "dead letters {:>8.0}        alerts {:>9.0}",
            figures.dead_letters, figures.alerts
        );
        let _ = writeln!(out);
        let customers = figures.stages.values().fold(0.0, |a, b| a + b);
        let _ = writeln!(out, "customers per stage ({customers:.0})");
        if figures.stages.is_empty() {
            let _ = writeln!(out, "  (none yet)");
        }
        for (stage, n) in &figures.stages {
            let share = if customers > 0.0 { n / customers } else { 0.0 };
            let _ = writeln!(out, "  {stage:<14} {} {n:>8.0}", bar(share, 30));
        }
        for (title, lines) in [
            ("latest alerts", &self.alerts),
            ("latest dead letters", &self.dead_letters),
        ] {
            let _ = writeln!(out);
            let _ = writeln!(out, "{title}");
            if lines.is_empty() {
                let _ = writeln!(out, "  (none yet)");
            }
            for line in lines {
                let _ = writeln!(out, "  {line}");
            }
        }
        out
    }
}

fn push_latest(lines: &mut VecDeque<String>, line: String) {
    lines.push_front(line);
    lines.truncate(LATEST);
}

/// `[#####.....]` filled to `share` (0 to 1).
fn bar(share: f64, width: usize) -> String {
    let filled = ((share.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// One scrape of `http://addr/metrics`.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Scrape> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("timed out")??;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .context("no HTTP body")?;
    Ok(Scrape::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP journey_ingest_events_valid_total Valid events.
# TYPE journey_ingest_events_valid_total counter
journey_ingest_events_valid_total 120
journey_ingest_dead_letters_total{kind="NOT_AVRO"} 2
journey_ingest_dead_letters_total{kind="SEMANTIC_VIOLATION"} 3
journey_classifier_customers{stage="AWARENESS"} 10
journey_classifier_customers{stage="PURCHASE"} 30
journey_ingest_consumer_lag_records{topic="a,b",partition="0"} 7
weird{label="quote \" inside"} 1
garbage line
"#;

    #[test]
    fn parses_names_labels_and_values() {
        let scrape = Scrape::parse(TEXT);
        assert_eq!(scrape.sum("journey_ingest_events_valid_total"), Some(120.0));
        assert_eq!(scrape.sum("journey_ingest_dead_letters_total"), Some(5.0));
        assert_eq!(scrape.sum("absent"), None);
        assert_eq!(
            scrape.sum_by("journey_classifier_customers", "stage"),
            BTreeMap::from([("AWARENESS".into(), 10.0), ("PURCHASE".into(), 30.0)])
        );
        assert_eq!(
            scrape.sum_by("journey_ingest_consumer_lag_records", "topic"),
            BTreeMap::from([("a,b".into(), 7.0)])
        );
        assert_eq!(
            scrape.sum_by("weird", "label"),
            BTreeMap::from([("quote \" inside".into(), 1.0)])
        );
    }

    #[test]
    fn figures_add_up_across_services() {
        let other = Scrape::parse("journey_sessionizer_dead_letters_total{kind=\"NOT_AVRO\"} 1\njourney_sessionizer_open_sessions 4\n");
        let figures = Figures::from_scrapes(&[Scrape::parse(TEXT), other]);
        assert_eq!(figures.events_valid, 120.0);
        assert_eq!(figures.dead_letters, 6.0);
        assert_eq!(figures.open_sessions, Some(4.0));
        assert_eq!(figures.consumer_lag, 7.0);
        assert_eq!(figures.stages.values().sum::<f64>(), 40.0);
    }

    #[test]
    fn rate_comes_from_two_scrapes_and_the_screen_shows_it() {
        let mut view = View::default();
        let start = Instant::now();
        let mut figures = Figures {
            events_valid: 100.0,
            ..Figures::default()
        };
        view.update(&figures, start);
        figures.events_valid = 300.0;
        view.update(&figures, start + Duration::from_secs(2));
        view.alert("cart_abandonment customer-1".into());
        let screen = view.render(&figures, start + Duration::from_secs(2));
        assert!(screen.contains("100/s"), "{screen}");
        assert!(screen.contains("cart_abandonment customer-1"), "{screen}");
        assert!(
            screen.contains("latest dead letters\n  (none yet)"),
            "{screen}"
        );
    }

    #[test]
    fn restore_progress_shows_as_a_bar() {
        let mut view = View::default();
        let now = Instant::now();
        let mut figures = Figures {
            restore_remaining: 1000.0,
            ..Figures::default()
        };
        view.update(&figures, now);
        figures.restore_remaining = 250.0;
        view.update(&figures, now);
        let screen = view.render(&figures, now);
        assert!(
            screen.contains(&format!("[{}{}]", "#".repeat(23), ".".repeat(7))),
            "{screen}"
        );
    }
}
