//! The event contract as Rust types. Each type mirrors one schema in `schemas/`
//! field for field; the Avro codec in [`crate::codec`] maps between them.
//!
//! Every field with a default in its schema is `#[serde(default)]` (`Option`
//! fields default to `None` by themselves), so that records written with an
//! older schema decode into these types as Avro schema resolution says.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened at a touchpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    PageView,
    ScreenView,
    ProductView,
    Search,
    AddToCart,
    RemoveFromCart,
    CheckoutStarted,
    Purchase,
    Refund,
    Login,
    Identify,
    SignUp,
    SupportContact,
    Feedback,
    EmailOpen,
    EmailClick,
    AdClick,
    StoreVisit,
    #[default]
    Other,
}

/// Where the touchpoint happened.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    Web,
    App,
    Store,
    CallCenter,
    Email,
    Chat,
    Survey,
    #[default]
    Other,
}

impl Channel {
    /// All channels, in contract (Avro symbol) order.
    pub const ALL: [Channel; 8] = [
        Channel::Web,
        Channel::App,
        Channel::Store,
        Channel::CallCenter,
        Channel::Email,
        Channel::Chat,
        Channel::Survey,
        Channel::Other,
    ];

    /// The Avro symbol, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Web => "WEB",
            Channel::App => "APP",
            Channel::Store => "STORE",
            Channel::CallCenter => "CALL_CENTER",
            Channel::Email => "EMAIL",
            Channel::Chat => "CHAT",
            Channel::Survey => "SURVEY",
            Channel::Other => "OTHER",
        }
    }
}

/// The device a touchpoint came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Device {
    pub device_type: Option<String>,
    pub os: Option<String>,
    pub user_agent: Option<String>,
}

/// A page or screen.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Page {
    pub url: String,
    pub title: Option<String>,
    pub referrer: Option<String>,
}

/// A product looked at or put in a cart.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Product {
    pub product_id: String,
    pub name: Option<String>,
    pub category: Option<String>,
    pub price: Option<f64>,
    pub quantity: Option<i32>,
}

/// A completed order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub revenue: f64,
    pub currency: String,
    pub item_count: Option<i32>,
}

/// Survey or in-product feedback.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Feedback {
    pub nps: Option<i32>,
    pub csat: Option<i32>,
    pub comment: Option<String>,
    pub survey_id: Option<String>,
}

/// A support contact (call centre, chat, email).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Support {
    pub case_id: String,
    pub reason: Option<String>,
}

/// Marketing attribution of a touchpoint.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Campaign {
    pub source: String,
    pub medium: Option<String>,
    pub name: Option<String>,
}

/// One customer touchpoint (`schemas/customer_event.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CustomerEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub occurred_at: i64,
    pub received_at: Option<i64>,
    pub customer_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub channel: Channel,
    pub device: Option<Device>,
    pub page: Option<Page>,
    pub product: Option<Product>,
    pub order: Option<Order>,
    pub feedback: Option<Feedback>,
    pub support: Option<Support>,
    pub campaign: Option<Campaign>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl CustomerEvent {
    /// The order of a purchase; none for other events, nor for a purchase
    /// without one.
    pub fn purchase(&self) -> Option<&Order> {
        self.order
            .as_ref()
            .filter(|_| self.event_type == EventType::Purchase)
    }

    /// The key this event is partitioned and aggregated by: the customer id
    /// when known, else the anonymous id.
    pub fn customer_key(&self) -> Option<&str> {
        self.customer_id
            .as_deref()
            .or(self.anonymous_id.as_deref())
            .filter(|id| !id.is_empty())
    }
}

/// An anonymous visitor identified as a customer (`schemas/identity_merge.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IdentityMerge {
    pub merge_id: String,
    pub anonymous_id: String,
    pub customer_id: String,
    pub previous_customer_id: Option<String>,
    pub evidence_event_id: String,
    pub merged_at: i64,
}

/// How far down the funnel a session got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FunnelStep {
    #[default]
    Visit,
    ProductView,
    Cart,
    Checkout,
    Purchase,
}

/// A closed session (`schemas/session_summary.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub customer_id: String,
    pub start: i64,
    pub end: i64,
    pub duration_ms: i64,
    pub event_count: i32,
    #[serde(default)]
    pub channels: Vec<String>,
    pub entry_channel: String,
    pub campaign_source: Option<String>,
    #[serde(default)]
    pub page_views: i32,
    #[serde(default)]
    pub products_viewed: Vec<String>,
    #[serde(default)]
    pub cart_adds: i32,
    #[serde(default)]
    pub cart_removes: i32,
    #[serde(default)]
    pub checkout_started: bool,
    #[serde(default)]
    pub order_ids: Vec<String>,
    #[serde(default)]
    pub revenue: f64,
    pub currency: Option<String>,
    #[serde(default)]
    pub nps_scores: Vec<i32>,
    #[serde(default)]
    pub csat_scores: Vec<i32>,
    pub furthest_step: FunnelStep,
    #[serde(default)]
    pub engaged: bool,
    /// An early update of a session still open; the final summary has `false`.
    #[serde(default)]
    pub interim: bool,
}

/// A customer's journey stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Stage {
    Awareness,
    Consideration,
    Purchase,
    PostPurchase,
    Loyal,
    ChurnRisk,
    WinBack,
}

impl Stage {
    /// All stages, in contract order.
    pub const ALL: [Stage; 7] = [
        Stage::Awareness,
        Stage::Consideration,
        Stage::Purchase,
        Stage::PostPurchase,
        Stage::Loyal,
        Stage::ChurnRisk,
        Stage::WinBack,
    ];

    /// The Avro symbol, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Awareness => "AWARENESS",
            Stage::Consideration => "CONSIDERATION",
            Stage::Purchase => "PURCHASE",
            Stage::PostPurchase => "POST_PURCHASE",
            Stage::Loyal => "LOYAL",
            Stage::ChurnRisk => "CHURN_RISK",
            Stage::WinBack => "WIN_BACK",
        }
    }
}

/// A stage transition (`schemas/stage_change.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageChange {
    pub change_id: String,
    pub customer_id: String,
    pub from_stage: Option<Stage>,
    pub to_stage: Stage,
    pub rule: String,
    pub evidence_id: String,
    pub changed_at: i64,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    /// The Avro symbol, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// Whether an alert starts or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertStatus {
    #[default]
    Firing,
    Resolved,
}

/// An alert (`schemas/alert.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub rule: String,
    pub severity: Severity,
    pub status: AlertStatus,
    pub customer_id: Option<String>,
    pub summary: String,
    pub action_plan: Option<String>,
    pub evidence_id: String,
    pub fired_at: i64,
    #[serde(default)]
    pub context: BTreeMap<String, String>,
}

/// Why a record went to the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    NotAvro,
    UnknownSchema,
    RegistryUnavailable,
    SchemaViolation,
    SemanticViolation,
    TooLarge,
}

impl ErrorKind {
    /// The Avro symbol, also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotAvro => "NOT_AVRO",
            ErrorKind::UnknownSchema => "UNKNOWN_SCHEMA",
            ErrorKind::RegistryUnavailable => "REGISTRY_UNAVAILABLE",
            ErrorKind::SchemaViolation => "SCHEMA_VIOLATION",
            ErrorKind::SemanticViolation => "SEMANTIC_VIOLATION",
            ErrorKind::TooLarge => "TOO_LARGE",
        }
    }
}

/// A record a service could not process (`schemas/dead_letter.avsc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub service: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub error_kind: ErrorKind,
    pub message: String,
    pub field_path: Option<String>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    pub original_key: Option<Vec<u8>>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    pub original_value: Option<Vec<u8>>,
    pub failed_at: i64,
}

/// A customer's right to erasure (`schemas/erasure_request.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErasureRequest {
    pub request_id: String,
    pub customer_id: String,
    #[serde(default)]
    pub anonymous_ids: Vec<String>,
    pub requested_at: i64,
}

/// One id of an erasure request, for the services to delete (`schemas/erasure_task.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErasureTask {
    pub request_id: String,
    pub customer_id: String,
    pub subject: String,
    pub requested_at: i64,
}

/// Which step of an erasure an [`ErasureProgress`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErasureStep {
    /// Ingest took the request and asked every partition to scan for links.
    #[default]
    Planned,
    /// One ingest partition dropped the customer's identity links.
    Scanned,
    /// One service deleted one id's state.
    Erased,
}

/// A step of an erasure request (`schemas/erasure_progress.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErasureProgress {
    pub request_id: String,
    pub customer_id: String,
    pub step: ErasureStep,
    pub service: String,
    #[serde(default)]
    pub subjects: Vec<String>,
    pub partition: Option<i32>,
    pub partition_count: Option<i32>,
    pub requested_at: i64,
    pub at: i64,
}

/// An erasure request done by every service (`schemas/erasure_confirmation.avsc`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErasureConfirmation {
    pub request_id: String,
    pub customer_id: String,
    pub subjects: Vec<String>,
    pub services: Vec<String>,
    pub requested_at: i64,
    pub confirmed_at: i64,
}
