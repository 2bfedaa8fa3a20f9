//! A hand-written Avro reader for `CustomerEvent` datums written with the
//! contract schema itself, the common case: half as fast again as serde's
//! deserializer. Evolved writer schemas go through `fast` or `generic`.
//! Tests check it reads what the writers write, and reads damaged datums as
//! `serde_avro_fast` does whenever it accepts them (it refuses more).

use std::collections::BTreeMap;

use super::DecodeError;
use crate::contract::{
    Campaign, Channel, CustomerEvent, Device, EventType, Feedback, Order, Page, Product, Support,
};

/// `EventType` by symbol index in the schema.
const EVENT_TYPES: [EventType; 19] = [
    EventType::PageView,
    EventType::ScreenView,
    EventType::ProductView,
    EventType::Search,
    EventType::AddToCart,
    EventType::RemoveFromCart,
    EventType::CheckoutStarted,
    EventType::Purchase,
    EventType::Refund,
    EventType::Login,
    EventType::Identify,
    EventType::SignUp,
    EventType::SupportContact,
    EventType::Feedback,
    EventType::EmailOpen,
    EventType::EmailClick,
    EventType::AdClick,
    EventType::StoreVisit,
    EventType::Other,
];

/// Reads a datum of the contract schema; it must use every byte.
pub(super) fn read(datum: &[u8]) -> Result<CustomerEvent, DecodeError> {
    let mut r = Reader { rest: datum };
    let event = CustomerEvent {
        event_id: r.string()?,
        event_type: r.symbol(&EVENT_TYPES)?,
        occurred_at: r.long()?,
        received_at: r.optional(Reader::long)?,
        customer_id: r.optional(Reader::string)?,
        anonymous_id: r.optional(Reader::string)?,
        channel: r.symbol(&Channel::ALL)?,
        device: r.optional(|r| {
            Ok(Device {
                device_type: r.optional(Reader::string)?,
                os: r.optional(Reader::string)?,
                user_agent: r.optional(Reader::string)?,
            })
        })?,
        page: r.optional(|r| {
            Ok(Page {
                url: r.string()?,
                title: r.optional(Reader::string)?,
                referrer: r.optional(Reader::string)?,
            })
        })?,
        product: r.optional(|r| {
            Ok(Product {
                product_id: r.string()?,
                name: r.optional(Reader::string)?,
                category: r.optional(Reader::string)?,
                price: r.optional(Reader::double)?,
                quantity: r.optional(Reader::int)?,
            })
        })?,
        order: r.optional(|r| {
            Ok(Order {
                order_id: r.string()?,
                revenue: r.double()?,
                currency: r.string()?,
                item_count: r.optional(Reader::int)?,
            })
        })?,
        feedback: r.optional(|r| {
            Ok(Feedback {
                nps: r.optional(Reader::int)?,
                csat: r.optional(Reader::int)?,
                comment: r.optional(Reader::string)?,
                survey_id: r.optional(Reader::string)?,
            })
        })?,
        support: r.optional(|r| {
            Ok(Support {
                case_id: r.string()?,
                reason: r.optional(Reader::string)?,
            })
        })?,
        campaign: r.optional(|r| {
            Ok(Campaign {
                source: r.string()?,
                medium: r.optional(Reader::string)?,
                name: r.optional(Reader::string)?,
            })
        })?,
        properties: r.map()?,
    };
    if !r.rest.is_empty() {
        return Err(violation(format!(
            "{} bytes left after the record",
            r.rest.len()
        )));
    }
    Ok(event)
}

fn violation(message: impl Into<String>) -> DecodeError {
    DecodeError::SchemaViolation(message.into())
}

/// The bytes not read yet.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    /// A zigzag varint of at most ten bytes.
    fn long(&mut self) -> Result<i64, DecodeError> {
        let mut z: u64 = 0;
        for (i, &byte) in self.rest.iter().enumerate().take(10) {
            if i == 9 && byte > 1 {
                break;
            }
            z |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.rest = &self.rest[i + 1..];
                return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        Err(violation("truncated or overlong varint"))
    }

    fn int(&mut self) -> Result<i32, DecodeError> {
        let n = self.long()?;
        i32::try_from(n).map_err(|_| violation(format!("int {n} out of range")))
    }

    fn double(&mut self) -> Result<f64, DecodeError> {
        let Some((bytes, rest)) = self.rest.split_first_chunk::<8>() else {
            return Err(violation("truncated double"));
        };
        self.rest = rest;
        Ok(f64::from_le_bytes(*bytes))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.long()?;
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|len| self.rest.get(..len))
            .ok_or_else(|| {
                violation(format!("string of {len} bytes in {} left", self.rest.len()))
            })?;
        self.rest = &self.rest[bytes.len()..];
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| violation(format!("string is not UTF-8: {e}")))
    }

    fn symbol<T: Copy>(&mut self, symbols: &[T]) -> Result<T, DecodeError> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| symbols.get(i).copied())
            .ok_or_else(|| violation(format!("enum index {index} out of range")))
    }

    /// A `["null", T]` union.
    fn optional<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.long()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            branch => Err(violation(format!("union branch {branch} out of range"))),
        }
    }

    /// A map of strings, in blocks; entries take at least two bytes each, so
    /// a corrupt count runs out of bytes rather than looping.
    fn map(&mut self) -> Result<BTreeMap<String, String>, DecodeError> {
        let mut entries = BTreeMap::new();
        loop {
            let count = match self.long()? {
                0 => return Ok(entries),
                n if n < 0 => {
                    // A negative count is followed by the block's size in bytes.
                    self.long()?;
                    n.unsigned_abs()
                }
                n => n.unsigned_abs(),
            };
            for _ in 0..count {
                let key = self.string()?;
                entries.insert(key, self.string()?);
            }
        }
    }
}
