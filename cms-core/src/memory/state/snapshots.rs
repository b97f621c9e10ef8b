//! Snapshots: `pending` with a progress that grows with time, then `completed`.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::family::Owned;
use super::State;
use crate::model::*;
use crate::{Error, ErrorKind, Operation, Result};

#[derive(Debug)]
pub(super) struct SnapshotRecord {
    /// What does not change; state, raw state and progress are made at reading.
    snapshot: Snapshot,
    started: Instant,
    /// When the copy is done; `None` when the delay is too long to represent.
    done_at: Option<Instant>,
}

impl Owned for SnapshotRecord {
    fn owner(&self) -> Option<&str> {
        self.snapshot.owner.as_deref()
    }
}

impl SnapshotRecord {
    fn view(&self, now: Instant) -> Snapshot {
        let mut s = self.snapshot.clone();
        let (state, progress) = match self.done_at {
            Some(done) if now >= done => (SnapshotState::Completed, 100),
            Some(done) => {
                let total = done.duration_since(self.started).as_secs_f64();
                let spent = now.saturating_duration_since(self.started).as_secs_f64();
                // Below 100 until it is completed.
                (
                    SnapshotState::Pending,
                    ((spent / total) * 100.0).min(99.0) as u8,
                )
            }
            None => (SnapshotState::Pending, 0),
        };
        s.state = state;
        s.raw_state = state.as_str().to_owned();
        s.progress = progress;
        s
    }
}

impl State {
    /// A snapshot as it is now; `NotFound` for `op` when unknown.
    pub(super) fn snapshot_view(
        &self,
        id: &SnapshotId,
        now: Instant,
        op: Operation,
    ) -> Result<Snapshot> {
        self.snapshots
            .get(id)
            .map(|r| r.view(now))
            .ok_or_else(|| Error::not_found("snapshot", id).with_operation(op))
    }

    pub(in crate::memory) fn get_snapshot(
        &self,
        id: &SnapshotId,
        now: Instant,
    ) -> Result<Snapshot> {
        self.snapshot_view(id, now, Operation::GetSnapshot)
    }

    pub(in crate::memory) fn list_snapshots(
        &self,
        filter: &SnapshotFilter,
        page: &PageRequest,
        limit: usize,
        now: Instant,
    ) -> Result<Page<Snapshot>> {
        self.snapshots.page(
            &filter.ids,
            filter.owner.as_deref(),
            page,
            limit,
            Operation::ListSnapshots,
            |id, r| {
                filter
                    .matches(id, r.owner(), &r.snapshot.tags)
                    .then(|| r.view(now))
            },
        )
    }

    /// Starts a snapshot of a volume that holds data: not one still creating, nor one
    /// deleting (`InvalidState`).
    pub(in crate::memory) fn create_snapshot(
        &mut self,
        spec: &SnapshotSpec,
        now: Instant,
        created_at: DateTime<Utc>,
    ) -> Result<Snapshot> {
        let op = Operation::CreateSnapshot;
        self.purge(now);
        let v = self
            .get_volume(&spec.volume_id, now)
            .map_err(|_| Error::not_found("volume", &spec.volume_id).with_operation(op))?;
        if matches!(
            v.state,
            VolumeState::Creating
                | VolumeState::Deleting
                | VolumeState::Deleted
                | VolumeState::Error
        ) {
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "cannot snapshot volume `{}`: it is {}; snapshot a volume that is \
                     available or in use",
                    v.id, v.state
                ),
            )
            .with_operation(op)
            .with_resource(format!("volume {}", v.id))
            .with_context("state", v.state.as_str()));
        }
        let id = self.snapshots.next_id();
        let record = SnapshotRecord {
            snapshot: Snapshot {
                id: id.clone(),
                volume_id: Some(v.id.clone()),
                name: spec.name.clone(),
                description: spec.description.clone(),
                size_gib: v.size_gib,
                state: SnapshotState::Pending,
                raw_state: String::new(),
                progress: 0,
                created_at: Some(created_at),
                tags: spec.tags.clone(),
                owner: spec.owner.clone(),
            },
            started: now,
            done_at: now.checked_add(self.config.snapshot_delay),
        };
        let view = record.view(now);
        self.snapshots.insert(id, record);
        Ok(view)
    }

    /// Deletes a snapshot; volumes made from it stay (they keep its id).
    pub(in crate::memory) fn delete_snapshot(&mut self, id: &SnapshotId) -> Result<()> {
        self.snapshots.remove(id).map(drop).ok_or_else(|| {
            Error::not_found("snapshot", id).with_operation(Operation::DeleteSnapshot)
        })
    }
}
