//! The set of namespaces waiting to be reconciled, and whether each needs a recompile
//! (its resources changed) or only a status refresh (its sidecars changed).

use std::collections::{BTreeMap, HashSet};

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct Dirty {
    pending: Mutex<BTreeMap<String, bool>>,
    /// Namespaces that have (or had) Eventcast resources or sidecars.
    known: Mutex<HashSet<String>>,
    notify: Notify,
}

impl Dirty {
    /// Marks `namespace`; `recompile` false means only statuses need a refresh.
    pub fn mark(&self, namespace: &str, recompile: bool) {
        self.known.lock().insert(namespace.to_owned());
        let mut pending = self.pending.lock();
        let e = pending.entry(namespace.to_owned()).or_insert(false);
        *e |= recompile;
        drop(pending);
        self.notify.notify_one();
    }

    /// Marks every known namespace for a recompile.
    pub fn mark_all(&self) {
        let known: Vec<String> = self.known.lock().iter().cloned().collect();
        for ns in known {
            self.mark(&ns, true);
        }
    }

    pub fn is_known(&self, namespace: &str) -> bool {
        self.known.lock().contains(namespace)
    }

    /// Wakes the reconciler without marking anything.
    pub fn kick(&self) {
        self.notify.notify_one();
    }

    pub async fn wait(&self) {
        self.notify.notified().await;
    }

    /// Takes everything pending.
    pub fn take(&self) -> BTreeMap<String, bool> {
        std::mem::take(&mut *self.pending.lock())
    }

    /// Puts entries back (e.g. when caches are not synced yet).
    pub fn restore(&self, entries: BTreeMap<String, bool>) {
        let mut pending = self.pending.lock();
        for (ns, recompile) in entries {
            *pending.entry(ns).or_insert(false) |= recompile;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recompile_wins_over_status_only() {
        let d = Dirty::default();
        d.mark("a", false);
        d.mark("a", true);
        d.mark("a", false);
        d.mark("b", false);
        let taken = d.take();
        assert_eq!(taken.get("a"), Some(&true));
        assert_eq!(taken.get("b"), Some(&false));
        assert!(d.take().is_empty());
        d.mark_all();
        assert_eq!(d.take().len(), 2);
    }
}
