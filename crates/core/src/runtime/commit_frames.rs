//! Reading a changelog partition commit by commit, so a restore never applies
//! half a commit.
//!
//! Each commit writes a partition's changes between a begin and an end
//! [`CommitMarker`]. A crash while the commit is produced leaves a begin and
//! some changes with no end: they are torn, and a restore leaves out
//! everything after the last end it reads. The first commit after the
//! restore writes the restored values of the torn keys over them, so they
//! are harmless to every later restore, compaction included: changes
//! outside any begin..end (older commits whose begin compaction dropped,
//! and changelogs written before the markers) are complete and applied as read.

use std::collections::BTreeSet;

use crate::state::{Change, CommitMarker};

/// One commit's `changes` as the changelog takes them: each partition's
/// between its begin and end markers, in the order given.
pub(crate) fn frame(changes: Vec<Change>) -> impl Iterator<Item = Change> {
    let partitions: BTreeSet<i32> = changes.iter().map(|c| c.partition).collect();
    let begins: Vec<Change> = partitions
        .iter()
        .map(|&p| CommitMarker::Begin.record(p))
        .collect();
    let ends = partitions.into_iter().map(|p| CommitMarker::End.record(p));
    begins.into_iter().chain(changes).chain(ends)
}

/// Changelog records in offset order, split into complete changes and the
/// changes of a commit whose end has not been read.
#[derive(Debug)]
pub(crate) struct CommitFrames {
    complete: Vec<Change>,
    /// The changes since a begin with no end yet, if one was read.
    open: Option<Vec<Change>>,
    /// The offset after the last complete change: where a later restore
    /// continues from.
    complete_to: i64,
}

impl CommitFrames {
    /// Reading from offset `from`.
    pub(crate) fn new(from: i64) -> Self {
        CommitFrames {
            complete: Vec::new(),
            open: None,
            complete_to: from,
        }
    }

    /// Takes the record at `offset`.
    pub(crate) fn push(&mut self, offset: i64, change: Change) {
        match CommitMarker::of(&change.key, change.value.as_deref()) {
            // A begin inside an open commit: the open one was torn; both
            // stay open, the end of this one completes them together.
            Some(CommitMarker::Begin) => {
                self.open.get_or_insert_with(Vec::new);
            }
            Some(CommitMarker::End) => {
                if let Some(open) = self.open.take() {
                    self.complete.extend(open);
                }
                self.complete_to = offset + 1;
            }
            None => match &mut self.open {
                Some(open) => open.push(change),
                None => {
                    self.complete.push(change);
                    self.complete_to = offset + 1;
                }
            },
        }
    }

    /// How many complete changes wait to be taken.
    pub(crate) fn complete_len(&self) -> usize {
        self.complete.len()
    }

    /// The complete changes read so far, and the offset a restore that
    /// applied them continues from.
    pub(crate) fn take_complete(&mut self) -> (Vec<Change>, i64) {
        (std::mem::take(&mut self.complete), self.complete_to)
    }

    /// At the end of the partition (offset `end`): the complete changes not
    /// taken yet, the offset a restore that applied them continues from, and
    /// the keys of the torn changes left out.
    pub(crate) fn finish(mut self, end: i64) -> (Vec<Change>, i64, Vec<Vec<u8>>) {
        let mut torn: Vec<Vec<u8>> = match self.open.take() {
            Some(open) => open.into_iter().map(|change| change.key).collect(),
            // Nothing is open: offsets up to the end hold nothing more.
            None => {
                self.complete_to = self.complete_to.max(end);
                Vec::new()
            }
        };
        torn.sort_unstable();
        torn.dedup();
        (self.complete, self.complete_to, torn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case: its name, the log from offset 10 (to 20), the complete
    /// changes (key, position in the log), where a later restore continues
    /// from, and the torn keys.
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a [(&'a str, u8)],
        i64,
        &'a [&'a str],
    );

    const BEGIN: &str = "<";
    const END: &str = ">";

    /// The changelog records `log` names in order: markers, or a change to
    /// the key named (value: the record's position).
    fn read(log: &[&str], from: i64, end: i64) -> (Vec<(String, u8)>, i64, Vec<String>) {
        let mut frames = CommitFrames::new(from);
        for (i, name) in log.iter().enumerate() {
            let change = match *name {
                BEGIN => CommitMarker::Begin.record(0),
                END => CommitMarker::End.record(0),
                key => Change {
                    partition: 0,
                    key: key.as_bytes().to_vec(),
                    value: Some(vec![i as u8]),
                },
            };
            frames.push(from + i as i64, change);
        }
        let (complete, to, torn) = frames.finish(end);
        let name = |key: Vec<u8>| String::from_utf8(key).unwrap();
        (
            complete
                .into_iter()
                .map(|c| (name(c.key), c.value.unwrap()[0]))
                .collect(),
            to,
            torn.into_iter().map(name).collect(),
        )
    }

    #[test]
    fn only_changes_up_to_the_last_end_marker_are_restored() {
        let cases: &[Case] = &[
            (
                "no markers: written before them",
                &["a", "b"],
                &[("a", 0), ("b", 1)],
                20,
                &[],
            ),
            (
                "one whole commit",
                &[BEGIN, "a", "b", END],
                &[("a", 1), ("b", 2)],
                20,
                &[],
            ),
            (
                "a commit torn at the end",
                &[BEGIN, "a", END, BEGIN, "b", "a"],
                &[("a", 1)],
                13,
                &["a", "b"],
            ),
            (
                "torn before any change",
                &[BEGIN, "a", END, BEGIN],
                &[("a", 1)],
                13,
                &[],
            ),
            (
                "a torn commit, then the one that wrote over it",
                &[BEGIN, "a", "b", BEGIN, "a", "b", END],
                &[("a", 1), ("b", 2), ("a", 4), ("b", 5)],
                20,
                &[],
            ),
            (
                "two torn commits in a row",
                &[BEGIN, "a", END, BEGIN, "b", BEGIN, "c"],
                &[("a", 1)],
                13,
                &["b", "c"],
            ),
            (
                "compacted: earlier begins and ends gone",
                &["a", "b", BEGIN, "c", END],
                &[("a", 0), ("b", 1), ("c", 3)],
                20,
                &[],
            ),
            (
                "compacted, then torn",
                &["a", "b", BEGIN, "c"],
                &[("a", 0), ("b", 1)],
                12,
                &["c"],
            ),
        ];
        for (case, log, complete, to, torn) in cases {
            let (got, got_to, got_torn) = read(log, 10, 20);
            let complete: Vec<(String, u8)> =
                complete.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            assert_eq!(got, complete, "{case}: complete changes");
            assert_eq!(got_to, *to, "{case}: where a later restore continues");
            assert_eq!(got_torn, *torn, "{case}: torn keys");
        }
    }

    #[test]
    fn a_framed_commit_reads_back_whole_per_partition() {
        let change = |partition: i32, key: &[u8]| Change {
            partition,
            key: key.to_vec(),
            value: Some(key.to_vec()),
        };
        let changes = vec![change(1, b"a"), change(0, b"b"), change(1, b"c")];
        let framed: Vec<Change> = frame(changes.clone()).collect();
        for partition in [0, 1] {
            let mut frames = CommitFrames::new(0);
            let log = framed.iter().filter(|c| c.partition == partition);
            for (offset, change) in log.enumerate() {
                frames.push(offset as i64, change.clone());
            }
            let (complete, _, torn) = frames.finish(0);
            let expected: Vec<Change> = changes
                .iter()
                .filter(|c| c.partition == partition)
                .cloned()
                .collect();
            assert_eq!(complete, expected, "partition {partition}");
            assert!(torn.is_empty());
        }
        // Torn after its first change: partition 1 restores nothing of it.
        let mut frames = CommitFrames::new(0);
        let log = framed.iter().filter(|c| c.partition == 1).take(2);
        for (offset, change) in log.enumerate() {
            frames.push(offset as i64, change.clone());
        }
        let (complete, to, torn) = frames.finish(2);
        assert_eq!((complete, to, torn), (vec![], 0, vec![b"a".to_vec()]));
    }

    #[test]
    fn complete_changes_taken_midway_continue_from_before_an_open_commit() {
        let mut frames = CommitFrames::new(0);
        frames.push(0, CommitMarker::Begin.record(0));
        let change = |key: &[u8]| Change {
            partition: 0,
            key: key.to_vec(),
            value: Some(vec![1]),
        };
        frames.push(1, change(b"a"));
        frames.push(2, CommitMarker::End.record(0));
        frames.push(3, CommitMarker::Begin.record(0));
        frames.push(4, change(b"b"));
        assert_eq!(frames.complete_len(), 1);
        let (taken, to) = frames.take_complete();
        assert_eq!(taken, [change(b"a")]);
        assert_eq!(to, 3, "the open commit is read again from its begin");
        frames.push(5, CommitMarker::End.record(0));
        let (rest, to, torn) = frames.finish(6);
        assert_eq!((rest, to, torn), (vec![change(b"b")], 6, vec![]));
    }
}
