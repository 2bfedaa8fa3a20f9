//! Telling another writer's changelog records from this instance's own.
//!
//! Without transactions nothing fences a stalled former owner: one that
//! stopped heartbeating while its partitions moved here may, once it
//! resumes, commit once more before it hears it was thrown out. That
//! commit's changelog records would shadow this instance's values for every
//! later restore, and compaction keeps them as the keys' latest.
//!
//! This instance's idempotent producer appends its records to a changelog
//! partition in order, so any offset between where its restore ended and
//! where its own records landed is someone else's, and so is any offset
//! past its last record and below the partition's end, read once its own
//! records are acknowledged. Each commit checks the partitions it wrote;
//! every `runtime.changelog_check_interval` a commit also reads the end of
//! every partition owned, so a quiet partition is checked too. When a check
//! finds such records, the commit reads their keys back and writes its own
//! values over them before it commits its state.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::restore::{changelog_reader, STALL};
use crate::config::KafkaConfig;
use crate::state::CommitMarker;

/// Where this instance's records in one changelog partition are, since its
/// last check.
#[derive(Debug, Default)]
pub(crate) struct ChangelogTail {
    /// Every offset before this is accounted for: restored, or checked.
    /// `None` until the partition's restore ends.
    checked_to: Option<i64>,
    /// This instance's records since, as ranges in the order acknowledged.
    ours: Vec<Range<i64>>,
}

impl ChangelogTail {
    /// Starts over from a restore that read up to `end` (exclusive).
    pub(crate) fn restored(&mut self, end: i64) {
        self.checked_to = Some(end);
        self.ours.clear();
    }

    /// Notes a record of this instance acknowledged at `offset`.
    pub(crate) fn appended(&mut self, offset: i64) {
        match self.ours.last_mut() {
            Some(last) if last.end == offset => last.end += 1,
            _ => self.ours.push(offset..offset + 1),
        }
    }

    /// The offset after this instance's last record, if it wrote one since
    /// the last check.
    pub(crate) fn end(&self) -> Option<i64> {
        self.ours.iter().map(|r| r.end).max()
    }

    /// The offsets that are not this instance's own, as ranges, up to its
    /// last record or up to `high`, the partition's end read after its
    /// records were acknowledged, whichever is further; everything up to
    /// there is accounted for from now on. `high` is ignored until the
    /// partition's restore ends.
    pub(crate) fn check(&mut self, high: Option<i64>) -> Vec<Range<i64>> {
        let high = high.filter(|_| self.checked_to.is_some());
        let Some(end) = self.end().max(high) else {
            return Vec::new();
        };
        let mut ours = std::mem::take(&mut self.ours);
        ours.sort_unstable_by_key(|r| r.start);
        let mut foreign = Vec::new();
        if let Some(mut cursor) = self.checked_to {
            for range in ours {
                if range.start > cursor {
                    foreign.push(cursor..range.start);
                }
                cursor = cursor.max(range.end);
            }
            if end > cursor {
                foreign.push(cursor..end);
            }
        }
        self.checked_to = Some(end);
        foreign
    }
}

/// Another writer's records found in a changelog partition: how many, and
/// the distinct keys they changed (commit markers left out).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ForeignRecords {
    pub(crate) records: u64,
    pub(crate) keys: Vec<Vec<u8>>,
}

/// Reads the records at `ranges` (in offset order) of `changelog`/`partition`.
/// Offsets compaction already removed are skipped.
pub(crate) fn read_foreign(
    kafka: &KafkaConfig,
    changelog: &str,
    partition: i32,
    ranges: &[Range<i64>],
) -> anyhow::Result<ForeignRecords> {
    let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
        return Ok(ForeignRecords::default());
    };
    let consumer = changelog_reader(kafka)?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(changelog, partition, Offset::Offset(first.start))?;
    consumer.assign(&assignment)?;
    let mut found = ForeignRecords::default();
    let mut next = first.start;
    let mut last_progress = Instant::now();
    while next < last.end {
        match consumer.poll(Duration::from_millis(500)) {
            None => anyhow::ensure!(
                last_progress.elapsed() < STALL,
                "reading back {changelog}/{partition}: no record for {STALL:?} at offset {next}"
            ),
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => {
                return Err(e).with_context(|| format!("reading back {changelog}/{partition}"))
            }
            Some(Ok(message)) => {
                last_progress = Instant::now();
                next = message.offset() + 1;
                if !ranges.iter().any(|r| r.contains(&message.offset())) {
                    continue;
                }
                found.records += 1;
                let key = message.key().unwrap_or_default();
                if CommitMarker::of(key, message.payload()).is_none() {
                    found.keys.push(key.to_vec());
                }
            }
        }
    }
    found.keys.sort_unstable();
    found.keys.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case: its name, where the restore ended, the offsets this instance's
    /// records landed at, the partition's end read at the check (if it was),
    /// and the foreign offsets found, as (start, end).
    type Case<'a> = (
        &'a str,
        Option<i64>,
        &'a [i64],
        Option<i64>,
        &'a [(i64, i64)],
    );

    /// The ranges a check of `tail` finds with the partition's end `high`, as (start, end).
    fn check(tail: &mut ChangelogTail, high: Option<i64>) -> Vec<(i64, i64)> {
        tail.check(high)
            .into_iter()
            .map(|r| (r.start, r.end))
            .collect()
    }

    #[test]
    fn offsets_between_the_restore_and_the_end_that_are_not_this_instances_are_foreign() {
        let cases: &[Case] = &[
            (
                "right after the restore",
                Some(10),
                &[10, 11, 12],
                None,
                &[],
            ),
            ("nothing written", Some(10), &[], None, &[]),
            (
                "before the first commit",
                Some(10),
                &[14, 15],
                None,
                &[(10, 14)],
            ),
            (
                "between two",
                Some(10),
                &[10, 11, 13, 14],
                None,
                &[(12, 13)],
            ),
            (
                "before and inside",
                Some(10),
                &[12, 15, 16],
                None,
                &[(10, 12), (13, 15)],
            ),
            (
                "acknowledged out of order",
                Some(10),
                &[11, 10, 13],
                None,
                &[(12, 13)],
            ),
            ("no restore ended", None, &[14, 15], None, &[]),
            ("quiet, the end where it was", Some(10), &[], Some(10), &[]),
            ("quiet, the end moved", Some(10), &[], Some(12), &[(10, 12)]),
            (
                "past the last record",
                Some(10),
                &[10, 11],
                Some(14),
                &[(12, 14)],
            ),
            (
                "the end at the last record",
                Some(10),
                &[10, 11],
                Some(12),
                &[],
            ),
            (
                "the end read behind the last record",
                Some(10),
                &[10, 11, 12],
                Some(11),
                &[],
            ),
            (
                "inside and past",
                Some(10),
                &[10, 12],
                Some(15),
                &[(11, 12), (13, 15)],
            ),
            ("still restoring", None, &[], Some(12), &[]),
        ];
        for (case, restored, offsets, high, foreign) in cases {
            let mut tail = ChangelogTail::default();
            if let Some(end) = restored {
                tail.restored(*end);
            }
            for &offset in *offsets {
                tail.appended(offset);
            }
            assert_eq!(check(&mut tail, *high), *foreign, "{case}");
        }
    }

    #[test]
    fn each_check_starts_where_the_last_ended() {
        let mut tail = ChangelogTail::default();
        tail.restored(0);
        for offset in [0, 1, 2] {
            tail.appended(offset);
        }
        assert_eq!(tail.end(), Some(3));
        assert_eq!(check(&mut tail, None), []);
        assert_eq!(tail.end(), None, "nothing since the check");
        assert_eq!(check(&mut tail, None), [], "a commit that wrote nothing");
        // Another writer took 3..5; this instance's next records follow.
        tail.appended(5);
        tail.appended(6);
        assert_eq!(check(&mut tail, None), [(3, 5)]);
        tail.appended(7);
        assert_eq!(check(&mut tail, None), [], "found once");
        // Then 8..10 on a quiet partition, found by its end.
        assert_eq!(check(&mut tail, Some(10)), [(8, 10)]);
        assert_eq!(check(&mut tail, Some(10)), [], "found once by its end");
        tail.appended(10);
        assert_eq!(check(&mut tail, Some(11)), []);
        tail.restored(20);
        tail.appended(20);
        assert_eq!(
            check(&mut tail, Some(21)),
            [],
            "a new restore read everything before it"
        );
    }
}
