//! Identity stitching: which customer an event belongs to, and when an
//! anonymous visitor becomes a known customer.
//!
//! Links (anonymous id to customer id) are learnt from any event that carries
//! both ids, typically a login, identify or sign-up. Events are routed to
//! ingest's partitions by [`visitor_key`], so every event of one device or
//! cookie meets the links learnt from it.

use journey_core::contract::{CustomerEvent, IdentityMerge};

/// Ids that tracking code sends when it has none; they identify nobody.
const PLACEHOLDERS: [&str; 7] = ["", "null", "nil", "none", "undefined", "anonymous", "0"];

/// Whether `id` is a placeholder rather than an id ("null", "anonymous",
/// "0", "-1", blank, ...), compared without case or surrounding blanks.
pub fn is_placeholder(id: &str) -> bool {
    let id = id.trim();
    id == "-1"
        || PLACEHOLDERS
            .iter()
            .any(|placeholder| id.eq_ignore_ascii_case(placeholder))
}

/// Drops placeholder ids from `event`, so they neither key nor link anything.
pub fn drop_placeholders(event: &mut CustomerEvent) {
    for id in [&mut event.customer_id, &mut event.anonymous_id] {
        if id.as_deref().is_some_and(is_placeholder) {
            *id = None;
        }
    }
}

/// The key events are routed by inside ingest: the anonymous id when there
/// is one (it is what links are learnt for), else the customer id.
pub fn visitor_key(event: &CustomerEvent) -> Option<&str> {
    event
        .anonymous_id
        .as_deref()
        .or(event.customer_id.as_deref())
}

/// What stitching decided for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Stitched {
    /// The customer the event belongs to: the customer id, the linked
    /// customer of its anonymous id, or else the anonymous id itself.
    pub key: String,
    /// A link to store, with the merge record announcing it.
    pub merge: Option<IdentityMerge>,
}

/// Resolves `event` given the customer its anonymous id is linked to, if
/// any, and fills in `customer_id` from the link.
pub fn stitch(event: &mut CustomerEvent, linked: Option<&str>) -> Option<Stitched> {
    match (event.customer_id.clone(), event.anonymous_id.clone()) {
        (Some(customer), Some(anonymous)) => {
            let merge = (linked != Some(customer.as_str())).then(|| IdentityMerge {
                merge_id: journey_core::ids::derive(&[
                    b"identity-merge",
                    anonymous.as_bytes(),
                    customer.as_bytes(),
                    event.event_id.as_bytes(),
                ]),
                anonymous_id: anonymous,
                customer_id: customer.clone(),
                previous_customer_id: linked.map(str::to_string),
                evidence_event_id: event.event_id.clone(),
                merged_at: event.occurred_at,
            });
            Some(Stitched {
                key: customer,
                merge,
            })
        }
        (Some(customer), None) => Some(Stitched {
            key: customer,
            merge: None,
        }),
        (None, Some(anonymous)) => {
            let key = match linked {
                Some(customer) => {
                    event.customer_id = Some(customer.to_string());
                    customer.to_string()
                }
                None => anonymous,
            };
            Some(Stitched { key, merge: None })
        }
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(customer: Option<&str>, anonymous: Option<&str>) -> CustomerEvent {
        CustomerEvent {
            event_id: "e-1".into(),
            occurred_at: 1_000,
            customer_id: customer.map(str::to_string),
            anonymous_id: anonymous.map(str::to_string),
            ..CustomerEvent::default()
        }
    }

    #[test]
    fn placeholders_are_not_ids() {
        for id in [
            "",
            "  ",
            "null",
            "NULL",
            "anonymous",
            "Anonymous",
            "0",
            "-1",
            "undefined",
            "none",
            "nil",
        ] {
            assert!(is_placeholder(id), "{id:?}");
        }
        for id in ["c-1", "00", "anon-7", "nullable", "-2"] {
            assert!(!is_placeholder(id), "{id:?}");
        }
    }

    #[test]
    fn dropping_placeholders_leaves_real_ids() {
        let mut e = event(Some("null"), Some("a-1"));
        drop_placeholders(&mut e);
        assert_eq!((e.customer_id, e.anonymous_id), (None, Some("a-1".into())));
        let mut e = event(Some("c-1"), Some("anonymous"));
        drop_placeholders(&mut e);
        assert_eq!((e.customer_id, e.anonymous_id), (Some("c-1".into()), None));
    }

    #[test]
    fn visitor_key_prefers_the_anonymous_id() {
        assert_eq!(visitor_key(&event(Some("c"), Some("a"))), Some("a"));
        assert_eq!(visitor_key(&event(Some("c"), None)), Some("c"));
        assert_eq!(visitor_key(&event(None, None)), None);
    }

    #[test]
    fn first_event_with_both_ids_links_and_announces_a_merge() {
        let mut e = event(Some("c-1"), Some("a-1"));
        let stitched = stitch(&mut e, None).unwrap();
        assert_eq!(stitched.key, "c-1");
        let merge = stitched.merge.unwrap();
        assert_eq!(
            (merge.anonymous_id.as_str(), merge.customer_id.as_str()),
            ("a-1", "c-1")
        );
        assert_eq!(merge.previous_customer_id, None);
        assert_eq!(
            (merge.evidence_event_id.as_str(), merge.merged_at),
            ("e-1", 1_000)
        );
    }

    #[test]
    fn a_known_link_is_not_announced_again() {
        let mut e = event(Some("c-1"), Some("a-1"));
        assert_eq!(stitch(&mut e, Some("c-1")).unwrap().merge, None);
    }

    #[test]
    fn a_device_shared_by_another_customer_relinks() {
        let mut e = event(Some("c-2"), Some("a-1"));
        let merge = stitch(&mut e, Some("c-1")).unwrap().merge.unwrap();
        assert_eq!(merge.customer_id, "c-2");
        assert_eq!(merge.previous_customer_id.as_deref(), Some("c-1"));
    }

    #[test]
    fn anonymous_events_of_a_linked_visitor_belong_to_the_customer() {
        let mut e = event(None, Some("a-1"));
        let stitched = stitch(&mut e, Some("c-1")).unwrap();
        assert_eq!(stitched.key, "c-1");
        assert_eq!(e.customer_id.as_deref(), Some("c-1"));
        assert_eq!(e.anonymous_id.as_deref(), Some("a-1"));
    }

    #[test]
    fn unknown_visitors_stay_anonymous() {
        let mut e = event(None, Some("a-1"));
        assert_eq!(stitch(&mut e, None).unwrap().key, "a-1");
        assert_eq!(e.customer_id, None);
    }

    #[test]
    fn merge_ids_are_deterministic() {
        let a = stitch(&mut event(Some("c"), Some("a")), None)
            .unwrap()
            .merge;
        let b = stitch(&mut event(Some("c"), Some("a")), None)
            .unwrap()
            .merge;
        assert_eq!(a, b);
    }
}
