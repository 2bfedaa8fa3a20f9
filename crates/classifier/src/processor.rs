//! The classifier processor: profile and stage per customer, stage changes out.

use journey_core::contract::{Stage, StageChange};
use journey_core::ids;
use journey_core::runtime::{Context, InputRecord, ProcessError, Processor};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::profile::Profile;
use crate::stage::next_stage;

/// Keeps each customer's profile and stage, emitting a record per transition.
pub struct Classifier {
    output_topic: String,
    transitions: IntCounterVec,
}

impl Classifier {
    /// A classifier emitting stage changes to `output_topic`.
    pub fn new(output_topic: String, registry: &Registry) -> Self {
        Classifier {
            output_topic,
            transitions: journey_core::metrics::register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "stage_transitions_total",
                        "Stage transitions by from and to stage.",
                    ),
                    &["from", "to"],
                )
                .expect("valid metric"),
            ),
        }
    }
}

fn stage_label(stage: Option<Stage>) -> &'static str {
    stage.map_or("NONE", Stage::as_str)
}

impl Processor for Classifier {
    fn process(
        &mut self,
        record: &InputRecord<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let (event, customer) = ctx.customer_event(record)?;
        let key = customer.as_bytes();
        let mut profile: Profile = ctx
            .state()
            .get(key)?
            .unwrap_or_else(|| Profile::new(event.occurred_at));
        profile.observe(&event);
        if let Some(transition) = next_stage(profile.stage, &event) {
            let from = profile.stage;
            let change = StageChange {
                change_id: ids::derive(&[
                    key,
                    stage_label(from).as_bytes(),
                    transition.to.as_str().as_bytes(),
                    event.event_id.as_bytes(),
                ]),
                customer_id: customer.clone(),
                from_stage: from,
                to_stage: transition.to,
                rule: transition.rule.to_string(),
                evidence_id: event.event_id.clone(),
                changed_at: event.occurred_at,
            };
            ctx.emit(&self.output_topic, &customer, &change, event.occurred_at)?;
            self.transitions
                .with_label_values(&[stage_label(from), transition.to.as_str()])
                .inc();
            profile.stage = Some(transition.to);
            profile.stage_since = event.occurred_at;
        }
        ctx.state().put(key, &profile);
        Ok(())
    }
}
