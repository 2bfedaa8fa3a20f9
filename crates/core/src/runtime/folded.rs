//! Where anonymous ids were folded: the memory a processor keeps on an
//! anonymous id's partition after an identity merge, so that an event of the
//! visitor read after the merge (events and merges come on different topics)
//! can follow it to the customer instead of starting state of its own.

use serde::{Deserialize, Serialize};

use super::{now_millis, Context};
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
