//! The query API, `GET /customers/{id}`: the profile and stage of a customer
//! from the committed state of the instance that owns the customer's
//! partition. Another instance answers `307 Temporary Redirect` to the owner
//! (HTTP clients follow it), or `503` while no owner is known (rebalancing).
//! The answer reflects the last commit (`runtime.commit_interval`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use journey_core::contract::{Channel, Stage};
use journey_core::runtime::now_millis;
use serde::Serialize;
use serde_json::json;

use crate::instances::{Directory, LocalPartitions};
use crate::profile::Profile;
use crate::rfm::Rfm;
use crate::rules::Rules;

/// What the query handler needs: who owns what, and how to score RFM.
#[derive(Clone)]
pub struct Query {
    pub local: LocalPartitions,
    pub directory: Directory,
    /// This instance's advertised URL: a stale claim naming it is no owner
    /// to redirect to (the redirect would come straight back).
    pub url: String,
    /// Partitions of the input topics, to find a customer's.
    pub partitions: i32,
    pub rules: Arc<Rules>,
}

/// A customer as the API shows it.
#[derive(Debug, Serialize)]
pub struct CustomerView<'a> {
    pub customer_id: &'a str,
    pub partition: i32,
    pub stage: Option<Stage>,
    pub stage_since: Option<i64>,
    pub first_seen: i64,
    pub last_seen: i64,
    pub channels: Vec<&'static str>,
    pub entry_channel: Channel,
    pub sessions: u32,
    pub orders: u32,
    pub lifetime_value: f64,
    pub last_order_at: Option<i64>,
    pub last_nps: Option<i32>,
    pub last_csat: Option<i32>,
    pub rfm: Rfm,
    pub merged_anonymous_ids: &'a [String],
}

impl<'a> CustomerView<'a> {
    /// The view of `profile` at `now`.
    pub fn new(
        customer_id: &'a str,
        partition: i32,
        profile: &'a Profile,
        rules: &Rules,
        now: i64,
    ) -> Self {
        CustomerView {
            customer_id,
            partition,
            stage: profile.stage,
            stage_since: profile.stage.map(|_| profile.stage_since),
            first_seen: profile.first_seen,
            last_seen: profile.last_seen,
            channels: profile.channel_names(),
            entry_channel: profile.entry_channel,
            sessions: profile.sessions,
            orders: profile.orders,
            lifetime_value: profile.revenue,
            last_order_at: profile.last_order_at,
            last_nps: profile.last_nps,
            last_csat: profile.last_csat,
            rfm: rules.rfm.score(profile, now),
            merged_anonymous_ids: &profile.merged,
        }
    }
}

/// The query routes, to merge into the service's HTTP server.
pub fn router(query: Query) -> Router {
    Router::new()
        .route("/customers/{id}", get(customer))
        .with_state(query)
}

async fn customer(State(query): State<Query>, Path(id): Path<String>) -> Response {
    if id.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            json!({"error": "empty customer id"}),
        );
    }
    let partition = journey_core::kafka::partition_for(id.as_bytes(), query.partitions);
    let Some(reader) = query.local.reader_of(partition) else {
        return match query.directory.owner(partition).filter(|o| *o != query.url) {
            Some(owner) => {
                let location = format!("{owner}/customers/{}", encode_path(&id));
                let body = json!({
                    "error": "customer is owned by another instance",
                    "customer_id": id,
                    "partition": partition,
                    "owner": owner,
                });
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, location)],
                    Json(body),
                )
                    .into_response()
            }
            None => error(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({
                    "error": "no instance owns the customer's partition right now (rebalancing); retry",
                    "customer_id": id,
                    "partition": partition,
                }),
            ),
        };
    };
    match reader.get::<Profile>(partition, id.as_bytes()) {
        Ok(Some(profile)) => {
            let view = CustomerView::new(&id, partition, &profile, &query.rules, now_millis());
            Json(view).into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            json!({"error": "unknown customer", "customer_id": id}),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("reading state: {e}"), "customer_id": id}),
        ),
    }
}

fn error(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

/// Percent-encodes what may not stand in a path segment as is.
fn encode_path(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use journey_core::contract::Channel;
    use journey_core::state::StateStore;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::instances::Claim;

    const PARTITIONS: i32 = 4;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
        let location = head
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap_or_default()
            .to_string();
        (status, location, body.to_string())
    }

    /// The `nth` customer id whose partition is `partition`.
    fn id_in(partition: i32, nth: usize) -> String {
        (0..)
            .map(|i| format!("customer-{i}"))
            .filter(|id| journey_core::kafka::partition_for(id.as_bytes(), PARTITIONS) == partition)
            .nth(nth)
            .unwrap()
    }

    #[tokio::test]
    async fn the_owner_answers_others_redirect_and_unknown_ids_are_404() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = StateStore::open(dir.path(), 16 << 20).unwrap();
        let (owned, unknown) = (id_in(0, 0), id_in(0, 1));
        let (elsewhere, orphan) = (id_in(1, 0), id_in(2, 0));
        let mut profile = Profile::new(1_000, Channel::Web);
        profile.orders = 2;
        profile.revenue = 120.0;
        profile.last_order_at = Some(1_000);
        profile.enter(Stage::Loyal, 2_000);
        store.partition(0).put(owned.as_bytes(), &profile);
        store.commit().unwrap();

        let local = LocalPartitions::default();
        local.claim(0, store.reader());
        let directory = Directory::default();
        directory.record(
            Claim {
                url: "http://other:9103".into(),
                partitions: vec![1],
            },
            1,
        );
        // A claim of this instance's that it no longer holds (revoked since).
        directory.record(
            Claim {
                url: "http://self:9103".into(),
                partitions: vec![3],
            },
            1,
        );
        let query = Query {
            local,
            directory,
            url: "http://self:9103".into(),
            partitions: PARTITIONS,
            rules: Arc::new(Rules::parse(crate::DEFAULT_RULES).unwrap()),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let listener = std::net::TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let stop = CancellationToken::new();
        let server = journey_core::http::serve(addr, router(query), stop.clone())
            .await
            .unwrap();

        let (status, _, body) = get(addr, &format!("/customers/{owned}")).await;
        assert_eq!(status, 200, "{body}");
        let view: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(view["customer_id"], owned.as_str());
        assert_eq!(view["stage"], "LOYAL");
        assert_eq!(view["stage_since"], 2_000);
        assert_eq!(view["lifetime_value"], 120.0);
        assert_eq!(view["orders"], 2);
        assert_eq!(view["rfm"]["frequency"], 2);
        assert_eq!(view["rfm"]["monetary"], 2);
        assert_eq!(view["partition"], 0);

        let (status, _, body) = get(addr, &format!("/customers/{unknown}")).await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("\"error\":\"unknown customer\""), "{body}");

        let (status, location, body) = get(addr, &format!("/customers/{elsewhere}")).await;
        assert_eq!(status, 307, "{body}");
        assert_eq!(location, format!("http://other:9103/customers/{elsewhere}"));
        assert!(body.contains("\"owner\":\"http://other:9103\""), "{body}");

        let (status, _, body) = get(addr, &format!("/customers/{orphan}")).await;
        assert_eq!(status, 503, "{body}");
        let stale = id_in(3, 0);
        let (status, _, body) = get(addr, &format!("/customers/{stale}")).await;
        assert_eq!(status, 503, "no redirect to itself: {body}");

        stop.cancel();
        server.await.unwrap();
    }
}
