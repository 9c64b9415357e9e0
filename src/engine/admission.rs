//! Admission: which waiting transfer starts next, under a global and a per-host limit.
//!
//! Each `host:port` has its own queue, ordered by (priority, id): FIFO within a priority. The
//! heads of the queues whose host has a free slot sit in one ordered set, so picking the next
//! transfer is `O(log n)` however many transfers wait and however many hosts are at their
//! limit; nothing is ever scanned.

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
    max_per_host: Option<usize>,
    active: usize,
    /// Every host with a transfer running or waiting: one lookup per operation.
    hosts: HashMap<Host, HostState>,
    /// The head of every queue whose host has a free slot.
    heads: BTreeSet<(QueueKey, Host)>,
    queued: usize,
    /// Where `host` spells a key to look it up.
    scratch: String,
}

#[derive(Debug, Default)]
struct HostState {
    running: usize,
    queue: BTreeMap<QueueKey, TransferId>,
    /// This host's entry in `heads`, if it has one.
    head: Option<QueueKey>,
}

impl Admission {
    pub(crate) fn new(max_active: usize, max_per_host: Option<usize>) -> Self {
        Admission {
            max_active: max_active.max(1),
            max_per_host: max_per_host.map(|n| n.max(1)),
            active: 0,
            hosts: HashMap::new(),
            heads: BTreeSet::new(),
            queued: 0,
            scratch: String::new(),
        }
    }

    /// The `host:port` of `url`, the unit of the per-host limit: the `Host` held for it while
    /// any of its transfers runs or waits (so submitting to a known host allocates nothing),
    /// else a new one.
    pub(crate) fn host(&mut self, url: &Url) -> Host {
        let key = &mut self.scratch;
        key.clear();
        key.push_str(url.host_str().unwrap_or(""));
        key.push(':');
        push_decimal(key, url.port_or_known_default().unwrap_or(0));
        match self.hosts.get_key_value(key.as_str()) {
            Some((host, _)) => Arc::clone(host),
            None => Arc::from(key.as_str()),
        }
    }

    pub(crate) fn key(priority: i32, id: TransferId) -> QueueKey {
        (Reverse(priority), id.get())
    }

    pub(crate) fn enqueue(&mut self, host: &Host, key: QueueKey, id: TransferId) {
        let st = self.hosts.entry(Arc::clone(host)).or_default();
        if st.queue.insert(key, id).is_none() {
            self.queued += 1;
        }
        refresh(&mut self.heads, self.max_per_host, host, st);
    }

    /// Take a waiting transfer out of its queue (cancelled or paused while queued).
    pub(crate) fn remove(&mut self, host: &Host, key: QueueKey) {
        let Some(st) = self.hosts.get_mut(host) else {
            return;
        };
        if st.queue.remove(&key).is_some() {
            self.queued -= 1;
        }
        refresh(&mut self.heads, self.max_per_host, host, st);
        if st.running == 0 && st.queue.is_empty() {
            self.hosts.remove(host);
        }
    }

    /// The next transfer to start, if a slot is free; it then holds that slot.
    pub(crate) fn next(&mut self) -> Option<TransferId> {
        if self.active >= self.max_active {
            return None;
        }
        let (key, host) = self.heads.pop_first()?;
        let st = self.hosts.get_mut(&host)?;
        st.head = None;
        let id = st.queue.remove(&key)?;
        self.queued -= 1;
        self.active += 1;
        st.running += 1;
        refresh(&mut self.heads, self.max_per_host, &host, st);
        Some(id)
    }

    /// Give back a slot taken by `next` (the transfer ended or paused).
    pub(crate) fn release(&mut self, host: &Host) {
        self.active = self.active.saturating_sub(1);
        let Some(st) = self.hosts.get_mut(host) else {
            return;
        };
        st.running = st.running.saturating_sub(1);
        refresh(&mut self.heads, self.max_per_host, host, st);
        if st.running == 0 && st.queue.is_empty() {
            self.hosts.remove(host);
        }
    }

    pub(crate) fn set_limits(
        &mut self,
        max_active: Option<usize>,
        max_per_host: Option<Option<usize>>,
    ) {
        if let Some(n) = max_active {
            self.max_active = n.max(1);
        }
        if let Some(n) = max_per_host {
            self.max_per_host = n.map(|n| n.max(1));
            for (host, st) in self.hosts.iter_mut() {
                refresh(&mut self.heads, self.max_per_host, host, st);
            }
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
        self.hosts
            .values()
            .flat_map(|st| st.queue.values().copied())
            .collect()
    }
}

/// Put `host`'s head in `heads` exactly when it has a waiting transfer and a free slot.
fn refresh(
    heads: &mut BTreeSet<(QueueKey, Host)>,
    max_per_host: Option<usize>,
    host: &Host,
    st: &mut HostState,
) {
    let head = if max_per_host.is_some_and(|max| st.running >= max) {
        None
    } else {
        st.queue.keys().next().copied()
    };
    // Most calls leave the head as it was (a transfer queued behind it, a slot given back
    // under no per-host limit): then `heads` is not touched.
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

    #[test]
    fn hosts_are_host_and_port_and_shared_while_known() {
        let mut a = Admission::new(2, None);
        let url = |s: &str| Url::parse(s).unwrap();
        let h = a.host(&url("http://example.com/a"));
        assert_eq!(&*h, "example.com:80");
        assert_eq!(&*a.host(&url("https://example.com/")), "example.com:443");
        assert_eq!(&*a.host(&url("http://[::1]:8080/")), "[::1]:8080");
        assert_eq!(&*a.host(&url("http://10.0.0.1:65535/")), "10.0.0.1:65535");
        a.enqueue(&h, Admission::key(0, id(1)), id(1));
        let again = a.host(&url("http://example.com:80/b"));
        assert!(
            Arc::ptr_eq(&h, &again),
            "a known host is not allocated again"
        );
    }

    #[test]
    fn priority_then_fifo_within_the_global_limit() {
        let mut a = Admission::new(2, None);
        let h: Host = Arc::from("h:80");
        for (n, prio) in [(1, 0), (2, 5), (3, 0), (4, 5)] {
            a.enqueue(&h, Admission::key(prio, id(n)), id(n));
        }
        assert_eq!(a.next(), Some(id(2)));
        assert_eq!(a.next(), Some(id(4)));
        assert_eq!(a.next(), None, "global limit");
        a.release(&h);
        assert_eq!(a.next(), Some(id(1)));
        assert_eq!(a.queued(), 1);
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
        a.set_limits(None, Some(None));
        assert_eq!(a.next(), Some(id(3)), "limit lifted");
    }

    #[test]
    fn removal_keeps_the_order() {
        let mut a = Admission::new(1, None);
        let h: Host = Arc::from("h:80");
        for n in 1..=3 {
            a.enqueue(&h, Admission::key(0, id(n)), id(n));
        }
        a.remove(&h, Admission::key(0, id(1)));
        assert_eq!(a.next(), Some(id(2)));
        assert_eq!(a.queued(), 1);
    }
}
