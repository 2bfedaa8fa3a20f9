//! The contract's schemas, parsed once per process: the reader schemas
//! records decode into, and the schemas they are written with.

use std::sync::OnceLock;

use apache_avro::Schema;

use super::AvroRecord;
use crate::contract::{
    Alert, CustomerEvent, DeadLetter, ErasureConfirmation, ErasureProgress, ErasureRequest,
    ErasureTask, IdentityMerge, SessionSummary, StageChange,
};

/// How many record types the contract has.
pub(super) const RECORDS: usize = 10;

/// One contract record's schema, for both libraries.
pub(super) struct Reader {
    pub name: &'static str,
    pub avro: Schema,
    pub fast: serde_avro_fast::Schema,
}

impl Reader {
    fn of<T: AvroRecord>() -> Reader {
        // The schemas are compiled in and covered by tests: failing here is a build defect.
        Reader {
            name: T::NAME,
            avro: Schema::parse_str(T::SCHEMA)
                .unwrap_or_else(|e| panic!("schema of {} does not parse: {e}", T::NAME)),
            fast: T::SCHEMA.parse().unwrap_or_else(|e| {
                panic!(
                    "schema of {} does not parse for serde_avro_fast: {e}",
                    T::NAME
                )
            }),
        }
    }
}

/// Every contract record's schema, in a fixed order (a record's slot).
pub(super) fn all() -> &'static [Reader; RECORDS] {
    static READERS: OnceLock<[Reader; RECORDS]> = OnceLock::new();
    READERS.get_or_init(|| {
        [
            Reader::of::<CustomerEvent>(),
            Reader::of::<SessionSummary>(),
            Reader::of::<StageChange>(),
            Reader::of::<Alert>(),
            Reader::of::<DeadLetter>(),
            Reader::of::<IdentityMerge>(),
            Reader::of::<ErasureRequest>(),
            Reader::of::<ErasureTask>(),
            Reader::of::<ErasureProgress>(),
            Reader::of::<ErasureConfirmation>(),
        ]
    })
}

/// `T`'s position in [`all`].
pub(super) fn slot<T: AvroRecord>() -> usize {
    all()
        .iter()
        .position(|r| r.name == T::NAME)
        .expect("AvroRecord is sealed: every implementation is listed in `all`")
}

/// `T`'s schema.
pub(super) fn of<T: AvroRecord>() -> &'static Reader {
    &all()[slot::<T>()]
}
