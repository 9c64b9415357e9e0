//! A fetch attempt: any method, optional body, the response body kept in memory up to a cap.

use awc::body::BoxBody;

use super::{BodyReader, Ctx, Done};
use crate::{error::TransferError, http, request::JobKind};

pub(super) async fn run(ctx: &Ctx) -> Result<Done, TransferError> {
    let JobKind::Fetch {
        body,
        any_status,
        max_body,
    } = &ctx.job.kind
    else {
        unreachable!("fetch::run is only called for fetches");
    };
    ctx.set_bytes(0); // a retry starts over
    let sent = http::send(
        &ctx.client,
        &ctx.job.request,
        ctx.cfg.max_redirects,
        &mut || body.clone().map(BoxBody::new),
        &|url| ctx.redirected(url),
        &|answer| {
            ctx.responded(answer);
        },
    )
    .await?;
    let status = sent.response.status();
    let headers = ctx.responded(&sent.response);
    if !status.is_success() {
        ctx.note_retry_after(&sent.response);
    }
    if !status.is_success() && !any_status {
        return Err(TransferError::Server {
            status: status.as_u16(),
        });
    }
    http::check_partial(&sent)?;
    let expected = http::body_length(&sent.response, &ctx.job.request.method)?;
    let limit = max_body.unwrap_or(ctx.cfg.max_body);
    if expected.is_some_and(|n| n > limit) {
        return Err(TransferError::BodyTooLarge { limit });
    }
    ctx.began(Some(status.as_u16()), || headers.clone(), expected);
    ctx.await_body();
    let body = BodyReader::new(sent.response, expected, true)
        .collect(ctx, limit)
        .await?;
    Ok(Done::Memory {
        bytes: body.len() as u64,
        body,
        status: status.as_u16(),
        headers,
        url: sent.url.into(),
    })
}
