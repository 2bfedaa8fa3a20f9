//! The key of a pending timer in the store's ordered map: the timer's state
//! key, ordered exactly as its bytes, with its first 16 bytes (namespace,
//! partition, clock, due time and the start of the timer's own key) also
//! held inline as one integer.
//!
//! The map of pending timers is searched on every timer set or cancelled.
//! With plain byte keys each comparison on the way down reads the key's heap
//! block (a `memcmp` and often a cache miss); with the head inline, nearly
//! every comparison is decided by one integer compare within the node.

use std::cmp::Ordering;

/// Bytes of the key held inline.
const HEAD: usize = 16;

/// A timer's state key, ordered as its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TimerKey {
    /// The first [`HEAD`] bytes, zero-padded, big-endian.
    head: u128,
    bytes: Vec<u8>,
}

impl TimerKey {
    /// The key of `bytes`.
    pub(super) fn new(bytes: Vec<u8>) -> Self {
        let mut head = [0u8; HEAD];
        let len = bytes.len().min(HEAD);
        head[..len].copy_from_slice(&bytes[..len]);
        TimerKey {
            head: u128::from_be_bytes(head),
            bytes,
        }
    }

    /// The key's bytes.
    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Ord for TimerKey {
    /// Byte order. Heads compare as the first 16 bytes zero-padded: where
    /// they differ, the keys differ in that order (at the first differing
    /// byte, or the shorter key is a prefix of the longer); where they are
    /// equal, the whole bytes decide.
    fn cmp(&self, other: &Self) -> Ordering {
        self.head
            .cmp(&other.head)
            .then_with(|| self.bytes.cmp(&other.bytes))
    }
}

impl PartialOrd for TimerKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn timer_keys_order_as_their_bytes(
            a in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..24),
            b in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..24),
        ) {
            let expected = a.cmp(&b);
            prop_assert_eq!(TimerKey::new(a).cmp(&TimerKey::new(b)), expected);
        }
    }

    #[test]
    fn a_key_orders_before_its_extensions_even_by_zero_bytes() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"", b"\0"),
            (b"t\0\0", b"t\0\0\0"),
            (&[7; 16], &[7; 17]),
            (
                &[7; 16],
                &[7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 0],
            ),
        ];
        for (short, long) in cases {
            let (short, long) = (TimerKey::new(short.to_vec()), TimerKey::new(long.to_vec()));
            assert!(short < long, "{short:?} < {long:?}");
            assert!(long > short);
        }
    }
}
