//! Status: snapshots of a transfer for [`Status`](crate::Status) and [`List`](crate::List), and
//! the lock-free counters a transfer actor updates so the Engine can answer without a round
//! trip to the worker.

use std::{
    path::PathBuf,
    sync::{
        atomic::{
            AtomicBool, AtomicU64, AtomicU8,
            Ordering::{Acquire, Relaxed, Release},
        },
        Mutex, OnceLock,
    },
};

use crate::{
    error::{EndState, TransferError},
    event::TransferId,
};

/// Which kind of transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TransferKind {
    /// A [`Download`](crate::Download).
    Download,
    /// An [`Upload`](crate::Upload).
    Upload,
    /// A [`Fetch`](crate::Fetch).
    Fetch,
}

/// Where a transfer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TransferState {
    /// Waiting for an admission slot.
    Queued,
    /// Its actor is running.
    Active,
    /// Paused by [`Pause`](crate::Pause); [`Resume`](crate::Resume) continues it.
    Paused,
    /// Ended: completed.
    Completed,
    /// Ended: failed.
    Failed,
    /// Ended: cancelled.
    Cancelled,
}

impl TransferState {
    /// Whether the transfer has ended.
    pub fn is_ended(self) -> bool {
        self.end_state().is_some()
    }

    /// The end state, once ended.
    pub fn end_state(self) -> Option<EndState> {
        match self {
            TransferState::Completed => Some(EndState::Completed),
            TransferState::Failed => Some(EndState::Failed),
            TransferState::Cancelled => Some(EndState::Cancelled),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => TransferState::Queued,
            1 => TransferState::Active,
            2 => TransferState::Completed,
            3 => TransferState::Failed,
            4 => TransferState::Cancelled,
            _ => TransferState::Paused,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            TransferState::Queued => 0,
            TransferState::Active => 1,
            TransferState::Completed => 2,
            TransferState::Failed => 3,
            TransferState::Cancelled => 4,
            TransferState::Paused => 5,
        }
    }
}

impl From<EndState> for TransferState {
    fn from(e: EndState) -> Self {
        match e {
            EndState::Completed => TransferState::Completed,
            EndState::Failed => TransferState::Failed,
            EndState::Cancelled => TransferState::Cancelled,
        }
    }
}

/// A snapshot of one transfer.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TransferStatus {
    /// The transfer.
    pub id: TransferId,
    /// Download, upload or fetch.
    pub kind: TransferKind,
    /// Where it is in its life.
    pub state: TransferState,
    /// The URL as submitted.
    pub url: String,
    /// The URL after redirects, once a redirect was followed; with mirrors, the URL the
    /// latest request went to (a mirror's, or where it redirected).
    pub final_url: Option<String>,
    /// Downloads: the file's real path, once its `.part` was created (the name `Uniquify`
    /// chose, or the name taken from the response when no target was given); before that, the
    /// target asked for under the download dir, or `None` for a download named after its
    /// response. Uploads: the source file.
    pub path: Option<PathBuf>,
    /// Body bytes moved so far.
    pub bytes_transferred: u64,
    /// Body bytes expected, when known.
    pub bytes_estimated: Option<u64>,
    /// The error, when it failed.
    pub error: Option<TransferError>,
    /// Paused downloads: whether resuming continues from the bytes kept (the server gave a
    /// validator and every write landed) rather than from zero.
    pub can_resume: bool,
}

/// Counters shared between a transfer actor (writer) and the Engine (reader).
#[derive(Debug, Default)]
pub(crate) struct Progress {
    transferred: AtomicU64,
    estimated: AtomicU64,
    state: AtomicU8,
    can_resume: AtomicBool,
    final_url: Mutex<Option<String>>,
    /// A download's file, once its transfer placed its `.part` (written by the transfer only).
    path: Mutex<Option<PathBuf>>,
    /// What a `Status` shows of an end its record has not heard of yet: the error of a
    /// failure, the path a download was placed at. Set once, before the end state.
    end: OnceLock<(Option<TransferError>, Option<PathBuf>)>,
}

const UNKNOWN: u64 = u64::MAX;

impl Progress {
    pub(crate) fn new() -> Self {
        Progress {
            estimated: AtomicU64::new(UNKNOWN),
            ..Default::default()
        }
    }

    pub(crate) fn set_transferred(&self, n: u64) {
        self.transferred.store(n, Relaxed);
    }

    pub(crate) fn transferred(&self) -> u64 {
        self.transferred.load(Relaxed)
    }

    pub(crate) fn set_estimated(&self, n: Option<u64>) {
        self.estimated.store(n.unwrap_or(UNKNOWN), Relaxed);
    }

    pub(crate) fn estimated(&self) -> Option<u64> {
        match self.estimated.load(Relaxed) {
            UNKNOWN => None,
            n => Some(n),
        }
    }

    /// Release: a reader that sees an end state also sees the [`ended_with`](Self::ended_with)
    /// set before it.
    pub(crate) fn set_state(&self, s: TransferState) {
        self.state.store(s.to_u8(), Release);
    }

    pub(crate) fn state(&self) -> TransferState {
        TransferState::from_u8(self.state.load(Acquire))
    }

    /// Keep what a `Status` must show of the end (called once, before the end state is set;
    /// only when there is something to show: a fetch that completed has neither).
    pub(crate) fn ended_with(&self, error: Option<TransferError>, path: Option<PathBuf>) {
        let _ = self.end.set((error, path));
    }

    /// What [`ended_with`](Self::ended_with) kept.
    pub(crate) fn end(&self) -> Option<&(Option<TransferError>, Option<PathBuf>)> {
        self.end.get()
    }

    pub(crate) fn set_can_resume(&self, v: bool) {
        self.can_resume.store(v, Relaxed);
    }

    pub(crate) fn can_resume(&self) -> bool {
        self.can_resume.load(Relaxed)
    }

    pub(crate) fn set_final_url(&self, url: &str) {
        *self.final_url.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.to_owned());
    }

    /// Where the download's file is (its `.part` beside it until it completes).
    pub(crate) fn set_path(&self, path: PathBuf) {
        *self.path.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
    }

    pub(crate) fn path(&self) -> Option<PathBuf> {
        self.path.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn final_url(&self) -> Option<String> {
        self.final_url
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
