//! An upload attempt: the file streamed as a sized request body, counted as it is handed to the
//! connection; then the response, whose body is kept in memory up to the cap.

use std::{io, rc::Rc};

use awc::body::{BoxBody, SizedStream};
use bytes::Bytes;
use futures::{stream::LocalBoxStream, StreamExt};

use super::{BodyReader, Ctx, Done};
use crate::{
    error::TransferError, event::Headers, file::source::file_stream, http, request::UploadBody,
};

/// The pieces a body in memory is handed to the connection in: progress, the bandwidth limit
/// and the idle timeout see it move as they see a file's.
const PIECE: usize = 64 * 1024;

/// The body from its start: the file read from the disk, or the bytes in pieces.
fn source(body: &UploadBody, size: u64) -> LocalBoxStream<'static, io::Result<Bytes>> {
    match body {
        UploadBody::File(file) => file_stream(file.to_path_buf(), 0, size).boxed_local(),
        UploadBody::Bytes(bytes) => {
            let bytes = bytes.clone();
            let pieces = (0..bytes.len())
                .step_by(PIECE)
                .map(move |at| Ok(bytes.slice(at..bytes.len().min(at + PIECE))));
            futures::stream::iter(pieces).boxed_local()
        }
    }
}

pub(super) async fn run(
    ctx: &Rc<Ctx>,
    body: &UploadBody,
    size: u64,
    max_body: Option<u64>,
) -> Result<Done, TransferError> {
    ctx.set_bytes(0); // a retry starts over from the beginning of the file
    ctx.began(None, Headers::default, Some(size));
    if size == 0 {
        ctx.body_done();
    }
    let mut make_body = || {
        // A fresh stream from the start of the file for each hop (307/308 re-send it).
        ctx.set_bytes(0);
        ctx.await_body();
        let c = Rc::clone(ctx);
        let counted = source(body, size).then(move |chunk| {
            let c = Rc::clone(&c);
            async move {
                match &chunk {
                    Ok(bytes) => {
                        c.moved(bytes.len());
                        c.throttle(bytes.len()).await;
                        if c.bytes() == size {
                            c.body_done();
                            c.await_headers();
                        }
                    }
                    Err(e) => {
                        c.set_body_error(TransferError::file_copy("reading the upload file", e))
                    }
                }
                chunk
            }
        });
        Some(BoxBody::new(SizedStream::new(size, Box::pin(counted))))
    };
    let sent = http::send(
        &ctx.client,
        &ctx.job.request,
        ctx.cfg.max_redirects,
        &mut make_body,
        &|url| ctx.redirected(url),
        &|answer| {
            ctx.responded(answer);
        },
    )
    .await
    .map_err(|e| ctx.take_body_error().unwrap_or(e))?;
    let status = sent.response.status();
    let headers = ctx.responded(&sent.response);
    if !status.is_success() {
        ctx.note_retry_after(&sent.response);
    }
    if !status.is_success() {
        return Err(TransferError::Server {
            status: status.as_u16(),
        });
    }
    let expected = http::body_length(&sent.response, &ctx.job.request.method)?;
    ctx.await_body();
    let reply = BodyReader::new(sent.response, expected, false)
        .collect(ctx, max_body.unwrap_or(ctx.cfg.max_body))
        .await?;
    Ok(Done::Memory {
        body: reply,
        bytes: ctx.bytes(),
        status: status.as_u16(),
        headers,
        url: sent.url.into(),
    })
}
