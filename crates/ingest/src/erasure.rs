//! Ingest's part of an erasure request: it takes the request, drops the
//! customer's identity links on every partition, sends a task per id to the
//! downstream services, gathers their steps and confirms the request.
//!
//! 1. A request (keyed by customer, on any partition) is planned: a
//!    `PLANNED` step lists the customer id and the anonymous ids it names,
//!    and the request goes to every partition of ingest's broadcast topic.
//! 2. Each partition drops the links it holds to the customer (links live on
//!    the anonymous id's partition, which ingest cannot tell from the
//!    customer id) and reports a `SCANNED` step with the anonymous ids it found.
//! 3. Steps are keyed by request id, so one partition gathers them
//!    ([`Tracker`]). Once planned and scanned everywhere, it sends one task
//!    per id; once every downstream service reported `ERASED` for every id,
//!    it writes the confirmation.

use std::collections::BTreeSet;

use journey_core::contract::{ErasureProgress, ErasureStep};
use serde::{Deserialize, Serialize};

/// What is known of one erasure request, kept under its request id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Tracker {
    /// Steps gathered so far.
    Pending(Pending),
    /// Confirmed: later repeats of its steps are ignored.
    Confirmed,
}

/// The steps of a request not confirmed yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub customer_id: String,
    pub requested_at: i64,
    /// Partitions that scan for links; known once planned.
    pub partition_count: Option<i32>,
    pub scanned: BTreeSet<i32>,
    /// Every id to erase.
    pub subjects: BTreeSet<String>,
    /// Ids whose task has been sent.
    pub tasked: BTreeSet<String>,
    /// (service, id) pairs reported erased.
    pub erased: BTreeSet<(String, String)>,
}

impl Pending {
    /// Takes in one step.
    pub fn apply(&mut self, step: &ErasureProgress) {
        self.customer_id.clone_from(&step.customer_id);
        self.requested_at = step.requested_at;
        match step.step {
            ErasureStep::Planned => {
                self.partition_count = step.partition_count;
                self.subjects.extend(step.subjects.iter().cloned());
            }
            ErasureStep::Scanned => {
                self.scanned.extend(step.partition);
                self.subjects.extend(step.subjects.iter().cloned());
            }
            ErasureStep::Erased => {
                for subject in &step.subjects {
                    self.erased.insert((step.service.clone(), subject.clone()));
                }
            }
        }
    }

    /// Ids whose task is due: every partition has scanned, and the task was not sent.
    pub fn take_due_tasks(&mut self) -> Vec<String> {
        let scanned_everywhere = self
            .partition_count
            .is_some_and(|n| (0..n).all(|p| self.scanned.contains(&p)));
        if !scanned_everywhere {
            return Vec::new();
        }
        let due: Vec<String> = self.subjects.difference(&self.tasked).cloned().collect();
        self.tasked.extend(due.iter().cloned());
        due
    }

    /// Whether each of `services` has erased every id, all tasks sent.
    pub fn is_done(&self, services: &[String]) -> bool {
        !self.subjects.is_empty()
            && self.tasked == self.subjects
            && self.subjects.iter().all(|subject| {
                services
                    .iter()
                    .all(|s| self.erased.contains(&(s.clone(), subject.clone())))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(step: ErasureStep, service: &str, subjects: &[&str]) -> ErasureProgress {
        ErasureProgress {
            request_id: "r".into(),
            customer_id: "c".into(),
            step,
            service: service.into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            requested_at: 10,
            at: 20,
            ..ErasureProgress::default()
        }
    }

    fn planned(partitions: i32, subjects: &[&str]) -> ErasureProgress {
        ErasureProgress {
            partition_count: Some(partitions),
            ..step(ErasureStep::Planned, "ingest", subjects)
        }
    }

    fn scanned(partition: i32, subjects: &[&str]) -> ErasureProgress {
        ErasureProgress {
            partition: Some(partition),
            ..step(ErasureStep::Scanned, "ingest", subjects)
        }
    }

    fn services() -> Vec<String> {
        vec!["sessionizer".into(), "classifier".into()]
    }

    #[test]
    fn tasks_wait_for_the_plan_and_every_partition_scan() {
        let mut pending = Pending::default();
        pending.apply(&scanned(1, &["a-1"]));
        assert!(pending.take_due_tasks().is_empty(), "not planned yet");
        pending.apply(&planned(2, &["c"]));
        assert!(
            pending.take_due_tasks().is_empty(),
            "partition 0 not scanned"
        );
        pending.apply(&scanned(0, &[]));
        assert_eq!(pending.take_due_tasks(), vec!["a-1", "c"]);
        assert!(pending.take_due_tasks().is_empty(), "tasks go once");
    }

    #[test]
    fn done_once_every_service_erased_every_id_in_any_order() {
        let mut pending = Pending::default();
        pending.apply(&step(ErasureStep::Erased, "classifier", &["c"]));
        pending.apply(&planned(1, &["c"]));
        pending.apply(&scanned(0, &["a-1"]));
        pending.take_due_tasks();
        for (service, subject) in [
            ("sessionizer", "c"),
            ("sessionizer", "a-1"),
            ("classifier", "a-1"),
        ] {
            assert!(!pending.is_done(&services()));
            pending.apply(&step(ErasureStep::Erased, service, &[subject]));
        }
        assert!(pending.is_done(&services()));
    }

    #[test]
    fn repeated_steps_change_nothing() {
        let mut once = Pending::default();
        for s in [planned(1, &["c"]), scanned(0, &["a"])] {
            once.apply(&s);
        }
        let mut twice = once.clone();
        twice.apply(&planned(1, &["c"]));
        twice.apply(&scanned(0, &["a"]));
        assert_eq!(once, twice);
    }

    #[test]
    fn not_done_before_its_tasks_are_sent() {
        let mut pending = Pending::default();
        pending.apply(&planned(1, &["c"]));
        for service in services() {
            pending.apply(&step(ErasureStep::Erased, &service, &["c"]));
        }
        assert!(!pending.is_done(&services()), "partition 0 never scanned");
    }
}
