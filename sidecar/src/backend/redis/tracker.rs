//! Per-topic delivery position of the listener: the epoch and the last offset handed to
//! local subscribers. Pub/sub messages can be lost (a reconnect, a failover, a slow
//! listener); offsets make that visible. Each incoming event is classified as the next
//! one (deliver), one already delivered (drop), or one beyond a gap that must first be
//! filled from history. A different epoch means the topic's history was lost and
//! restarted: tracking restarts at that epoch's beginning, and the epoch left behind
//! is remembered so late messages of it are dropped rather than flip-flopping.

use std::sync::Arc;

/// Epochs left behind that are remembered, to drop their late messages.
const RETIRED_EPOCHS: usize = 4;

/// What to do with an incoming event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// It is the next offset: deliver it.
    Deliver,
    /// Already delivered (or of an epoch left behind): drop it.
    Duplicate,
    /// Events after `after` and before this one are missing: fill them first.
    Gap { after: u64 },
}

/// Delivery position of one topic.
#[derive(Clone, Debug, Default)]
pub struct OffsetTracker {
    position: Option<(Arc<str>, u64)>,
    retired: Vec<Arc<str>>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Epoch and last delivered offset, once known.
    pub fn position(&self) -> Option<(&Arc<str>, u64)> {
        self.position.as_ref().map(|(e, o)| (e, *o))
    }

    /// Sets the starting point (events up to `offset` are not delivered) unless one is set.
    pub fn start_at(&mut self, epoch: &Arc<str>, offset: u64) {
        if self.position.is_none() {
            self.position = Some((epoch.clone(), offset));
        }
    }

    /// Classifies an event; a new epoch first moves tracking to that epoch's start.
    pub fn classify(&mut self, epoch: &str, offset: u64) -> Next {
        if self.retired.iter().any(|r| **r == *epoch) {
            return Next::Duplicate;
        }
        match &self.position {
            None => Next::Deliver,
            Some((current, last)) if **current == *epoch => {
                if offset <= *last {
                    Next::Duplicate
                } else if offset == last.saturating_add(1) {
                    Next::Deliver
                } else {
                    Next::Gap { after: *last }
                }
            }
            Some(_) => {
                self.switch_epoch(epoch);
                if offset == 1 {
                    Next::Deliver
                } else {
                    Next::Gap { after: 0 }
                }
            }
        }
    }

    /// Moves tracking to the start of `epoch` (no-op when already on it).
    pub fn switch_epoch(&mut self, epoch: &str) {
        if let Some((current, _)) = &self.position {
            if **current == *epoch {
                return;
            }
            if self.retired.len() >= RETIRED_EPOCHS {
                self.retired.remove(0);
            }
            self.retired.push(current.clone());
        }
        self.retired.retain(|r| **r != *epoch);
        self.position = Some((Arc::from(epoch), 0));
    }

    /// Records a delivered event (offsets only move forward within an epoch).
    pub fn delivered(&mut self, epoch: &str, offset: u64) {
        match &mut self.position {
            Some((current, last)) if **current == *epoch => *last = (*last).max(offset),
            _ => {
                self.switch_epoch(epoch);
                self.position = Some((Arc::from(epoch), offset));
            }
        }
    }

    /// Whether events up to `head` of `epoch` have not all been delivered.
    pub fn is_behind(&self, epoch: &str, head: u64) -> bool {
        match &self.position {
            None => true,
            Some((current, last)) => **current != *epoch || *last < head,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> OffsetTracker {
        let mut t = OffsetTracker::new();
        t.start_at(&Arc::from(epoch), offset);
        t
    }

    #[test]
    fn in_order_duplicates_and_gaps() {
        let mut t = at("e1", 5);
        assert_eq!(t.classify("e1", 6), Next::Deliver);
        t.delivered("e1", 6);
        assert_eq!(t.classify("e1", 6), Next::Duplicate);
        assert_eq!(t.classify("e1", 3), Next::Duplicate);
        assert_eq!(t.classify("e1", 9), Next::Gap { after: 6 });
        t.delivered("e1", 7);
        t.delivered("e1", 8);
        assert_eq!(t.classify("e1", 9), Next::Deliver);
        assert_eq!(t.position().map(|(e, o)| (e.to_string(), o)), Some(("e1".into(), 8)));
    }

    #[test]
    fn start_is_set_once() {
        let mut t = at("e1", 5);
        t.start_at(&Arc::from("e1"), 9);
        assert_eq!(t.classify("e1", 6), Next::Deliver);
        let mut fresh = OffsetTracker::new();
        assert_eq!(fresh.classify("e1", 40), Next::Deliver, "no baseline: deliver");
    }

    #[test]
    fn new_epoch_restarts_tracking_and_retires_the_old_one() {
        let mut t = at("e1", 50);
        assert_eq!(t.classify("e2", 1), Next::Deliver);
        t.delivered("e2", 1);
        assert_eq!(t.classify("e2", 2), Next::Deliver);
        // A late message of the old epoch is dropped, not a switch back.
        assert_eq!(t.classify("e1", 51), Next::Duplicate);
        assert_eq!(t.position().map(|(e, o)| (e.to_string(), o)), Some(("e2".into(), 1)));
        // Events of a new epoch that began before this sidecar saw it: fill from its start.
        assert_eq!(t.classify("e3", 4), Next::Gap { after: 0 });
        assert_eq!(t.classify("e3", 1), Next::Deliver);
    }

    #[test]
    fn retired_epochs_are_bounded() {
        let mut t = at("e0", 1);
        for i in 1..=10 {
            t.switch_epoch(&format!("e{i}"));
        }
        assert_eq!(t.retired.len(), RETIRED_EPOCHS);
        assert_eq!(t.classify("e9", 5), Next::Duplicate);
        // Forgotten long ago: treated as a new epoch again.
        assert_eq!(t.classify("e0", 1), Next::Deliver);
    }

    #[test]
    fn behind_the_head() {
        let mut t = at("e1", 5);
        assert!(!t.is_behind("e1", 5));
        assert!(t.is_behind("e1", 6));
        assert!(t.is_behind("e2", 0));
        t.delivered("e1", 6);
        assert!(!t.is_behind("e1", 6));
        assert!(OffsetTracker::new().is_behind("e1", 0));
    }
}
