//! Admission: which waiting transfer starts next, under a global and a per-host limit.
//!
//! Without a per-host limit (the default) every waiting transfer sits in one queue ordered by
//! (priority, id): FIFO within a priority, and no host is looked at. With one, each
//! `host:port` has its own queue, and the heads of the queues whose host has a free slot sit
//! in one ordered set, so picking the next transfer is `O(log n)` however many transfers wait
//! and however many hosts are at their limit; nothing is ever scanned. Switching between the
//! two rebuilds the queues from the record table, the one owner of where each transfer is.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
};

use url::Url;

use crate::event::TransferId;

/// Queue order: higher priority first, then lower id (earlier submission) first.
pub(crate) type QueueKey = (Reverse<i32>, u64);

pub(crate) type Host = Arc<str>;

#[derive(Debug)]
pub(crate) struct Admission {
    max_active: usize,
    active: usize,
    queued: usize,
    queues: Queues,
    /// The host handed out last: a run of submissions to one host allocates it once.
    last: Option<Host>,
    /// Where `host` spells a key to look it up.
    scratch: String,
}

#[derive(Debug)]
enum Queues {
    /// No per-host limit: one queue, and no host is tracked.
    One(BTreeMap<QueueKey, TransferId>),
    /// At most `max` running per host.
    PerHost {
        max: usize,
        /// Every host with a transfer running or waiting: one lookup per operation.
        hosts: HashMap<Host, HostState>,
        /// The head of every queue whose host has a free slot.
        heads: BTreeSet<(QueueKey, Host)>,
    },
}

#[derive(Debug, Default)]
struct HostState {
    running: usize,
    queue: BTreeMap<QueueKey, TransferId>,
    /// This host's entry in `heads`, if it has one.
    head: Option<QueueKey>,
}

/// Where a transfer stands for admission, as the record table tells it when the queues are
/// rebuilt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place {
    /// It holds a slot.
    Running,
    /// It waits under this key.
    Waiting(QueueKey, TransferId),
}

impl Admission {
    pub(crate) fn new(max_active: usize, max_per_host: Option<usize>) -> Self {
        Admission {
            max_active: max_active.max(1),
            active: 0,
            queued: 0,
            queues: Queues::new(max_per_host),
            last: None,
            scratch: String::new(),
        }
    }

    /// The `host:port` of `url`, the unit of the per-host limit: the `Host` handed out last if
    /// it is the same (a run of submissions to one host allocates it once), or under a
    /// per-host limit the one held while that host has transfers, else a new one.
    pub(crate) fn host(&mut self, url: &Url) -> Host {
        let key = &mut self.scratch;
        key.clear();
        key.push_str(url.host_str().unwrap_or(""));
        key.push(':');
        push_decimal(key, url.port_or_known_default().unwrap_or(0));
        if let Some(last) = self.last.as_ref().filter(|h| h[..] == key[..]) {
            return Arc::clone(last);
        }
        let host = match &self.queues {
            Queues::PerHost { hosts, .. } => hosts.get_key_value(key.as_str()).map(|(h, _)| h),
            Queues::One(_) => None,
        }
        .map_or_else(|| Arc::from(key.as_str()), Arc::clone);
        self.last = Some(Arc::clone(&host));
        host
    }

    pub(crate) fn key(priority: i32, id: TransferId) -> QueueKey {
        (Reverse(priority), id.get())
    }

    pub(crate) fn enqueue(&mut self, host: &Host, key: QueueKey, id: TransferId) {
        let fresh = match &mut self.queues {
            Queues::One(queue) => queue.insert(key, id).is_none(),
            Queues::PerHost { max, hosts, heads } => {
                let st = hosts.entry(Arc::clone(host)).or_default();
                let fresh = st.queue.insert(key, id).is_none();
                refresh(heads, *max, host, st);
                fresh
            }
        };
        self.queued += usize::from(fresh);
    }

    /// Take a waiting transfer out of its queue (cancelled or paused while queued).
    pub(crate) fn remove(&mut self, host: &Host, key: QueueKey) {
        let removed = match &mut self.queues {
            Queues::One(queue) => queue.remove(&key).is_some(),
            Queues::PerHost { max, hosts, heads } => {
                let Some(st) = hosts.get_mut(host) else {
                    return;
                };
                let removed = st.queue.remove(&key).is_some();
                refresh(heads, *max, host, st);
                if st.running == 0 && st.queue.is_empty() {
                    hosts.remove(host);
                }
                removed
            }
        };
        self.queued -= usize::from(removed);
    }

    /// The next transfer to start, if a slot is free; it then holds that slot.
    pub(crate) fn next(&mut self) -> Option<TransferId> {
        if self.active >= self.max_active {
            return None;
        }
        let id = match &mut self.queues {
            Queues::One(queue) => queue.pop_first()?.1,
            Queues::PerHost { max, hosts, heads } => {
                let (key, host) = heads.pop_first()?;
                let st = hosts.get_mut(&host)?;
                st.head = None;
                let id = st.queue.remove(&key)?;
                st.running += 1;
                refresh(heads, *max, &host, st);
                id
            }
        };
        self.queued -= 1;
        self.active += 1;
        Some(id)
    }

    /// Give back a slot taken by `next` (the transfer ended or paused).
    pub(crate) fn release(&mut self, host: &Host) {
        self.active = self.active.saturating_sub(1);
        let Queues::PerHost { max, hosts, heads } = &mut self.queues else {
            return;
        };
        let Some(st) = hosts.get_mut(host) else {
            return;
        };
        st.running = st.running.saturating_sub(1);
        refresh(heads, *max, host, st);
        if st.running == 0 && st.queue.is_empty() {
            hosts.remove(host);
        }
    }

    /// Change the limits. A different per-host limit, or none where there was one, rebuilds
    /// the queues from every transfer's host and place, which `transfers` lists (asked only
    /// then: the same limit again costs nothing).
    pub(crate) fn set_limits<'a, I>(
        &mut self,
        max_active: Option<usize>,
        max_per_host: Option<Option<usize>>,
        transfers: impl FnOnce() -> I,
    ) where
        I: Iterator<Item = (&'a Host, Place)>,
    {
        if let Some(n) = max_active {
            self.max_active = n.max(1);
        }
        let Some(max_per_host) = max_per_host
            .map(per_host_limit)
            .filter(|&m| m != self.per_host())
        else {
            return;
        };
        self.queues = Queues::new(max_per_host);
        self.active = 0;
        self.queued = 0;
        for (host, place) in transfers() {
            match place {
                Place::Waiting(key, id) => self.enqueue(host, key, id),
                Place::Running => self.hold(host),
            }
        }
    }

    /// The per-host limit, if there is one.
    fn per_host(&self) -> Option<usize> {
        match self.queues {
            Queues::One(_) => None,
            Queues::PerHost { max, .. } => Some(max),
        }
    }

    /// Count a transfer that holds a slot (a rebuild).
    fn hold(&mut self, host: &Host) {
        self.active += 1;
        if let Queues::PerHost { max, hosts, heads } = &mut self.queues {
            let st = hosts.entry(Arc::clone(host)).or_default();
            st.running += 1;
            refresh(heads, *max, host, st);
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active
    }

    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Every waiting transfer, in no particular order.
    pub(crate) fn waiting(&self) -> Vec<TransferId> {
        match &self.queues {
            Queues::One(queue) => queue.values().copied().collect(),
            Queues::PerHost { hosts, .. } => hosts
                .values()
                .flat_map(|st| st.queue.values().copied())
                .collect(),
        }
    }
}

/// A per-host limit as kept: at least one (a limit of zero would admit nothing).
fn per_host_limit(max: Option<usize>) -> Option<usize> {
    max.map(|n| n.max(1))
}

impl Queues {
    fn new(max_per_host: Option<usize>) -> Self {
        match per_host_limit(max_per_host) {
            None => Queues::One(BTreeMap::new()),
            Some(max) => Queues::PerHost {
                max,
                hosts: HashMap::new(),
                heads: BTreeSet::new(),
            },
        }
    }
}

/// Put `host`'s head in `heads` exactly when it has a waiting transfer and a free slot.
fn refresh(heads: &mut BTreeSet<(QueueKey, Host)>, max: usize, host: &Host, st: &mut HostState) {
    let head = if st.running >= max {
        None
    } else {
        st.queue.keys().next().copied()
    };
    // Most calls leave the head as it was (a transfer queued behind it): then `heads` is not
    // touched.
    if head == st.head {
        return;
    }
    if let Some(old) = st.head.take() {
        heads.remove(&(old, Arc::clone(host)));
    }
    if let Some(key) = head {
        heads.insert((key, Arc::clone(host)));
        st.head = Some(key);
    }
}

/// `n` in decimal, without the formatting machinery.
fn push_decimal(out: &mut String, n: u16) {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> TransferId {
        TransferId::new(n).unwrap()
    }

    /// Both layouts: one queue (no per-host limit) and a queue per host (a limit no test
    /// here reaches).
    const LAYOUTS: [Option<usize>; 2] = [None, Some(1000)];

    #[test]
    fn hosts_are_host_and_port_and_shared_while_known() {
        let url = |s: &str| Url::parse(s).unwrap();
        for per_host in LAYOUTS {
            let mut a = Admission::new(2, per_host);
            let h = a.host(&url("http://example.com/a"));
            assert_eq!(&*h, "example.com:80");
            let again = a.host(&url("http://example.com:80/b"));
            assert!(
                Arc::ptr_eq(&h, &again),
                "the last host is not allocated again"
            );
            assert_eq!(&*a.host(&url("https://example.com/")), "example.com:443");
            assert_eq!(&*a.host(&url("http://[::1]:8080/")), "[::1]:8080");
            assert_eq!(&*a.host(&url("http://10.0.0.1:65535/")), "10.0.0.1:65535");
            a.enqueue(&h, Admission::key(0, id(1)), id(1));
            let known = a.host(&url("http://example.com:80/c"));
            assert_eq!(
                Arc::ptr_eq(&h, &known),
                per_host.is_some(),
                "a host with a waiting transfer is shared where hosts are tracked"
            );
        }
    }

    #[test]
    fn priority_then_fifo_within_the_global_limit() {
        for per_host in LAYOUTS {
            let mut a = Admission::new(2, per_host);
            let h: Host = Arc::from("h:80");
            for (n, prio) in [(1, 0), (2, 5), (3, 0), (4, 5)] {
                a.enqueue(&h, Admission::key(prio, id(n)), id(n));
            }
            assert_eq!(a.next(), Some(id(2)));
            assert_eq!(a.next(), Some(id(4)));
            assert_eq!(a.next(), None, "global limit");
            a.release(&h);
            assert_eq!(a.next(), Some(id(1)));
            assert_eq!((a.active(), a.queued()), (2, 1));
        }
    }

    #[test]
    fn a_full_host_does_not_block_others() {
        let mut a = Admission::new(10, Some(1));
        let (x, y): (Host, Host) = (Arc::from("x:80"), Arc::from("y:80"));
        for n in 1..=1000 {
            a.enqueue(&x, Admission::key(0, id(n)), id(n));
        }
        a.enqueue(&y, Admission::key(0, id(1001)), id(1001));
        assert_eq!(a.next(), Some(id(1)));
        assert_eq!(a.next(), Some(id(1001)), "x is at its limit, y goes");
        assert_eq!(a.next(), None);
        a.release(&x);
        assert_eq!(a.next(), Some(id(2)));
        // What the record table would list now: 2 and 1001 running, 3..=1000 waiting.
        let running = [(&x, Place::Running), (&y, Place::Running)];
        let waiting = (3..=1000).map(|n| (&x, Place::Waiting(Admission::key(0, id(n)), id(n))));
        a.set_limits(None, Some(None), || running.into_iter().chain(waiting));
        assert_eq!((a.active(), a.queued()), (2, 998));
        for n in 3..=10 {
            assert_eq!(a.next(), Some(id(n)), "limit lifted: x's queue in order");
        }
        assert_eq!(a.next(), None, "global limit, running ones counted");
    }

    #[test]
    fn a_per_host_limit_set_later_counts_what_already_runs() {
        let mut a = Admission::new(10, None);
        let (x, y): (Host, Host) = (Arc::from("x:80"), Arc::from("y:80"));
        let wait = |n: u64| Place::Waiting(Admission::key(0, id(n)), id(n));
        let table = [
            (&x, Place::Running),
            (&x, Place::Running),
            (&x, wait(3)),
            (&x, wait(4)),
            (&y, wait(5)),
        ];
        a.set_limits(Some(4), Some(Some(2)), || table.into_iter());
        assert_eq!((a.active(), a.queued()), (2, 3));
        assert_eq!(a.next(), Some(id(5)), "x already runs two");
        assert_eq!(a.next(), None);
        a.release(&x);
        assert_eq!(a.next(), Some(id(3)));
        assert_eq!(a.next(), None, "x at its limit again");
        for same in [None, Some(Some(2))] {
            a.set_limits(None, same, || -> std::iter::Empty<(&Host, Place)> {
                unreachable!("the same limits: the queues stay as they are")
            });
        }
        assert_eq!((a.active(), a.queued()), (3, 1));
        // The table as it stands now: x runs two, y one, and 4 waits on x.
        let now = [
            (&x, Place::Running),
            (&x, Place::Running),
            (&y, Place::Running),
            (&x, wait(4)),
        ];
        a.set_limits(None, Some(Some(3)), || now.into_iter());
        assert_eq!(a.next(), Some(id(4)), "a higher limit lets x run a third");
    }

    #[test]
    fn removal_keeps_the_order() {
        for per_host in LAYOUTS {
            let mut a = Admission::new(1, per_host);
            let h: Host = Arc::from("h:80");
            for n in 1..=3 {
                a.enqueue(&h, Admission::key(0, id(n)), id(n));
            }
            a.remove(&h, Admission::key(0, id(1)));
            assert_eq!(a.next(), Some(id(2)));
            assert_eq!(a.queued(), 1);
        }
    }
}
