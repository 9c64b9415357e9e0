//! Reading a response body: byte counting, length checks, and yielding between chunks.

use std::time::Instant;

use awc::ClientResponse;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};

use super::Ctx;
use crate::{error::TransferError, http};

/// Lets the rest of a thread run between two chunks of one body: the other transfers there,
/// and the transfer's own mailbox, where a `Cancel` may wait. Tokio alone would let a task run
/// a whole coop budget of reads per turn, and with N fast transfers on a thread a message then
/// waits N such turns. A yield costs far less than reading and copying a chunk; the first read
/// of a body does not yield, so a small fetch pays nothing.
#[derive(Default)]
pub(crate) struct ChunkYield {
    started: bool,
}

impl ChunkYield {
    pub(crate) async fn before_read(&mut self) {
        if self.started {
            actix_rt::task::yield_now().await;
        }
        self.started = true;
    }
}

/// Reads a response body chunk by chunk: counts bytes, maps errors, checks the length at the
/// end, and yields to the rest of its thread between chunks, so a cancel is seen promptly.
pub(crate) struct BodyReader {
    response: ClientResponse,
    /// Bytes this response announced.
    expected: Option<u64>,
    received: u64,
    /// Bytes already on disk before this response (a resume): reported in `Truncated` and
    /// `Overlong`.
    base: u64,
    counted: bool,
    yields: ChunkYield,
}

impl BodyReader {
    /// `counted`: whether these bytes are the transfer's progress (not for an upload's reply).
    pub(crate) fn new(response: ClientResponse, expected: Option<u64>, counted: bool) -> Self {
        BodyReader {
            response,
            expected,
            received: 0,
            base: 0,
            counted,
            yields: ChunkYield::default(),
        }
    }

    /// This body continues a file that already holds `base` bytes.
    pub(crate) fn after(mut self, base: u64) -> Self {
        self.base = base;
        self
    }

    fn truncated(&self, expected: u64) -> TransferError {
        self.rebased(TransferError::Truncated {
            expected,
            received: self.received,
        })
    }

    /// An error of this body in terms of the whole file: `Truncated` and `Overlong` count the
    /// bytes before it.
    fn rebased(&self, error: TransferError) -> TransferError {
        match error {
            TransferError::Truncated { expected, received } => TransferError::Truncated {
                expected: self.base + expected,
                received: self.base + received,
            },
            TransferError::Overlong { expected, received } => TransferError::Overlong {
                expected: self.base + expected,
                received: self.base + received,
            },
            other => other,
        }
    }

    pub(crate) async fn next(&mut self, ctx: &Ctx) -> Result<Option<Bytes>, TransferError> {
        self.yields.before_read().await;
        let item = self.response.next().await;
        self.accept(ctx, item).await
    }

    /// The next chunk only if the connection has it without waiting (`None`: it would wait).
    /// A slow download reads this way after letting its bytes gather in the socket.
    pub(crate) async fn ready(
        &mut self,
        ctx: &Ctx,
    ) -> Option<Result<Option<Bytes>, TransferError>> {
        // Polling a stream once and dropping the `next()` future loses nothing.
        let item = self.response.next().now_or_never()?;
        Some(self.accept(ctx, item).await)
    }

    async fn accept(
        &mut self,
        ctx: &Ctx,
        item: Option<Result<Bytes, awc::error::PayloadError>>,
    ) -> Result<Option<Bytes>, TransferError> {
        match item {
            Some(Ok(chunk)) => {
                self.received += chunk.len() as u64;
                if let Some(expected) = self.expected.filter(|e| self.received > *e) {
                    return Err(self.rebased(TransferError::Overlong {
                        expected,
                        received: self.received,
                    }));
                }
                if self.counted {
                    ctx.moved(chunk.len());
                    ctx.throttle(chunk.len()).await;
                } else {
                    ctx.since.set(Instant::now());
                }
                Ok(Some(chunk))
            }
            Some(Err(e)) => Err(self.rebased(http::payload_error(e, self.expected, self.received))),
            None => {
                if let Some(expected) = self.expected.filter(|e| self.received != *e) {
                    return Err(self.truncated(expected));
                }
                if self.counted {
                    ctx.body_done();
                }
                Ok(None)
            }
        }
    }

    /// Read the rest into memory, failing with `BodyTooLarge` past `limit`.
    pub(crate) async fn collect(mut self, ctx: &Ctx, limit: u64) -> Result<Bytes, TransferError> {
        if self.expected.is_some_and(|n| n > limit) {
            return Err(TransferError::BodyTooLarge { limit });
        }
        // Reserve for the announced length only up to a point: many open transfers must not
        // each hold their whole body's worth of memory before the bytes arrive.
        let reserve = self.expected.unwrap_or(0).min(256 * 1024) as usize;
        let mut buf = bytes::BytesMut::with_capacity(reserve);
        while let Some(chunk) = self.next(ctx).await? {
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(TransferError::BodyTooLarge { limit });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }
}
