//! Where anonymous ids were folded: the memory a processor keeps on an
//! anonymous id's partition after an identity merge, so that an event of the
//! visitor read after the merge (events and merges come on different topics)
//! can follow it to the customer instead of starting state of its own.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{now_millis, Context, InputRecord, ProcessError, Rejection};
use crate::contract::IdentityMerge;
use crate::state::{Clock, StateError};

/// Where a folded anonymous id went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldedInto {
    pub merge_id: String,
    pub customer_id: String,
    /// Wall-clock time (ms) after which it is forgotten.
    pub forget_at: i64,
}

/// The folded anonymous ids of a processor: kept under `prefix` + id, each
/// forgotten by a wall-clock timer on the same key.
#[derive(Debug, Clone, Copy)]
pub struct FoldedIds {
    prefix: &'static [u8],
    memory_ms: i64,
}

impl FoldedIds {
    /// Folded ids kept under keys starting with `prefix` for `memory_ms` of
    /// wall clock. The prefix must start no other key of the processor's
    /// state or timers.
    pub const fn new(prefix: &'static [u8], memory_ms: i64) -> Self {
        FoldedIds { prefix, memory_ms }
    }

    fn key(&self, anonymous_id: &str) -> Vec<u8> {
        [self.prefix, anonymous_id.as_bytes()].concat()
    }

    /// Remembers that `anonymous_id` went to `customer_id` by merge `merge_id`
    /// (renewing an earlier memory of it).
    pub fn remember(
        &self,
        ctx: &mut Context<'_>,
        anonymous_id: &str,
        merge_id: &str,
        customer_id: &str,
    ) {
        let key = self.key(anonymous_id);
        let forget_at = now_millis().saturating_add(self.memory_ms);
        ctx.state().put(
            &key,
            &FoldedInto {
                merge_id: merge_id.to_string(),
                customer_id: customer_id.to_string(),
                forget_at,
            },
        );
        ctx.set_timer(Clock::Wall, forget_at, &key);
    }

    /// Reads the identity merge `record` on the anonymous id's partition:
    /// rejects one without both ids, ignores one of an id into itself (`None`),
    /// and otherwise remembers where the anonymous id went.
    pub fn on_merge(
        &self,
        ctx: &mut Context<'_>,
        record: &InputRecord<'_>,
    ) -> Result<Option<IdentityMerge>, ProcessError> {
        let merge: IdentityMerge = ctx.codec().decode(record.payload.unwrap_or_default())?;
        if merge.anonymous_id.is_empty() || merge.customer_id.is_empty() {
            return Err(Rejection::semantic("anonymous_id", "merge without both ids").into());
        }
        if merge.anonymous_id == merge.customer_id {
            return Ok(None);
        }
        self.remember(
            ctx,
            &merge.anonymous_id,
            &merge.merge_id,
            &merge.customer_id,
        );
        Ok(Some(merge))
    }

    /// Where `anonymous_id` went, if it was folded within the memory.
    pub fn get(
        &self,
        ctx: &mut Context<'_>,
        anonymous_id: &str,
    ) -> Result<Option<FoldedInto>, StateError> {
        ctx.state().get(&self.key(anonymous_id))
    }

    /// Whether `key`, of a due timer, is one of these memories.
    pub fn owns(&self, key: &[u8]) -> bool {
        key.starts_with(self.prefix)
    }

    /// Forgets the memory under `key`, whose timer due at `at` fired, unless
    /// a later merge of the same id renewed it since.
    pub fn forget(&self, ctx: &mut Context<'_>, key: &[u8], at: i64) -> Result<(), StateError> {
        if let Some(folded) = ctx.state().get::<FoldedInto>(key)? {
            if folded.forget_at <= at {
                ctx.state().delete(key);
            }
        }
        Ok(())
    }

    /// Forgets where the erased id `subject` went, with every timer of its
    /// key (a renewed merge's earlier one too): an erased id leaves no key
    /// behind, in state or in the changelog.
    pub fn erase(&self, ctx: &mut Context<'_>, subject: &str) -> Result<(), StateError> {
        let key = self.key(subject);
        ctx.state().delete(&key);
        ctx.cancel_timers(&key)?;
        Ok(())
    }
}

/// The customer a record sent on to the customer's partition is keyed by;
/// `what` names the record in the rejection of one without.
pub fn folded_customer(record: &InputRecord<'_>, what: &str) -> Result<String, ProcessError> {
    match record.key.map(std::str::from_utf8) {
        Some(Ok(key)) if !key.is_empty() => Ok(key.to_string()),
        _ => {
            Err(Rejection::semantic("customer_id", format!("{what} without a customer key")).into())
        }
    }
}

/// The payload of a record sending `fold` on to the customer's partition
/// (postcard), as [`decode_fold`] reads it.
pub fn encode_fold<T: Serialize>(fold: &T) -> Result<Vec<u8>, ProcessError> {
    Ok(postcard::to_stdvec(fold).map_err(anyhow::Error::from)?)
}

/// The fold a record written with [`encode_fold`] carries, or the
/// rejection of one that does not decode.
pub fn decode_fold<T: DeserializeOwned>(record: &InputRecord<'_>) -> Result<T, ProcessError> {
    postcard::from_bytes(record.payload.unwrap_or_default())
        .map_err(|e| Rejection::undecodable(format!("fold record does not decode: {e}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Codec;
    use crate::runtime::fixture::Fixture;

    fn record<'a>(key: &'a [u8], payload: &'a [u8]) -> InputRecord<'a> {
        InputRecord {
            topic: "identities",
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: Some(key),
            payload: Some(payload),
        }
    }

    fn rejected(result: Result<impl std::fmt::Debug, ProcessError>) -> String {
        match result {
            Err(ProcessError::Rejected(rejection)) => rejection.message,
            other => panic!("not rejected: {other:?}"),
        }
    }

    #[test]
    fn a_merge_is_remembered_unless_it_lacks_an_id_or_folds_an_id_into_itself() {
        let folded = FoldedIds::new(b"a", 60_000);
        let mut fixture = Fixture::new(8 << 20);
        let codec = Codec::builtin();
        let merge = |anonymous: &str, customer: &str| {
            let merge = IdentityMerge {
                merge_id: "m1".into(),
                anonymous_id: anonymous.into(),
                customer_id: customer.into(),
                ..IdentityMerge::default()
            };
            codec.encode(&merge).unwrap()
        };
        let mut ctx = fixture.ctx(0);
        let without = merge("anon-1", "");
        let message = rejected(folded.on_merge(&mut ctx, &record(b"anon-1", &without)));
        assert_eq!(message, "merge without both ids");
        let itself = merge("c1", "c1");
        assert_eq!(
            folded.on_merge(&mut ctx, &record(b"c1", &itself)).unwrap(),
            None
        );
        assert_eq!(folded.get(&mut ctx, "c1").unwrap(), None);

        let payload = merge("anon-1", "c1");
        let read = folded.on_merge(&mut ctx, &record(b"anon-1", &payload));
        assert_eq!(read.unwrap().map(|m| m.customer_id), Some("c1".into()));
        let went = folded.get(&mut ctx, "anon-1").unwrap().expect("remembered");
        assert_eq!(
            (went.merge_id.as_str(), went.customer_id.as_str()),
            ("m1", "c1")
        );
    }

    #[test]
    fn a_record_sent_on_needs_a_customer_key() {
        assert_eq!(
            folded_customer(&record(b"c1", b""), "fold record").unwrap(),
            "c1"
        );
        let message = rejected(folded_customer(&record(b"", b""), "fold record"));
        assert_eq!(message, "fold record without a customer key");
    }

    #[test]
    fn a_fold_reads_back_as_written_and_garbage_is_rejected() {
        let fold = (String::from("m1"), 42_i64);
        let payload = encode_fold(&fold).unwrap();
        let read: (String, i64) = decode_fold(&record(b"c1", &payload)).unwrap();
        assert_eq!(read, fold);
        let message = rejected(decode_fold::<(String, i64)>(&record(b"c1", &[0xff; 3])));
        assert!(
            message.starts_with("fold record does not decode"),
            "{message}"
        );
    }
}
