//! Every outcome shows the final response of the transfer's last attempt, when one arrived: its
//! status and headers, in `Wait`'s answer and in the `Ended` event alike.

use crate::{hostile, support};

use std::time::Duration;

use actix_transfer::*;
use hostile::*;

/// The headers of the error answers below: what a caller wants from a failure (when to come
/// back, what to quote to the server's operators).
const ERROR_HEADERS: [(&str, &str); 2] = [("Retry-After", "7"), ("x-request-id", "abc")];

/// Run `msg` to its end; the outcome `Wait` answered, after checking that the `Ended` event
/// carried the same one.
async fn run_and_compare<M>(engine: &actix::Addr<Engine>, events: &Events, msg: M) -> Outcome
where
    M: actix::Message<Result = Result<TransferId, TransferError>> + Send + 'static,
    Engine: actix::Handler<M>,
{
    let (id, waited) = run(engine, msg).await;
    assert_eq!(events.until_ended(id).await, waited);
    waited
}

fn assert_error_answer(outcome: &Outcome, status: u16) {
    assert_eq!(failure(outcome), &TransferError::Server { status });
    assert_eq!(outcome.status(), Some(status), "{outcome:?}");
    let Outcome::Failed {
        status: field,
        headers,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(*field, Some(status));
    assert_eq!(headers, outcome.headers());
    assert_eq!(headers.get("retry-after"), Some("7"));
    assert_eq!(headers.get("x-request-id"), Some("abc"));
}

#[actix_rt::test]
async fn a_fetch_and_a_download_answered_503_fail_with_its_status_and_headers() {
    let server = Hostile::always(vec![Step::Write(response(
        503,
        &ERROR_HEADERS,
        b"come back later",
    ))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;

    let fetched = run_and_compare(&engine, &events, Fetch::get(server.url("/f"))).await;
    assert_error_answer(&fetched, 503);

    let downloaded = run_and_compare(
        &engine,
        &events,
        Download::new(server.url("/d")).to("d.bin"),
    )
    .await;
    assert_error_answer(&downloaded, 503);
    assert_empty(dir.path());
}

#[actix_rt::test]
async fn an_upload_answered_404_fails_with_its_status_and_headers() {
    let server = Hostile::always(vec![Step::Write(response(
        404,
        &ERROR_HEADERS,
        br#"{"error": "no such bucket"}"#,
    ))]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up.bin");
    std::fs::write(&file, pattern(10_000)).unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;

    let outcome = run_and_compare(&engine, &events, Upload::new(server.url("/up"), &file)).await;

    assert_error_answer(&outcome, 404);
    assert_eq!(server.requests()[0].body, pattern(10_000));
}

#[actix_rt::test]
async fn a_refused_connection_fails_with_no_status_and_no_headers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;
    let url = format!("http://127.0.0.1:{}/x", support::proxy::dead_port());

    let outcome = run_and_compare(&engine, &events, Fetch::get(url)).await;

    assert_failed(&outcome, ErrorKind::Connect);
    assert_eq!(outcome.status(), None);
    assert!(outcome.headers().is_empty(), "{outcome:?}");
}

/// A retry's attempt that got no answer is the last word: the earlier attempt's `503` is not
/// shown as if it were why the transfer failed.
#[actix_rt::test]
async fn a_failure_shows_the_last_attempts_answer_not_an_earlier_ones() {
    let server = Hostile::start(|req| {
        if req.conn == 0 {
            vec![
                Step::Write(response(503, &ERROR_HEADERS[1..], b"busy")),
                Step::Close,
            ]
        } else {
            vec![Step::Reset]
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| {
        b.retry(
            RetryPolicy::default()
                .max_attempts(2)
                .initial_delay(Duration::from_millis(10)),
        )
    });
    let events = Events::subscribe(&engine).await;

    let outcome = run_and_compare(&engine, &events, Fetch::get(server.url("/x"))).await;

    assert_failed(&outcome, ErrorKind::Network);
    assert!(
        matches!(outcome, Outcome::Failed { attempts: 2, .. }),
        "{outcome:?}"
    );
    assert_eq!(outcome.status(), None);
    assert!(outcome.headers().is_empty(), "{outcome:?}");
}

#[actix_rt::test]
async fn a_download_cancelled_mid_body_has_its_200_and_headers() {
    let server = support::server();
    let rig = support::rig().await;
    let size = 10_000_000;
    let id = rig
        .submit(Download::new(server.url(&format!("/slow/{size}"))).to("big.bin"))
        .await;
    poll_status(&rig.engine, id, |s| s.bytes_transferred > 0).await;

    assert_eq!(rig.engine.send(Cancel(id)).await.unwrap(), Ok(()));

    let ended = rig.events.until_ended(id).await;
    assert_eq!(rig.wait(id).await, ended);
    let Outcome::Cancelled {
        bytes,
        status,
        headers,
    } = &ended
    else {
        panic!("{ended:?}")
    };
    assert!(*bytes > 0 && *bytes < size, "{bytes}");
    assert_eq!(*status, Some(200));
    assert_eq!(headers.get("content-length"), Some(&*size.to_string()));
}

/// A transfer that fails on a redirect (one too many, or to a place it may not go) shows that
/// redirect: its status and its `Location`, the last thing the server said.
#[actix_rt::test]
async fn a_failure_on_a_redirect_shows_that_redirect() {
    let looping = Hostile::ping_pong();
    let elsewhere = Hostile::always(vec![Step::Write(redirect(301, "ftp://127.0.0.1/file"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;

    let looped = run_and_compare(&engine, &events, Fetch::get(looping.url("/ping"))).await;
    assert!(
        matches!(failure(&looped), TransferError::TooManyRedirects { .. }),
        "{looped:?}"
    );
    assert_eq!(looped.status(), Some(302), "{looped:?}");
    assert!(
        matches!(looped.headers().get("location"), Some("/ping" | "/pong")),
        "{looped:?}"
    );

    let refused = run_and_compare(
        &engine,
        &events,
        Download::new(elsewhere.url("/file")).to("file"),
    )
    .await;
    assert!(
        matches!(failure(&refused), TransferError::RedirectRefused { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.status(), Some(301), "{refused:?}");
    assert_eq!(
        refused.headers().get("location"),
        Some("ftp://127.0.0.1/file")
    );
}

/// The headers an outcome shows: names lower-cased, and a name sent several times keeps its
/// values in the order the server sent them (the order between names is awc's map's).
#[actix_rt::test]
async fn a_repeated_header_keeps_its_values_in_order_under_a_lower_case_name() {
    let sent = [
        ("X-Multi", "first"),
        ("Content-Type", "text/plain"),
        ("x-multi", "second"),
        ("X-MULTI", "third"),
    ];
    let server = Hostile::always(vec![Step::Write(response(200, &sent, b"ok"))]);
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path(), |b| b);
    let events = Events::subscribe(&engine).await;

    let outcome = run_and_compare(&engine, &events, Fetch::get(server.url("/h"))).await;

    assert!(outcome.is_completed(), "{outcome:?}");
    let headers = outcome.headers();
    assert_eq!(
        headers.get_all("x-multi").collect::<Vec<_>>(),
        ["first", "second", "third"]
    );
    assert_eq!(headers.get("content-type"), Some("text/plain"));
    for (name, _) in headers {
        assert_eq!(name, name.to_ascii_lowercase(), "{headers:?}");
    }
}
