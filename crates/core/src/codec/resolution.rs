//! When the fast path decodes exactly as Avro schema resolution does.
//!
//! The fast path reads a datum with its writer schema and lets serde fill the
//! contract type by field and symbol name. That gives what resolving the
//! writer schema to the reader schema gives (apache-avro's `resolve`) when,
//! recursively:
//! - records: each reader field is in the writer, or is missing with a default
//!   equal to the Rust type's default (`null`, `0`, `false`, `""`, `[]`, `{}`),
//!   which the contract types take with `#[serde(default)]`; writer fields the
//!   reader lacks are skipped;
//! - enums of the same name: the writer has no symbol the reader lacks, or the
//!   reader names a default; the fast path's copy of the writer schema then
//!   calls those symbols by the default's name, which is what resolution
//!   turns them into;
//! - unions: `null` and one other branch on both sides, or a plain writer
//!   type read into such a union;
//! - arrays and maps: their items do;
//! - primitives: the same type, or a promotion: int to long, int, long or
//!   float to double, int or long to timestamp-millis.
//!
//! Every other writer schema takes the generic path.

use std::collections::HashMap;

use apache_avro::schema::{EnumSchema, Name, RecordField, ResolvedSchema, Schema};
use serde_avro_fast::schema::{RegularType, SchemaMut};

/// Named types by full name, to follow references.
type Names<'s> = HashMap<Name, &'s Schema>;

/// The schema the fast path decodes records written with `writer_text` into
/// `reader`'s type with, if it decodes them exactly as schema resolution would.
pub(super) fn fast_schema(
    writer_text: &str,
    writer: &Schema,
    reader: &Schema,
) -> Option<serde_avro_fast::Schema> {
    let writer_names = ResolvedSchema::try_from(writer).ok()?;
    let reader_names = ResolvedSchema::try_from(reader).ok()?;
    let mut walk = Walk {
        writer: writer_names.get_names(),
        reader: reader_names.get_names(),
        enums: HashMap::new(),
    };
    // The walk follows the reader, a contract type: finite, so it ends.
    if !walk.matches(writer, reader) {
        return None;
    }
    let mut fast: SchemaMut = writer_text.parse().ok()?;
    if walk.enums.values().any(|r| r.default.is_some()) {
        for node in fast.nodes_mut() {
            let RegularType::Enum(e) = &mut node.type_ else {
                continue;
            };
            let Some(EnumSchema {
                symbols,
                default: Some(default),
                ..
            }) = walk.enums.get(e.name.fully_qualified_name())
            else {
                continue;
            };
            for symbol in e.symbols.iter_mut().filter(|s| !symbols.contains(s)) {
                symbol.clone_from(default);
            }
        }
    }
    fast.freeze().ok()
}

struct Walk<'a, 's> {
    writer: &'a Names<'s>,
    reader: &'a Names<'s>,
    /// The reader enum each writer enum (by full name) decodes into.
    enums: HashMap<String, &'a EnumSchema>,
}

impl<'a> Walk<'a, '_> {
    fn matches(&mut self, writer: &'a Schema, reader: &'a Schema) -> bool {
        let (Some(writer), Some(reader)) =
            (follow(writer, self.writer), follow(reader, self.reader))
        else {
            return false;
        };
        match (writer, reader) {
            (Schema::Record(w), Schema::Record(r)) => {
                r.fields
                    .iter()
                    .all(|field| match w.lookup.get(&field.name) {
                        Some(&i) => self.matches(&w.fields[i].schema, &field.schema),
                        None => has_zero_default(field),
                    })
            }
            (Schema::Enum(w), Schema::Enum(r)) => {
                let fits = w.name.name == r.name.name
                    && (r.default.is_some() || w.symbols.iter().all(|s| r.symbols.contains(s)));
                // One writer enum read as two reader enums cannot be renamed for both.
                let reader = *self.enums.entry(w.name.fullname(None)).or_insert(r);
                fits && reader.name == r.name
            }
            (Schema::Array(w), Schema::Array(r)) => self.matches(&w.items, &r.items),
            (Schema::Map(w), Schema::Map(r)) => self.matches(&w.types, &r.types),
            (Schema::Union(w), Schema::Union(r)) => {
                match (nullable(w.variants()), nullable(r.variants())) {
                    (Some(w), Some(r)) => self.matches(w, r),
                    _ => false,
                }
            }
            (Schema::Union(_), _) => false,
            (w, Schema::Union(r)) => match nullable(r.variants()) {
                Some(r) => matches!(w, Schema::Null) || self.matches(w, r),
                None => false,
            },
            (w, r) => promotes(w, r),
        }
    }
}

/// The schema a reference names, or the schema itself.
fn follow<'a>(schema: &'a Schema, names: &'a Names<'_>) -> Option<&'a Schema> {
    match schema {
        Schema::Ref { name } => names.get(name).copied(),
        other => Some(other),
    }
}

/// The non-null branch of a `null`-and-one-other union.
fn nullable(variants: &[Schema]) -> Option<&Schema> {
    match variants {
        [Schema::Null, other] | [other, Schema::Null] if !matches!(other, Schema::Null) => {
            Some(other)
        }
        _ => None,
    }
}

/// Whether a field's default is what the Rust type defaults to.
fn has_zero_default(field: &RecordField) -> bool {
    use serde_json::Value as Json;
    let Some(default) = &field.default else {
        return false;
    };
    match (&field.schema, default) {
        (Schema::Union(u), Json::Null) => matches!(u.variants().first(), Some(Schema::Null)),
        (Schema::Map(_), Json::Object(entries)) => entries.is_empty(),
        (Schema::Array(_), Json::Array(items)) => items.is_empty(),
        (Schema::Boolean, Json::Bool(b)) => !b,
        (Schema::String, Json::String(s)) => s.is_empty(),
        (
            Schema::Int | Schema::Long | Schema::Float | Schema::Double | Schema::TimestampMillis,
            Json::Number(n),
        ) => n.as_f64().map(f64::to_bits) == Some(0),
        _ => false,
    }
}

/// Whether a writer primitive reads as the reader primitive, as serde reads it.
fn promotes(writer: &Schema, reader: &Schema) -> bool {
    use Schema::*;
    matches!(
        (writer, reader),
        (Null, Null)
            | (Boolean, Boolean)
            | (Int, Int)
            | (Long, Long)
            | (Float, Float)
            | (Double, Double)
            | (Bytes, Bytes)
            | (String, String)
            | (TimestampMillis, TimestampMillis)
            | (Int, Long)
            | (Int | Long | Float, Double)
            | (Int | Long, TimestampMillis)
    )
}
