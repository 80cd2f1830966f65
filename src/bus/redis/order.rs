//! What a receiver knows of each origin's sequence on each channel: a message already seen is a
//! duplicate, one that skips numbers means messages were lost on the way (the channel's class
//! resyncs from the database). The first message of an origin since the subscription started is
//! taken as is: anything it published before was published before this instance listened, so its
//! effects were in the database that the class loaded after subscribing.

use std::collections::HashMap;

/// What to do with a received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next one (or the first heard from that origin): deliver it.
    InOrder,
    /// Already seen (or older than the last seen): drop it.
    Duplicate,
    /// Some before it never arrived: deliver it, and resync what the channel feeds.
    Gap,
}

/// The last sequence number seen per (channel, origin).
#[derive(Debug, Default)]
pub struct Order {
    last: HashMap<(String, String), u64>,
}

impl Order {
    pub fn check(&mut self, channel: &str, origin: &str, seq: u64) -> Verdict {
        let key = (channel.to_owned(), origin.to_owned());
        match self.last.get_mut(&key) {
            None => {
                self.last.insert(key, seq);
                Verdict::InOrder
            }
            Some(last) if seq <= *last => Verdict::Duplicate,
            Some(last) => {
                let verdict = if seq == *last + 1 {
                    Verdict::InOrder
                } else {
                    Verdict::Gap
                };
                *last = seq;
                verdict
            }
        }
    }

    /// The channel is no longer listened to: what follows a new subscription starts afresh.
    pub fn forget_channel(&mut self, channel: &str) {
        self.last.retain(|(c, _), _| c != channel);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_dropped_and_gaps_seen_per_channel_and_origin() {
        let mut order = Order::default();
        assert_eq!(order.check("c1", "a", 7), Verdict::InOrder);
        assert_eq!(order.check("c1", "a", 8), Verdict::InOrder);
        assert_eq!(order.check("c1", "a", 8), Verdict::Duplicate);
        assert_eq!(order.check("c1", "a", 3), Verdict::Duplicate);
        // Another origin, another channel: their own sequences.
        assert_eq!(order.check("c1", "b", 1), Verdict::InOrder);
        assert_eq!(order.check("c2", "a", 1), Verdict::InOrder);
        assert_eq!(order.check("c1", "a", 10), Verdict::Gap);
        assert_eq!(order.check("c1", "a", 11), Verdict::InOrder);
        order.forget_channel("c1");
        assert_eq!(order.len(), 1);
        assert_eq!(order.check("c1", "a", 2), Verdict::InOrder);
    }
}
