//! A download attempt: GET (with `Range` and `If-Range` when continuing a `.part` file), check
//! the status, range and framing, stream the body into the `.part` file, verify it.
//!
//! Resume follows Chromium, the only download engine that cannot corrupt a file this way:
//! - a range is asked for only with a strong validator (a strong ETag, else a Last-Modified
//!   strong by RFC 9110 §8.8.2.2; see [`http::validator`]) from the response that started the
//!   file, and only when every byte written so far landed intact; without one, a retry starts
//!   from zero;
//! - the range is asked of the URL that gave that validator: after a redirect, its final URL,
//!   directly (a redirect to another origin would strip `Range` and `If-Range`). If that URL
//!   redirects again, or answers with a status not worth retrying (an expired signed URL's
//!   403 or 410), the file starts again from zero at the caller's URL;
//! - `206` must carry a `Content-Range` starting exactly at the offset, with the same total as
//!   before, and no validator of another version; anything else is refused and the file is
//!   fetched again from zero;
//! - `200` to a range request (the server ignored it, or `If-Range` found the file changed)
//!   truncates the `.part` and restarts from zero; `416` re-probes without a range;
//! - with `resumable_only`, each of those restarts fails with `CannotResume` instead.

use std::{
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use awc::http::{
    header::{self, HeaderValue},
    Method, StatusCode,
};

use futures::channel::oneshot;

use super::{segmented, BodyReader, Ctx, Done};
use crate::{
    error::TransferError,
    file::{
        blocking, path,
        sink::{self, FileSink, Writer, SLOW_RATE},
    },
    http,
    request::DownloadOptions,
};

pub(super) async fn run(ctx: &Rc<Ctx>, opts: &DownloadOptions) -> Result<Done, TransferError> {
    // The sink owns the `.part` from here on; if this attempt fails or is aborted, dropping
    // the sink hands the file back to the transfer for the next attempt. A download named
    // after its response has none until a response is accepted.
    let mut sink = match ctx.download.placement.borrow().as_ref() {
        Some(_) => Some(FileSink::new(
            ctx.download.take_writer()?,
            ctx.download.drain(),
        )),
        None => None,
    };
    let (written, damaged) = sink.as_ref().map_or((0, false), FileSink::landed);
    let validator = ctx.download.validator.borrow().clone();
    // A range of the caller's own: the file is that part of the resource, fetched whole on
    // each attempt (the engine's own ranges cannot be combined with it).
    let caller_range = ctx
        .job
        .request
        .headers
        .iter()
        .any(|(n, _)| n == header::RANGE);
    let resumable =
        validator.is_some() && !damaged && !ctx.download.no_ranges.get() && !caller_range;
    let mut offset = if resumable { written } else { 0 };
    if offset == 0 && written > 0 {
        restart(
            &mut sink,
            opts,
            "the server gave no validator to resume with",
        )
        .await?;
    }
    let previous_total = ctx.estimated_total();
    // The caller's URL or one of its mirrors, as the retries rotate. A resume at another
    // source than the one the file came from is pinned by the same validator and length: a
    // mirror with another version answers the whole file (or a refused range), and the file
    // starts from zero.
    let (source, mirrored) = {
        let sources = ctx.download.sources.borrow();
        (sources.current(), sources.len() > 1)
    };
    let base = ctx.source_request(source);
    // Not the source the file came from: its `206` must name the file's version itself.
    let other_source = ctx.download.resume_source.get() != source;
    // Where a resume is asked; a request from zero always starts at the source's URL.
    let resume_url = ctx
        .download
        .resume_url
        .borrow()
        .clone()
        .filter(|_| ctx.download.resume_source.get() == source);

    // At most two requests: a range request, then (if the server botched it) a plain one.
    let (sent, total, headers) = loop {
        let mut request = base.clone();
        let direct = offset > 0 && resume_url.is_some();
        if let Some(url) = resume_url.as_ref().filter(|_| direct) {
            http::retarget(&mut request, url);
        }
        if mirrored {
            // The status shows which URL is in use.
            ctx.redirected(&request.url);
        }
        if offset > 0 {
            // Never a range without the validator that pins it (ours, and only ours).
            let validator = HeaderValue::from_str(validator.as_deref().unwrap_or_default())
                .map_err(|e| TransferError::Internal(format!("an unusable validator: {e}")))?;
            request.headers.retain(|(n, _)| n != header::IF_RANGE);
            request.headers.push((
                header::RANGE,
                HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
            ));
            request.headers.push((header::IF_RANGE, validator));
        }
        // The URL a redirect led to must answer itself: redirecting again, it is not the
        // file's URL any more.
        let redirects = if direct { 0 } else { ctx.cfg.max_redirects };
        let sent = match http::send(
            &ctx.client,
            &request,
            redirects,
            &mut || None,
            &|url| ctx.redirected(url),
            &|answer| {
                ctx.responded(answer);
            },
        )
        .await
        {
            Err(TransferError::TooManyRedirects { .. }) if direct => {
                let why = "the URL the download was redirected to redirects elsewhere now";
                restart(&mut sink, opts, why).await?;
                offset = 0;
                continue;
            }
            sent => sent?,
        };
        let status = sent.response.status();
        // Each answer, a refused range's too: a failure after it shows what the server said.
        let headers = ctx.responded(&sent.response);
        let length = || http::body_length(&sent.response, &Method::GET);
        match status {
            StatusCode::PARTIAL_CONTENT if offset > 0 && sent.ranged => {
                let range = http::content_range(&sent.response);
                let remaining = length()?;
                let good = range.is_some_and(|r| {
                    r.start == offset
                        && remaining.is_none_or(|n| n == r.end + 1 - r.start)
                        && (previous_total.is_none() || r.total == previous_total)
                }) && validator.as_deref().is_some_and(|v| {
                    let headers = sent.response.headers();
                    http::same_version(headers, v)
                        && (!other_source || http::names_version(headers, v))
                });
                if good {
                    let total = range.and_then(|r| r.total);
                    break (sent, total, headers);
                }
                tracing::debug!(?range, offset, "refusing a bad 206; restarting from zero");
                // A mirror with another version of the file has no broken ranges.
                if !other_source {
                    ctx.download.no_ranges.set(true);
                }
                drop(sent);
                restart(&mut sink, opts, "the server answered with a wrong range").await?;
                offset = 0;
            }
            StatusCode::PARTIAL_CONTENT if caller_range && sent.ranged => {
                // The part the caller asked for; its length is this body's.
                let remaining = length()?;
                break (sent, remaining, headers);
            }
            // Part of the resource, to a request that asked for no range (or for a range of
            // a caller's own, which a download cannot place in the file).
            StatusCode::PARTIAL_CONTENT => return Err(http::unasked_partial()),
            StatusCode::RANGE_NOT_SATISFIABLE if offset > 0 => {
                drop(sent);
                restart(&mut sink, opts, "the server refused the range (416)").await?;
                offset = 0;
            }
            s if s.is_success() => {
                if offset > 0 {
                    // The range was ignored, or If-Range found a different file: start over.
                    restart(&mut sink, opts, "the server sent the whole file again").await?;
                    offset = 0;
                }
                *ctx.download.validator.borrow_mut() = http::validator(&sent.response);
                // A mirror's URL is kept too: a journal restores a resume to it.
                *ctx.download.resume_url.borrow_mut() =
                    Some(sent.url.clone()).filter(|url| *url != ctx.job.request.url);
                ctx.download.resume_source.set(source);
                let total = length()?;
                break (sent, total, headers);
            }
            s if direct
                && !ctx
                    .cfg
                    .retry
                    .retryable(&TransferError::Server { status: s.as_u16() }, &Method::GET) =>
            {
                // Gone for good (an expired signed URL): the caller's URL may lead to a new
                // one, with a new validator, so the file starts from zero there.
                drop(sent);
                let why = format!("the URL the download was redirected to answered {s}");
                restart(&mut sink, opts, &why).await?;
                offset = 0;
            }
            s => {
                // The error body is never read, let alone written to the target.
                ctx.note_retry_after(&sent.response);
                return Err(TransferError::Server { status: s.as_u16() });
            }
        }
    };

    if let (Some(want), Some(total)) = (opts.expect_size, total) {
        if want != total {
            return Err(size_mismatch(want, total));
        }
    }
    let mut sink = match sink {
        Some(sink) => sink,
        None => {
            let name = path::file_name(sent.response.headers(), &sent.url);
            place(ctx, opts, name).await?
        }
    };
    let status = sent.response.status().as_u16();
    let remaining = http::body_length(&sent.response, &Method::GET)?;
    ctx.set_bytes(offset);
    ctx.began(
        Some(status),
        || headers.clone(),
        total.or(remaining.map(|n| n + offset)),
    );
    ctx.await_body();

    let segmented = segments(ctx, opts, &sent.response, offset, total);
    #[cfg(feature = "journal")]
    ctx.journal_began(segmented.is_some(), total).await;
    if let Some(k) = segmented {
        let (total, validator) = (
            total.unwrap_or_default(),
            ctx.download.validator.borrow().clone(),
        );
        let url = sent.url.clone();
        let result = segmented::run(
            ctx,
            &mut sink,
            sent.response,
            &url,
            total,
            k,
            validator.unwrap_or_default(),
        )
        .await;
        if let Err(error) = result {
            // The file now has holes: the retry is one stream from zero.
            ctx.download.no_segments.set(true);
            ctx.download.segment_fallback.set(true);
            return Err(error);
        }
        let writer = sink.finish().await?;
        return Ok(Done::File {
            bytes: writer.written,
            file: writer.file,
            status,
            headers,
            url: url.into(),
        });
    }

    let mut body = BodyReader::new(sent.response, remaining, true).after(offset);
    // On any error the sink is dropped and parks its writer and buffered bytes in the drain:
    // everything that arrived before the failure lands, and a retry resumes after it.
    while let Some(chunk) = body.next(ctx).await? {
        sink.write(&chunk).await?;
        // A chunk shares awc's read buffer: holding it while reading on costs another one.
        drop(chunk);
        if sink.slow() && read_slowly(ctx, &mut body, &mut sink).await? {
            break;
        }
    }
    let writer = sink.finish().await?;

    if let Some(want) = opts.expect_size.filter(|n| *n != writer.written) {
        return Err(size_mismatch(want, writer.written));
    }
    if let (Some(want), Some(got)) = (&opts.expect_sha256, writer.sha256_hex()) {
        if *want != got {
            return Err(TransferError::ChecksumMismatch {
                what: "sha256",
                expected: want.clone(),
                actual: got,
            });
        }
    }
    Ok(Done::File {
        bytes: writer.written,
        file: writer.file,
        status,
        headers,
        url: sent.url.into(),
    })
}

/// The longest a slow download lets its bytes gather in the socket between reads.
const ROUND: Duration = Duration::from_millis(250);

/// Read a trickling body in rounds: wait a `ROUND` (at most a quarter of the idle timeout),
/// take every chunk the connection has by then, write them out as one buffer. The bytes wait
/// in the kernel's socket buffer (at `SLOW_RATE`, a round's worth fits there) instead of a
/// write buffer of ours, and the transfer wakes once a round instead of once a chunk. Everything
/// waiting is read each round, so this never slows the transfer down. Returns `true` when the
/// body ended, `false` once the data flows faster than `SLOW_RATE` again.
async fn read_slowly(
    ctx: &Ctx,
    body: &mut BodyReader,
    sink: &mut FileSink,
) -> Result<bool, TransferError> {
    // A zero idle timeout is no limit, not a zero round.
    let round = match ctx.idle_timeout() {
        idle if idle.is_zero() => ROUND,
        idle => ROUND.min(idle / 4),
    };
    loop {
        let start = Instant::now();
        actix_rt::time::sleep(round).await;
        let mut got = 0;
        while let Some(chunk) = body.ready(ctx).await {
            match chunk? {
                Some(chunk) => {
                    got += chunk.len();
                    sink.write(&chunk).await?;
                }
                None => return Ok(true),
            }
            if got as f64 >= SLOW_RATE * start.elapsed().as_secs_f64() {
                // Not slow any more: read on chunk by chunk, yielding between chunks, rather
                // than take a burst here in one go.
                break;
            }
        }
        if got == 0 {
            // Nothing for a whole round: wait for the next byte as usual (the watchdog runs).
            match body.next(ctx).await? {
                Some(chunk) => sink.write(&chunk).await?,
                None => return Ok(true),
            }
        }
        sink.write_out().await?;
        if got as f64 >= SLOW_RATE * start.elapsed().as_secs_f64() {
            return Ok(false);
        }
    }
}

/// The most segments one download is fetched in, whatever it asks for (as aria2 caps its
/// connections per server): each is a connection and a future, and a huge count would open
/// thousands against one server.
const MAX_SEGMENTS: u64 = 16;

/// How many segments to fetch this response in, if it qualifies (see [`Download::segments`]).
///
/// [`Download::segments`]: crate::Download::segments
fn segments(
    ctx: &Ctx,
    opts: &DownloadOptions,
    response: &awc::ClientResponse,
    offset: u64,
    total: Option<u64>,
) -> Option<u64> {
    let k = u64::from(opts.segments.unwrap_or(ctx.cfg.segments));
    let total = total?;
    let threshold = match opts.segments {
        Some(_) => 0,
        None => ctx.cfg.segment_threshold,
    };
    let accepts_ranges = response
        .headers()
        .get(header::ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
    let k = k.min(total / segmented::MIN_SEGMENT).min(MAX_SEGMENTS);
    let qualifies = k >= 2
        && offset == 0
        && total >= threshold
        && response.status() == StatusCode::OK
        && accepts_ranges
        && opts.expect_sha256.is_none()
        && !ctx.download.no_segments.get()
        && !ctx.download.no_ranges.get()
        && ctx.download.validator.borrow().is_some();
    qualifies.then_some(k)
}

fn size_mismatch(want: u64, got: u64) -> TransferError {
    TransferError::SizeMismatch {
        expected: want,
        actual: got,
    }
}

/// Empty the `.part` to fetch it from zero, unless the download must only ever resume.
async fn restart(
    sink: &mut Option<FileSink>,
    opts: &DownloadOptions,
    why: &str,
) -> Result<(), TransferError> {
    if opts.resumable_only {
        return Err(TransferError::CannotResume(why.into()));
    }
    tracing::debug!(why, "restarting the download from zero");
    match sink {
        Some(sink) => sink.truncate().await,
        None => Ok(()),
    }
}

/// Create the `.part` of a download named after its response, as `name` under the download
/// dir (off-thread), and record where it is. The creation runs to its end even when this
/// attempt is aborted meanwhile, and a stop waits for it: the transfer always learns of the
/// file, to remove or keep it as its policy says.
async fn place(
    ctx: &Rc<Ctx>,
    opts: &DownloadOptions,
    name: PathBuf,
) -> Result<FileSink, TransferError> {
    let dir = ctx.cfg.download_dir.clone();
    let (conflict, hashed) = (opts.conflict, opts.expect_sha256.is_some());
    let fsync = opts.fsync.unwrap_or(ctx.cfg.fsync);
    let job = blocking::run(move || {
        sink::prepare_part(&dir, &name, conflict)
            .map(|(p, f)| (p, Writer::new(f, hashed).write_behind(fsync)))
    });
    let (settled, settled_rx) = oneshot::channel::<()>();
    ctx.download.watch_quiescence(settled_rx);
    let (done, done_rx) = oneshot::channel();
    let shared = Rc::clone(ctx);
    actix_rt::spawn(async move {
        let placed = job.await.unwrap_or_else(|e| Err(e.into()));
        let placed = match placed {
            Ok((placement, writer)) => {
                shared.progress.set_path(placement.target.clone());
                #[cfg(feature = "journal")]
                let recorded = shared.record_part(&placement);
                *shared.download.placement.borrow_mut() = Some(placement);
                *shared.download.writer.borrow_mut() = Some(writer);
                // Nothing is written into the `.part` before the journal knows its name and
                // identity (as `TransferActor::prepared` does for a named download).
                #[cfg(feature = "journal")]
                if let Some(Err(error)) = match recorded {
                    Some(recorded) => Some(recorded.await),
                    None => None,
                } {
                    tracing::warn!(%error, "the journal did not record the .part");
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        let _ = done.send(placed);
        drop(settled);
    });
    done_rx.await.unwrap_or_else(|_| {
        Err(TransferError::Internal(
            "the .part creation was lost".into(),
        ))
    })?;
    Ok(FileSink::new(
        ctx.download.take_writer()?,
        ctx.download.drain(),
    ))
}
