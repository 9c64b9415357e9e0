//! The floor of the contract: the least an actor-per-transfer engine can do per request, to
//! measure the engine against beside bare awc.
//!
//! A supervisor assigns ids, queues the requests and admits `conc` at a time; each request
//! runs in an actor of its own, which sends one end event to a subscriber and one report back
//! to the supervisor, then stops: what the crate's contract asks for, and nothing more (no
//! timeouts, redirects, checks, records, progress or cancel). Its CPU per request over bare
//! awc's is what one actor per request costs by itself; the engine's over the floor's is what
//! everything else costs.
//!
//! With one worker (`workers: 1`), as the engine's one-worker layout, the request actors run on
//! a thread of their own (an arbiter, each with its own client) and the supervisor and the
//! subscriber on the caller's: each request crosses between the threads three times (start,
//! end event, report), the least the contract's shape asks of that layout.

use std::collections::{HashMap, VecDeque};

use actix::{dev::ArbiterHandle, prelude::*};

/// Caller -> supervisor: run a GET of this URL; the reply is its id.
#[derive(Message)]
#[rtype(result = "u64")]
struct Submit(String);

/// Request actor -> supervisor: this one ended.
#[derive(Message)]
#[rtype(result = "()")]
struct Done(u64);

/// Request actor -> subscriber: the end event (its id, status and body length).
#[derive(Message)]
#[rtype(result = "()")]
struct End(u64, u16, usize);

struct Supervisor {
    next: u64,
    active: usize,
    max_active: usize,
    queue: VecDeque<(u64, String)>,
    running: HashMap<u64, Addr<Request>>,
    subscriber: Recipient<End>,
    runs: Runs,
}

/// Where the request actors run.
enum Runs {
    /// On the supervisor's thread, with its client.
    Here(awc::Client),
    /// On a worker thread, each with that thread's client.
    On(ArbiterHandle),
}

thread_local! {
    /// A worker thread's client (a client belongs to the thread that made it).
    static WORKER_CLIENT: awc::Client = crate::bare::bare_client();
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Supervisor {
    fn admit(&mut self, ctx: &mut Context<Self>) {
        while self.active < self.max_active {
            let Some((id, url)) = self.queue.pop_front() else {
                break;
            };
            self.active += 1;
            let (supervisor, subscriber) = (ctx.address().recipient(), self.subscriber.clone());
            let request = match &self.runs {
                Runs::Here(client) => Request {
                    id,
                    url,
                    client: client.clone(),
                    supervisor,
                    subscriber,
                }
                .start(),
                Runs::On(worker) => Request::start_in_arbiter(worker, move |_| Request {
                    id,
                    url,
                    client: WORKER_CLIENT.with(awc::Client::clone),
                    supervisor,
                    subscriber,
                }),
            };
            self.running.insert(id, request);
        }
    }
}

impl Handler<Submit> for Supervisor {
    type Result = u64;

    fn handle(&mut self, Submit(url): Submit, ctx: &mut Context<Self>) -> u64 {
        self.next += 1;
        self.queue.push_back((self.next, url));
        self.admit(ctx);
        self.next
    }
}

impl Handler<Done> for Supervisor {
    type Result = ();

    fn handle(&mut self, Done(id): Done, ctx: &mut Context<Self>) {
        self.running.remove(&id);
        self.active -= 1;
        self.admit(ctx);
    }
}

struct Request {
    id: u64,
    url: String,
    client: awc::Client,
    supervisor: Recipient<Done>,
    subscriber: Recipient<End>,
}

impl Actor for Request {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let request = self.client.get(self.url.as_str());
        ctx.spawn(
            actix::fut::wrap_future(async move {
                let mut response = request.send().await.expect("floor request");
                let body = response.body().await.expect("floor body");
                (response.status().as_u16(), body.len())
            })
            .map(
                |(status, len), act: &mut Request, ctx: &mut Context<Request>| {
                    act.subscriber.do_send(End(act.id, status, len));
                    act.supervisor.do_send(Done(act.id));
                    ctx.stop();
                },
            ),
        );
    }
}

/// Counts end events; says so once `expected` arrived, each a 200 of `len` bytes (and their
/// ids add up to those of `expected` requests: each ended once).
struct Subscriber {
    seen: usize,
    ids: u64,
    expected: usize,
    len: usize,
    all: Option<futures::channel::oneshot::Sender<()>>,
}

impl Actor for Subscriber {
    type Context = Context<Self>;
}

impl Handler<End> for Subscriber {
    type Result = ();

    fn handle(&mut self, End(id, status, len): End, _: &mut Context<Self>) {
        assert_eq!((status, len), (200, self.len), "floor answer");
        self.seen += 1;
        self.ids += id;
        if self.seen == self.expected {
            let n = self.expected as u64;
            assert_eq!(self.ids, n * (n + 1) / 2, "each request ended once");
            if let Some(all) = self.all.take() {
                let _ = all.send(());
            }
        }
    }
}

/// `n` GETs of `url` (each answered with `len` bytes) through the floor, `conc` at a time, all
/// submitted at once as the engine's "all queued" feed does, its request actors on this thread
/// (`workers` 0) or on one worker thread (1); returns once every end event arrived.
pub async fn floor_fetches(workers: usize, url: &str, len: usize, n: usize, conc: usize) {
    assert!(workers <= 1, "the floor has no pool of workers");
    let worker = (workers == 1).then(Arbiter::new);
    let (tx, rx) = futures::channel::oneshot::channel();
    let subscriber = Subscriber {
        seen: 0,
        ids: 0,
        expected: n,
        len,
        all: Some(tx),
    }
    .start()
    .recipient();
    let supervisor = Supervisor {
        next: 0,
        active: 0,
        max_active: conc,
        queue: VecDeque::new(),
        running: HashMap::new(),
        subscriber,
        runs: match &worker {
            None => Runs::Here(crate::bare::bare_client()),
            Some(worker) => Runs::On(worker.handle()),
        },
    }
    .start();
    for _ in 0..n {
        supervisor
            .send(Submit(url.to_owned()))
            .await
            .expect("floor supervisor");
    }
    rx.await.expect("every end event");
    if let Some(worker) = worker {
        worker.stop();
        let _ = worker.join();
    }
}
