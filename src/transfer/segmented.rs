//! Segmented downloads: one file fetched as K byte ranges in parallel, each range on its own
//! connection and worker, written into place with positioned writes; one transfer, one event
//! stream.
//!
//! The first response (a `200` with a length, `Accept-Ranges: bytes` and a validator) supplies
//! segment 0 and is dropped once that range has arrived; segments 1..K are requested with
//! `Range: bytes=a-b` and `If-Range` (the first response's strong validator) of the URL that
//! answered the first request (without the credentials a redirect to another origin would have
//! stripped), each on another worker arbiter with that worker's client, and each must answer
//! `206` with exactly `a-b/total` and no validator of another version. Every byte is counted
//! per segment; the transfer completes only when every segment landed exactly its range.
//!
//! Stopping: dropping the attempt aborts every segment. Each segment, and each of its writes in
//! flight, holds a clone of a quiescence guard; when the last clone is gone a oneshot fires, and
//! the transfer actor awaits those before it removes or keeps the `.part` and replies, so no
//! segment reads or writes a byte after a cancel or pause is answered. A failed segmented
//! attempt leaves a file with holes: it is marked damaged, and the retry is a single stream from
//! zero (simple and safe; resuming each segment would be faster).

use std::{
    fs::File,
    os::unix::fs::FileExt,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Instant,
};

use awc::{
    http::{
        header::{self, HeaderName, HeaderValue},
        Method,
    },
    ClientResponse,
};
use futures::{
    channel::oneshot,
    future::{AbortHandle, Abortable, Either, LocalBoxFuture},
    stream::FuturesUnordered,
    StreamExt,
};

use super::Ctx;
use crate::{
    error::TransferError,
    file::sink::{Behind, FileSink},
    http,
    request::HttpRequest,
    throttle::Bucket,
};

/// The least size of one segment.
pub(crate) const MIN_SEGMENT: u64 = 1 << 20;

/// Size of one positioned write.
const SEGMENT_BUF: usize = 256 * 1024;

/// Fires its oneshot when the last clone is dropped.
struct Quiesce(Option<oneshot::Sender<()>>);

impl Drop for Quiesce {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Aborts every segment when the attempt is dropped (cancel, pause, failure).
struct AbortAll(Vec<AbortHandle>);

impl Drop for AbortAll {
    fn drop(&mut self) {
        for a in &self.0 {
            a.abort();
        }
    }
}

/// The `.part` the segments write into, at their offsets, from any worker.
struct Part {
    file: File,
    /// The file will be synced: start its writeback as the segments land (see `sink`).
    write_behind: bool,
}

/// What one remote segment needs (all `Send`).
struct Segment {
    /// The range request: the first response's URL (or a mirror's), the job's headers,
    /// `Range` and `If-Range`.
    request: HttpRequest,
    /// A mirror's range request: the redirects it may follow, and the same range at the first
    /// response's URL, asked instead when the mirror fails before its first byte (its source
    /// number goes with it, to be dropped when it disagreed).
    mirror: Option<(u32, HttpRequest, usize)>,
    /// Where a mirror that disagreed is told, at once: the transfer drops it even when this
    /// attempt fails before the segment ends.
    disagreed: Disagreed,
    /// What `If-Range` pins: the first response's validator.
    validator: String,
    start: u64,
    end: u64,
    total: u64,
    file: Arc<Part>,
    counted: Arc<AtomicU64>,
    quiesce: Arc<Quiesce>,
    limits: Limits,
}

/// The transfer's bandwidth limits and the engine's: every segment takes its bytes from both,
/// as a single stream does.
#[derive(Clone)]
struct Limits {
    own: Arc<Bucket>,
    global: Arc<Bucket>,
}

impl Limits {
    /// Pay for `n` bytes: sleep off any debt before reading on.
    async fn take(&self, n: usize) {
        let wait = self.own.take(n).max(self.global.take(n));
        if !wait.is_zero() {
            actix_rt::time::sleep(wait).await;
        }
    }
}

/// Run a segmented download whose first response is `first`; `sink` holds the `.part`.
pub(super) async fn run(
    ctx: &Ctx,
    sink: &mut FileSink,
    first: ClientResponse,
    url: &url::Url,
    total: u64,
    k: u64,
    validator: String,
) -> Result<(), TransferError> {
    let if_range = HeaderValue::from_str(&validator)
        .map_err(|_| TransferError::BadContent(format!("unusable validator {validator:?}")))?;
    // The file gets its full size now; until every segment is verified its content is unknown.
    sink.set_damaged(true);
    let file = Arc::new(Part {
        file: sink.clone_file()?,
        write_behind: sink.write_behind(),
    });
    let sizing = Arc::clone(&file);
    crate::file::blocking::run(move || sizing.file.set_len(total))
        .await
        .map_err(TransferError::from)?
        .map_err(|e| TransferError::file("sizing", e))?;

    let bounds: Vec<(u64, u64)> = (0..k)
        .map(|i| (total * i / k, total * (i + 1) / k - 1))
        .collect();
    let counters: Vec<Arc<AtomicU64>> =
        bounds.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let peers = ctx.peers.clone();
    let limits = Limits {
        own: Arc::clone(&ctx.rate),
        global: Arc::clone(&ctx.global_rate),
    };

    let mut aborts = AbortAll(Vec::new());
    let disagreed = Disagreed::default();
    // However the attempt ends, the mirrors that disagreed are dropped.
    let _drop_disagreeing = DropDisagreeing(ctx, disagreed.clone());
    // Every segment's result, the first one's (read here) and the others' (reported through
    // their oneshots) alike.
    let mut segments: FuturesUnordered<LocalBoxFuture<'static, Result<(), TransferError>>> =
        FuturesUnordered::new();
    // The ranges go round robin over the sources in use, starting with the one that answered.
    let spread = ctx.download.sources.borrow().spread(bounds.len());
    for (i, (start, end)) in bounds.iter().enumerate().skip(1) {
        let (done_tx, done_rx) = oneshot::channel();
        let (quiet_tx, quiet_rx) = oneshot::channel();
        ctx.download.watch_quiescence(quiet_rx);
        let (abort, registration) = AbortHandle::new_pair();
        aborts.0.push(abort);
        let headers: Vec<(HeaderName, HeaderValue)> = ctx
            .job
            .request
            .headers
            .iter()
            .filter(|(n, _)| *n != header::RANGE && *n != header::IF_RANGE)
            .cloned()
            .collect();
        let mut request = HttpRequest {
            url: ctx.job.request.url.clone(),
            method: Method::GET,
            headers,
        };
        let range = HeaderValue::from_str(&format!("bytes={start}-{end}"))
            .expect("a range of digits is a valid header value");
        let pin = |request: &mut HttpRequest| {
            request.headers.push((header::RANGE, range.clone()));
            request.headers.push((header::IF_RANGE, if_range.clone()));
        };
        // A mirror is asked at its own URL (following its redirects), with the same headers.
        let mirror = (spread[i] != spread[0]).then(|| {
            let mut at_mirror = request.clone();
            at_mirror.url = ctx.source_url(spread[i]).clone();
            pin(&mut at_mirror);
            at_mirror
        });
        // Sent straight to where the first request was redirected: what that redirect would
        // not have carried to another origin stays behind.
        http::retarget(&mut request, url);
        pin(&mut request);
        let (request, mirror) = match mirror {
            Some(at_mirror) => (at_mirror, Some((ctx.cfg.max_redirects, request, spread[i]))),
            None => (request, None),
        };
        let segment = Segment {
            request,
            mirror,
            disagreed: disagreed.clone(),
            validator: validator.clone(),
            start: *start,
            end: *end,
            total,
            file: Arc::clone(&file),
            counted: Arc::clone(&counters[i]),
            quiesce: Arc::new(Quiesce(Some(quiet_tx))),
            limits: limits.clone(),
        };
        let run = |segment, client| async move {
            let res = Abortable::new(fetch_segment(segment, client), registration).await;
            let _ =
                done_tx.send(res.unwrap_or(Err(TransferError::Internal("segment aborted".into()))));
        };
        let worker = (ctx.worker + i) % peers.len();
        if worker == ctx.worker {
            // This transfer's own worker (always, inline): no hop, the same client.
            actix_rt::spawn(run(segment, ctx.client.clone()));
        } else {
            peers[worker].spawn_fn(move || {
                actix_rt::spawn(run(segment, http::client::client()));
            });
        }
        segments.push(Box::pin(async move {
            done_rx
                .await
                .unwrap_or_else(|_| Err(TransferError::Panicked("segment lost".into())))
        }));
    }

    // Segment 0 from the first response, here; the others report through their oneshots.
    let (_, end0) = bounds[0];
    let local_quiet = {
        let (tx, rx) = oneshot::channel();
        ctx.download.watch_quiescence(rx);
        Arc::new(Quiesce(Some(tx)))
    };
    let local = read_range(
        first,
        0,
        end0,
        Arc::clone(&file),
        Arc::clone(&counters[0]),
        local_quiet,
        limits.clone(),
        false,
    );
    segments.push(Box::pin(local));
    // The tick also moves the idle deadline, so it comes at least 4 times a second whatever
    // the progress interval (a huge one would overflow the interval's next tick, too).
    let mut ticker = actix_rt::time::interval(ctx.cfg.progress_interval.clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_millis(250),
    ));
    let sum = || counters.iter().map(|c| c.load(Relaxed)).sum::<u64>();
    // Until every segment is done (the first failure ends the attempt), with a progress tick.
    // An exhausted set answers `None` at once: that ends the loop, it is never polled again.
    loop {
        let tick = ticker.tick();
        futures::pin_mut!(tick);
        match futures::future::select(segments.next(), tick).await {
            Either::Left((Some(result), _)) => result?,
            Either::Left((None, _)) => break,
            Either::Right(_) => {}
        }
        ctx.segments_moved(sum());
        // Segments sleeping off a bandwidth debt are not idle: the deadline moves past it.
        let debt = limits.own.debt().max(limits.global.debt());
        if !debt.is_zero() {
            ctx.since.set(ctx.since.get().max(Instant::now() + debt));
        }
    }
    for (i, (start, end)) in bounds.iter().enumerate() {
        let got = counters[i].load(Relaxed);
        if got != end - start + 1 {
            return Err(TransferError::Truncated {
                expected: end - start + 1,
                received: got,
            });
        }
    }
    drop(aborts);
    ctx.segments_moved(total);
    ctx.body_done();
    sink.set_landed(total);
    Ok(())
}

/// The mirrors segments found disagreeing with the first response: source number and why.
type Disagreed = Arc<Mutex<Vec<(usize, String)>>>;

/// Drops the mirrors that disagreed when the attempt ends, whichever way (a `Drop`, so that a
/// failure or an abort elsewhere in the attempt cannot lose one).
struct DropDisagreeing<'a>(&'a Ctx, Disagreed);

impl Drop for DropDisagreeing<'_> {
    fn drop(&mut self) {
        let found = std::mem::take(&mut *self.1.lock().unwrap_or_else(|e| e.into_inner()));
        for (source, why) in found {
            self.0.drop_source(source, &why);
        }
    }
}

/// One segment after the first, with the client of the worker it runs on. It goes through
/// `http::send` like every request (identity encoding, no body, interim answers refused, the
/// body's end checked against the wire). At the first response's source it follows no
/// redirect: the range is asked of the URL that answered the first request, and anything but
/// the exact `206` fails the segmented attempt, which is then retried as one stream. At a
/// mirror, a failure before the range's first byte (refused, another status, another length
/// or version) asks the range of the first response's URL instead.
async fn fetch_segment(s: Segment, client: awc::Client) -> Result<(), TransferError> {
    let opened = match &s.mirror {
        None => open_range(&client, &s, &s.request, 0, false).await,
        Some((redirects, primary, source)) => {
            match open_range(&client, &s, &s.request, *redirects, true).await {
                Ok(resp) => Ok(resp),
                Err((error, disagrees)) => {
                    tracing::debug!(%error, "a mirror failed its range; asking the first URL");
                    if disagrees {
                        let mut found = s.disagreed.lock().unwrap_or_else(|e| e.into_inner());
                        found.push((*source, error.to_string()));
                    }
                    open_range(&client, &s, primary, 0, false).await
                }
            }
        }
    };
    let resp = opened.map_err(|(error, _)| error)?;
    read_range(
        resp, s.start, s.end, s.file, s.counted, s.quiesce, s.limits, true,
    )
    .await
}

/// Ask for the segment's range with `request` and check the answer: the exact `206` of this
/// range and total, of the first response's version. `strict` (a mirror): the answer must
/// name that version itself, a server's word for it being the same file. Fails with whether
/// the source disagreed with the file (another range, length or version) rather than failed.
async fn open_range(
    client: &awc::Client,
    s: &Segment,
    request: &HttpRequest,
    redirects: u32,
    strict: bool,
) -> Result<ClientResponse, (TransferError, bool)> {
    // A segment's answers are not the transfer's outcome (the first response is).
    let resp = http::send(client, request, redirects, &mut || None, &|_| {}, &|_| {})
        .await
        .map_err(|e| (e, false))?
        .response;
    let status = resp.status();
    let range = http::content_range(&resp);
    let exact = status == awc::http::StatusCode::PARTIAL_CONTENT
        && range.is_some_and(|r| r.start == s.start && r.end == s.end && r.total == Some(s.total));
    if !exact {
        // A `200` is the whole file (`If-Range` found another version, or no ranges at all);
        // a `206` of another range or total is another file. Other statuses are failures.
        let disagrees =
            status == awc::http::StatusCode::OK || status == awc::http::StatusCode::PARTIAL_CONTENT;
        let error = TransferError::BadContent(format!(
            "segment {}-{} answered {status} with range {range:?}",
            s.start, s.end,
        ));
        return Err((error, disagrees));
    }
    let same = if strict {
        http::names_version(resp.headers(), &s.validator)
    } else {
        http::same_version(resp.headers(), &s.validator)
    };
    if !same {
        let error = TransferError::BadContent(format!(
            "segment {}-{} is of another version of the file",
            s.start, s.end
        ));
        return Err((error, true));
    }
    Ok(resp)
}

/// Read `start..=end` from `resp` into `file` at its offsets; positioned writes of up to
/// `SEGMENT_BUF` on the file-I/O threads, one in flight, each holding the quiescence guard.
/// Bytes are counted as they arrive (as a single stream counts them), under the `limits`.
/// `own_response`: `resp` answers this range alone and must end with it (segment 0 reads the
/// start of the first response and drops the rest).
#[allow(clippy::too_many_arguments)]
async fn read_range(
    mut resp: ClientResponse,
    start: u64,
    end: u64,
    file: Arc<Part>,
    counted: Arc<AtomicU64>,
    quiesce: Arc<Quiesce>,
    limits: Limits,
    own_response: bool,
) -> Result<(), TransferError> {
    let want = end - start + 1;
    let mut received = 0u64;
    let mut buf = Vec::with_capacity(SEGMENT_BUF);
    let mut at = start;
    // The writeback of this segment's range, when the file will be synced.
    let mut behind = file.write_behind.then(|| Behind::at(start));
    let mut yields = super::ChunkYield::default();
    while received < want {
        let Some(chunk) = resp.next().await else {
            break;
        };
        let chunk = chunk.map_err(|e| http::payload_error(e, Some(want), received))?;
        let take = (want - received).min(chunk.len() as u64) as usize;
        buf.extend_from_slice(&chunk[..take]);
        received += take as u64;
        counted.fetch_add(take as u64, Relaxed);
        limits.take(take).await;
        if buf.len() >= SEGMENT_BUF || received == want {
            let data = std::mem::replace(&mut buf, Vec::with_capacity(SEGMENT_BUF));
            let (f, q, offset) = (Arc::clone(&file), Arc::clone(&quiesce), at);
            at += data.len() as u64;
            let n = data.len() as u64;
            let mut b = behind.take();
            behind = crate::file::blocking::run(move || {
                let _quiesce = q;
                f.file.write_all_at(&data, offset)?;
                if let Some(b) = b.as_mut() {
                    b.landed(&f.file, offset + n);
                }
                Ok(b)
            })
            .await
            .map_err(TransferError::from)?
            .map_err(|e| TransferError::file("writing", e))?;
        }
        yields.before_read().await;
    }
    if received != want {
        return Err(TransferError::Truncated {
            expected: want,
            received,
        });
    }
    if own_response {
        // A range response must end where its range does: reading on lets the wire checks
        // see its real end (bytes past its Content-Length fail, and poison the connection).
        match resp.next().await {
            None => {}
            Some(Ok(more)) => {
                return Err(TransferError::Overlong {
                    expected: want,
                    received: want + more.len() as u64,
                })
            }
            Some(Err(e)) => return Err(http::payload_error(e, Some(want), want)),
        }
    }
    // The first response carries the rest of the file: dropping it closes that connection.
    drop(resp);
    Ok(())
}
