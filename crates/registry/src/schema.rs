//! A parsed Avro schema with the identity that decides whether two schema
//! texts are the same schema.

use apache_avro::Schema;

/// An Avro schema as registered: the text a client sent, parsed, and its identity.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    /// The schema text as first registered; served back unchanged.
    pub text: String,
    /// The parsed schema.
    pub schema: Schema,
    /// The schema as apache-avro writes it back: whitespace, key order and
    /// `{"type": "string"}`-style spellings normalized away.
    pub identity: String,
}

/// Why a schema text is not a usable Avro schema.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchema(String);

impl ParsedSchema {
    /// Parses an Avro schema text.
    ///
    /// The identity deliberately keeps defaults, logical types and aliases,
    /// which Avro's Parsing Canonical Form strips: two schemas that differ only
    /// in a default resolve data differently, so they get different ids
    /// (as in Confluent's registry). Docs are not part of it.
    pub fn parse(text: &str) -> Result<ParsedSchema, InvalidSchema> {
        let schema = Schema::parse_str(text).map_err(|e| InvalidSchema(e.to_string()))?;
        let identity = serde_json::to_string(&schema).map_err(|e| InvalidSchema(e.to_string()))?;
        Ok(ParsedSchema {
            text: text.to_string(),
            schema,
            identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(text: &str) -> String {
        ParsedSchema::parse(text).unwrap().identity
    }

    #[test]
    fn whitespace_key_order_and_spelled_out_primitives_are_the_same_schema() {
        let compact = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"string"}]}"#;
        let spaced = r#"{
            "fields": [ {"type": {"type": "string"}, "name": "x"} ],
            "name": "A",
            "type": "record"
        }"#;
        assert_eq!(identity(compact), identity(spaced));
    }

    #[test]
    fn a_different_default_is_a_different_schema() {
        let a = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","default":1}]}"#;
        let b = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","default":2}]}"#;
        assert_ne!(identity(a), identity(b));
    }

    #[test]
    fn a_logical_type_is_part_of_the_schema() {
        let plain = r#"{"type":"record","name":"A","fields":[{"name":"t","type":"long"}]}"#;
        let timestamp = r#"{"type":"record","name":"A","fields":[{"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#;
        assert_ne!(identity(plain), identity(timestamp));
    }

    #[test]
    fn text_is_kept_as_sent() {
        let text = r#"  "string"  "#;
        assert_eq!(ParsedSchema::parse(text).unwrap().text, text);
    }

    #[test]
    fn malformed_schemas_are_refused() {
        for text in [
            "",
            "{",
            r#"{"type":"record","name":"A"}"#,
            r#"{"type":"nope"}"#,
        ] {
            assert!(ParsedSchema::parse(text).is_err(), "{text:?} parsed");
        }
    }
}
