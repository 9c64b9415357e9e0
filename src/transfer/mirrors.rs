//! Which URL of a download the next request goes to: the request's own (source 0) and its
//! mirrors (sources 1..), round robin after each failure a retry addresses, minus the mirrors
//! that disagreed with the file being written. Plain data: the actor and the attempt futures
//! ask it, the tests below need no socket.

/// The sources of one download, the one in use, and the ones dropped.
#[derive(Debug, Clone)]
pub(crate) struct Sources {
    /// The source the next request goes to.
    current: usize,
    /// How many sources there are.
    len: usize,
    /// One flag per source: `true` once it disagreed with the file (never asked again). Empty
    /// until the first is dropped: a transfer with no mirror, the common case, allocates none.
    dropped: Vec<bool>,
}

impl Default for Sources {
    /// The request's own URL alone.
    fn default() -> Self {
        Sources::new(1)
    }
}

impl Sources {
    /// `n` sources (at least one: the request's own URL), starting with the first.
    pub(crate) fn new(n: usize) -> Self {
        Sources {
            current: 0,
            len: n.max(1),
            dropped: Vec::new(),
        }
    }

    /// How many sources there are, dropped ones included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn is_dropped(&self, i: usize) -> bool {
        self.dropped.get(i).copied().unwrap_or(false)
    }

    /// The source the next request goes to.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// The sources still in use, in order.
    fn alive(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&i| !self.is_dropped(i))
    }

    /// Move to the next source still in use after the current one (round robin); returns it.
    /// With one source left, it stays.
    pub(crate) fn advance(&mut self) -> usize {
        let n = self.len();
        self.current = (1..=n)
            .map(|step| (self.current + step) % n)
            .find(|&i| !self.is_dropped(i))
            .unwrap_or(self.current);
        self.current
    }

    /// Never ask source `i` again: `false` when it is out of range, already dropped, or the
    /// last one in use (a download keeps one source to ask). Dropping the current source moves
    /// to the next one.
    pub(crate) fn drop_source(&mut self, i: usize) -> bool {
        if i >= self.len() || self.is_dropped(i) || self.alive().count() <= 1 {
            return false;
        }
        if self.dropped.is_empty() {
            self.dropped = vec![false; self.len];
        }
        self.dropped[i] = true;
        if i == self.current {
            self.advance();
        }
        true
    }

    /// The source of each of `k` segments: segment 0 is the current source (it answered the
    /// first request), the others go round robin over the sources in use from the next one on,
    /// as aria2 spreads its connections over a file's URIs.
    pub(crate) fn spread(&self, k: usize) -> Vec<usize> {
        let alive: Vec<usize> = self.alive().collect();
        let at = alive.iter().position(|&i| i == self.current);
        match at {
            Some(at) => (0..k).map(|s| alive[(at + s) % alive.len()]).collect(),
            // The current source was dropped meanwhile: every segment stays on it, the one the
            // first response came from.
            None => vec![self.current; k],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_never_moves() {
        let mut s = Sources::new(1);
        assert_eq!(s.advance(), 0);
        assert!(!s.drop_source(0), "the last source is kept");
        assert_eq!(s.spread(3), [0, 0, 0]);
        assert_eq!(
            Sources::new(0).len(),
            1,
            "there is always the request's own URL"
        );
    }

    #[test]
    fn advance_goes_round_robin() {
        let mut s = Sources::new(3);
        let order: Vec<usize> = (0..7).map(|_| s.advance()).collect();
        assert_eq!(order, [1, 2, 0, 1, 2, 0, 1]);
    }

    #[test]
    fn a_dropped_source_is_skipped_for_good() {
        let mut s = Sources::new(3);
        assert!(s.drop_source(1));
        assert!(!s.drop_source(1), "already dropped");
        assert!(!s.drop_source(3), "out of range");
        let order: Vec<usize> = (0..4).map(|_| s.advance()).collect();
        assert_eq!(order, [2, 0, 2, 0]);
        assert!(s.drop_source(0));
        assert!(!s.drop_source(2), "the last one in use stays");
        assert_eq!((s.advance(), s.advance()), (2, 2));
    }

    #[test]
    fn dropping_the_current_source_moves_on() {
        let mut s = Sources::new(3);
        s.advance();
        assert!(s.drop_source(1));
        assert_eq!(s.current(), 2);
    }

    #[test]
    fn segments_spread_from_the_current_source_over_those_in_use() {
        let mut s = Sources::new(3);
        assert_eq!(s.spread(6), [0, 1, 2, 0, 1, 2]);
        s.advance();
        assert_eq!(s.spread(4), [1, 2, 0, 1]);
        assert!(s.drop_source(2));
        assert_eq!(s.spread(4), [1, 0, 1, 0]);
        assert_eq!(s.spread(0), Vec::<usize>::new());
    }
}
