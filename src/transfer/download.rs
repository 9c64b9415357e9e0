//! A download attempt: GET, check the status and framing, stream the body into the `.part` file.

use awc::http::Method;

use super::{BodyReader, Ctx, Done};
use crate::{error::TransferError, http, sink::FileSink};

pub(super) async fn run(ctx: &Ctx) -> Result<Done, TransferError> {
    let file = ctx
        .take_part_file()
        .ok_or_else(|| TransferError::Internal("download started without its .part file".into()))?;
    let sent = http::send(
        &ctx.client,
        &ctx.job.request,
        ctx.cfg.max_redirects,
        &mut || None,
        &|url| ctx.redirected(url),
    )
    .await?;
    let status = sent.response.status();
    if !status.is_success() {
        // The error body is never read, let alone written to the target.
        return Err(TransferError::Server {
            status: status.as_u16(),
        });
    }
    http::check_partial(&sent)?;
    let expected = http::body_length(&sent.response, &Method::GET)?;
    ctx.began(
        Some(status.as_u16()),
        http::headers_of(&sent.response),
        expected,
    );
    ctx.await_body();
    let mut sink = FileSink::new(file, ctx.drain());
    let mut body = BodyReader::new(sent.response, expected, true);
    while let Some(chunk) = body.next(ctx).await? {
        sink.write(&chunk).await?;
    }
    let file = sink.finish().await?;
    Ok(Done::File {
        file,
        bytes: ctx.bytes(),
        status: status.as_u16(),
        url: sent.url.into(),
    })
}
