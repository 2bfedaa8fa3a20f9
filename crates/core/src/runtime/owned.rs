//! What the loop keeps of each partition it owns, in one table indexed by
//! partition number, so a record costs one lookup.

use std::time::Instant;

use super::clock::PartitionClock;
use super::foreign_writes::ChangelogTail;
use crate::state::{StateError, StateStore};

/// One owned partition (of every input: the inputs are co-partitioned).
#[derive(Debug)]
pub(super) struct OwnedPartition {
    /// The input topics whose partition of this number is assigned.
    pub(super) topics: Vec<String>,
    /// Being restored, and paused meanwhile.
    pub(super) restoring: bool,
    /// Stream time, read from the store on first use.
    clock: Option<PartitionClock>,
    /// Stream time as last written to the store.
    stream_time_written: i64,
    /// Per input (by index): the next offset the state has not applied,
    /// read from the store on first use.
    applied: Vec<Option<i64>>,
    /// Per input: the offset to record in state and commit to Kafka at the
    /// next commit.
    to_commit: Vec<Option<i64>>,
    /// Keys a torn commit changed: the next commit writes their current
    /// values to the changelog over them.
    pub(super) torn: Vec<Vec<u8>>,
    /// This instance's records in the partition's changelog.
    pub(super) changelog: ChangelogTail,
}

impl OwnedPartition {
    fn new(inputs: usize) -> Self {
        OwnedPartition {
            topics: Vec::new(),
            restoring: false,
            clock: None,
            stream_time_written: i64::MIN,
            applied: vec![None; inputs],
            to_commit: vec![None; inputs],
            torn: Vec::new(),
            changelog: ChangelogTail::default(),
        }
    }

    /// The next offset of input `input` (`topic`) the state has not applied.
    pub(super) fn applied(
        &mut self,
        store: &StateStore,
        input: usize,
        topic: &str,
        partition: i32,
    ) -> Result<i64, StateError> {
        if let Some(offset) = self.applied[input] {
            return Ok(offset);
        }
        let offset = store.input_offset(topic, partition)?.unwrap_or(0);
        self.applied[input] = Some(offset);
        Ok(offset)
    }

    /// The partition's clock, started from the stored stream time.
    pub(super) fn clock(
        &mut self,
        store: &StateStore,
        partition: i32,
        now: Instant,
    ) -> Result<&mut PartitionClock, StateError> {
        if self.clock.is_none() {
            let stored = store.stream_time(partition)?.unwrap_or(i64::MIN);
            self.stream_time_written = stored;
            self.clock = Some(PartitionClock::new(stored, now));
        }
        Ok(self.clock.as_mut().expect("set above"))
    }

    /// Notes that the state now reflects input `input` up to `next` (exclusive).
    pub(super) fn applied_up_to(&mut self, input: usize, next: i64) {
        self.applied[input] = Some(next);
        self.to_commit[input] = Some(next);
    }

    /// Forgets what was read from the store, after a restore replaced it.
    pub(super) fn reload(&mut self) {
        self.clock = None;
        self.applied.fill(None);
    }

    /// The offsets to record and commit, per input, taken.
    pub(super) fn take_to_commit(&mut self) -> impl Iterator<Item = (usize, i64)> + '_ {
        self.to_commit
            .iter_mut()
            .enumerate()
            .filter_map(|(input, offset)| Some((input, offset.take()?)))
    }

    /// Stream time if it moved on since it was last written; marks it written.
    pub(super) fn stream_time_to_write(&mut self) -> Option<i64> {
        let time = self.clock?.stream_time;
        (time > self.stream_time_written).then(|| {
            self.stream_time_written = time;
            time
        })
    }
}

/// The owned partitions, by number.
#[derive(Debug)]
pub(super) struct OwnedPartitions {
    inputs: usize,
    slots: Vec<Option<OwnedPartition>>,
}

impl OwnedPartitions {
    /// No partitions yet, of `inputs` co-partitioned inputs.
    pub(super) fn new(inputs: usize) -> Self {
        OwnedPartitions {
            inputs,
            slots: Vec::new(),
        }
    }

    pub(super) fn get(&self, partition: i32) -> Option<&OwnedPartition> {
        self.slots.get(usize::try_from(partition).ok()?)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, partition: i32) -> Option<&mut OwnedPartition> {
        self.slots
            .get_mut(usize::try_from(partition).ok()?)?
            .as_mut()
    }

    /// The partition, owned from now on if it was not.
    pub(super) fn own(&mut self, partition: i32) -> &mut OwnedPartition {
        let index = usize::try_from(partition).expect("Kafka partitions are not negative");
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.slots[index].get_or_insert_with(|| OwnedPartition::new(self.inputs))
    }

    pub(super) fn remove(&mut self, partition: i32) -> Option<OwnedPartition> {
        self.slots.get_mut(usize::try_from(partition).ok()?)?.take()
    }

    /// The owned partitions, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (i32, &OwnedPartition)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(p, slot)| Some((p as i32, slot.as_ref()?)))
    }

    /// The owned partitions, in order, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (i32, &mut OwnedPartition)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(p, slot)| Some((p as i32, slot.as_mut()?)))
    }

    /// Whether `partition` is owned and restored.
    pub(super) fn is_ready(&self, partition: i32) -> bool {
        self.get(partition).is_some_and(|owned| !owned.restoring)
    }

    /// The owned partitions that are restored, in order.
    pub(super) fn ready(&self) -> impl Iterator<Item = i32> + '_ {
        self.iter()
            .filter(|(_, owned)| !owned.restoring)
            .map(|(partition, _)| partition)
    }

    /// Whether no owned partition is restoring.
    pub(super) fn all_ready(&self) -> bool {
        self.iter().all(|(_, owned)| !owned.restoring)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_found_by_number_and_forgotten_when_removed() {
        let mut owned = OwnedPartitions::new(1);
        owned.own(5).topics.push("events".into());
        owned.own(2);
        assert_eq!(owned.iter().map(|(p, _)| p).collect::<Vec<_>>(), [2, 5]);
        assert_eq!(owned.get(5).unwrap().topics, ["events"]);
        assert!(owned.get(3).is_none() && owned.get(9).is_none() && owned.get(-1).is_none());
        assert!(owned.remove(5).is_some());
        assert!(owned.get(5).is_none());
    }

    #[test]
    fn offsets_to_commit_are_taken_once() {
        let mut owned = OwnedPartitions::new(2);
        let partition = owned.own(0);
        partition.applied_up_to(1, 42);
        assert_eq!(partition.take_to_commit().collect::<Vec<_>>(), [(1, 42)]);
        assert_eq!(partition.take_to_commit().count(), 0);
    }
}
