//! Test fixture: a state store in a temporary directory with the builtin
//! codec, handing out processing contexts over it.

use tempfile::TempDir;

use super::{Context, Output};
use crate::codec::Codec;
use crate::state::StateStore;

/// A store, a codec and an outputs vector, as the loop holds them.
pub(crate) struct Fixture {
    _dir: TempDir,
    pub(crate) store: StateStore,
    codec: Codec,
    outputs: Vec<Output>,
}

impl Fixture {
    /// A fresh store within `memory_bytes` of state memory.
    pub(crate) fn new(memory_bytes: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path(), memory_bytes).unwrap();
        Fixture {
            _dir: dir,
            store,
            codec: Codec::builtin(),
            outputs: Vec::new(),
        }
    }

    /// A context over `partition` at stream time 0.
    pub(crate) fn ctx(&mut self, partition: i32) -> Context<'_> {
        Context::new(
            &mut self.store,
            &self.codec,
            &mut self.outputs,
            partition,
            0,
        )
    }
}
