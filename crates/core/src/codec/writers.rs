//! Writer schemas by id: a cache shared by a codec and its clones, filled
//! from a [`SchemaSource`] on a miss, with how each schema's records decode
//! into each contract type.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use apache_avro::Schema;

use super::readers::{self, RECORDS};
use super::{fast, generic, resolution, AvroRecord, DecodeError};

/// Where writer schemas unknown to the codec come from (a schema registry).
pub trait SchemaSource: Send + Sync {
    /// The schema text (`.avsc` JSON) registered under `id`.
    fn schema_text(&self, id: u32) -> Result<String, SchemaFetchError>;
}

/// Why a schema source gave no schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaFetchError {
    #[error("schema id {0} not found")]
    NotFound(u32),
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
}

/// One writer schema.
pub(super) struct Writer {
    pub avro: Schema,
    /// By contract record: how this writer's records decode into it.
    plans: [Plan; RECORDS],
}

/// How records of a writer schema decode into one contract type.
enum Plan {
    /// The writer is the contract schema, byte for byte the same layout.
    Contract,
    /// The fast path, with this (possibly adjusted) copy of the writer schema.
    Fast(serde_avro_fast::Schema),
    /// apache-avro's generic path.
    Generic,
}

impl Writer {
    /// `T`'s own schema as a writer schema.
    pub(super) fn contract<T: AvroRecord>() -> Writer {
        Writer::parse(T::SCHEMA)
            .unwrap_or_else(|e| panic!("schema of {} does not parse: {e}", T::NAME))
    }

    fn parse(text: &str) -> Result<Writer, String> {
        let avro = Schema::parse_str(text).map_err(|e| e.to_string())?;
        let canonical = avro.canonical_form();
        let plans = readers::all().each_ref().map(|reader| {
            // Parsing Canonical Form keeps every attribute that shapes the bytes.
            if canonical == reader.avro.canonical_form() {
                return Plan::Contract;
            }
            match resolution::fast_schema(text, &avro, &reader.avro) {
                Some(fast) => Plan::Fast(fast),
                None => Plan::Generic,
            }
        });
        Ok(Writer { avro, plans })
    }

    /// A datum written with this schema, as a `T`.
    pub(super) fn decode<T: AvroRecord>(&self, datum: &[u8]) -> Result<T, DecodeError> {
        let slot = readers::slot::<T>();
        let reader = &readers::all()[slot];
        match &self.plans[slot] {
            Plan::Contract => T::read_datum(datum, &reader.fast),
            Plan::Fast(fast) => fast::decode(fast, datum),
            Plan::Generic => generic::decode(&self.avro, &reader.avro, datum),
        }
    }
}

/// The cache of writer schemas.
pub(super) struct Writers {
    by_id: RwLock<HashMap<u32, Arc<Writer>>>,
    source: Option<Arc<dyn SchemaSource>>,
}

impl Writers {
    pub(super) fn new(source: Option<Arc<dyn SchemaSource>>) -> Self {
        Writers {
            by_id: RwLock::new(HashMap::new()),
            source,
        }
    }

    pub(super) fn insert(&self, id: u32, writer: Writer) {
        // A panic elsewhere cannot leave the map half-updated: keep using it.
        self.by_id
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(writer));
    }

    /// Calls `f` with the writer schema `id`, fetching it first if unknown.
    pub(super) fn with<R>(&self, id: u32, f: impl FnOnce(&Writer) -> R) -> Result<R, DecodeError> {
        if let Some(writer) = self
            .by_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Ok(f(writer));
        }
        // Fetched without holding the lock: a registry round trip must not stall other ids.
        let fetched = Arc::new(self.fetch(id)?);
        let writer = Arc::clone(
            self.by_id
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(id)
                .or_insert(fetched),
        );
        Ok(f(&writer))
    }

    fn fetch(&self, id: u32) -> Result<Writer, DecodeError> {
        let source = self.source.as_ref().ok_or(DecodeError::UnknownSchema(id))?;
        let text = source.schema_text(id).map_err(|e| match e {
            SchemaFetchError::NotFound(_) => DecodeError::UnknownSchema(id),
            SchemaFetchError::Unavailable(reason) => DecodeError::RegistryUnavailable(reason),
        })?;
        Writer::parse(&text).map_err(|message| DecodeError::InvalidSchema { id, message })
    }
}
