//! What is derived from instance views, kept while the view stays the same.
//!
//! A driver that keeps its instances in memory hands out shared views
//! ([`Driver::list_instances_shared`](cms_core::Driver::list_instances_shared)): the
//! same `Arc` listing after listing, until the instance changes. What the server derives
//! from a view (the view as its tenant sees it, its JSON) is then worth keeping, keyed
//! by the instance's id and valid while the view is the same `Arc` ([`Arc::ptr_eq`]).
//! A view its driver does not refer to (a driver that makes its instances afresh for
//! each listing) is never kept: it cannot come back. Both sides are bounded: the
//! memory cloud keeps the views of the 10,000 instances it viewed last, these caches
//! at most their capacity, and a view that only a cache still holds is the first to
//! go.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use cms_core::{Instance, PageToken};

/// How many views a [`Derived`] keeps by default: a page of 1,000 instances ten times
/// over, a few megabytes of JSON at most.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// For each instance id, the view something was derived from and what was derived.
#[derive(Debug)]
pub struct Derived<V> {
    map: RwLock<Map<V>>,
    capacity: usize,
}

/// Keyed by where the view's id is kept (see [`key`]).
type Map<V> = HashMap<usize, (Arc<Instance>, V), BuildHasherDefault<IdHasher>>;

/// The key of a view: the address of its id's text. Views of one instance share their
/// id (ids are shared text), so a new view replaces the old one's entry; the entry
/// holds its view, and so its id, so no other id can be at that address meanwhile. A
/// driver whose views do not share ids only misses, and its views are not kept anyway.
/// Neither hashing nor comparing reads the id.
fn key(view: &Instance) -> usize {
    view.id.as_str().as_ptr() as usize
}

/// A hash of keys (the multiply-rotate of rustc's `FxHasher`): a page looks up every
/// instance, and the default hasher was a tenth of a listing's time. Keys are
/// addresses, not what clients send, so there is no flooding to resist.
#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl IdHasher {
    fn add(&mut self, word: u64) {
        const K: u64 = 0xf135_7aea_2e62_a9c5;
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("eight bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<V> Default for Derived<V> {
    fn default() -> Self {
        Derived::new(DEFAULT_CAPACITY)
    }
}

/// What a [`Derived`] keeps, read in place: a page's values are lent, not cloned (a
/// clone of a shared value is an atomic count that two cores fight over).
pub struct Reader<'a, V>(RwLockReadGuard<'a, Map<V>>);

impl<V> Reader<'_, V> {
    /// What was kept for `view`: `None` when nothing was, or it came from another
    /// view of the instance.
    pub fn get(&self, view: &Arc<Instance>) -> Option<&V> {
        self.0
            .get(&key(view))
            .filter(|(k, _)| Arc::ptr_eq(k, view))
            .map(|(_, d)| d)
    }
}

impl<V> Derived<V> {
    /// A cache of at most `capacity` views.
    pub fn new(capacity: usize) -> Self {
        Derived {
            map: RwLock::new(HashMap::default()),
            capacity: capacity.max(1),
        }
    }

    /// Reads what is kept. Hold it briefly (never across an `.await`): inserts wait.
    pub fn read(&self) -> Reader<'_, V> {
        Reader(self.map.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Keeps what was derived from each view, for the shared ones (the caller's
    /// reference aside, someone refers to them).
    pub fn insert<'a>(&self, derived: impl IntoIterator<Item = (&'a Arc<Instance>, V)>) {
        let fresh: Vec<(Arc<Instance>, V)> = derived
            .into_iter()
            .filter(|(v, _)| referred(v))
            .map(|(v, d)| (v.clone(), d))
            .collect();
        if fresh.is_empty() {
            return;
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() + fresh.len() > self.capacity {
            // Views that only this cache still holds are stale (the driver has let go
            // of them: the instance changed or went); if that is not enough, start over.
            map.retain(|_, (k, _)| referred(k));
            if map.len() + fresh.len() > self.capacity {
                map.clear();
            }
        }
        for (k, d) in fresh.into_iter().take(self.capacity) {
            map.insert(key(&k), (k, d));
        }
    }

    /// How many views are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<V: Clone> Derived<V> {
    /// What `make` derives from each of `views`, in order: kept from an earlier call
    /// while the view is the same `Arc`, else made and kept when the view is shared
    /// (its driver refers to it too).
    pub fn get_all<'a>(
        &self,
        views: impl ExactSizeIterator<Item = &'a Arc<Instance>> + Clone,
        make: impl Fn(&Instance) -> V,
    ) -> Vec<V> {
        let made = self.make_missing(views.clone(), &make);
        let r = self.read();
        made.into_iter()
            .zip(views)
            .map(|(m, v)| m.or_else(|| r.get(v).cloned()).unwrap_or_else(|| make(v)))
            .collect()
    }

    /// What `make` derives from each of `views` nothing is kept for (kept now, for the
    /// shared ones), in order; `None` for the others, which [`read`](Derived::read)
    /// lends. A caller that writes from both falls back on `make` for a view let go of
    /// in between (the cache was full).
    pub fn make_missing<'a>(
        &self,
        views: impl Iterator<Item = &'a Arc<Instance>> + Clone,
        make: impl Fn(&Instance) -> V,
    ) -> Vec<Option<V>> {
        let made: Vec<Option<V>> = {
            let r = self.read();
            views
                .clone()
                .map(|v| r.get(v).is_none().then(|| make(v)))
                .collect()
        };
        if made.iter().any(Option::is_some) {
            self.insert(views.zip(&made).filter_map(|(v, m)| Some((v, m.clone()?))));
        }
        made
    }

    /// What was kept for each of `views`, cloned, in order (see [`Reader::get`]).
    pub fn lookup<'a>(&self, views: impl Iterator<Item = &'a Arc<Instance>>) -> Vec<Option<V>> {
        let r = self.read();
        views.map(|v| r.get(v).cloned()).collect()
    }
}

/// How many bytes of answers a [`Pages`] keeps at most.
pub const PAGES_BYTES: usize = 8 << 20;

/// Whole answers to listings, each kept with the views it was written from: while a
/// listing answers the same views (the same `Arc`s, in order) and the same next token,
/// its answer is the same, and is not written again. Only answers whose views are all
/// shared are kept, at most [`PAGES_BYTES`] of them.
#[derive(Debug, Default)]
pub struct Pages {
    kept: Mutex<(HashMap<String, Arc<Page>>, usize)>,
}

/// An answer kept by [`Pages`].
#[derive(Debug)]
pub struct Page {
    views: Vec<Arc<Instance>>,
    next: Option<PageToken>,
    /// The answer.
    pub body: Box<str>,
}

impl Pages {
    /// The answer kept under `key`, if it was written from `views` and `next`.
    pub fn get<'a>(
        &self,
        key: &str,
        views: impl ExactSizeIterator<Item = &'a Arc<Instance>>,
        next: Option<&PageToken>,
    ) -> Option<Arc<Page>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let page = kept.0.get(key)?;
        (page.views.len() == views.len()
            && page.next.as_ref() == next
            && page.views.iter().zip(views).all(|(a, b)| Arc::ptr_eq(a, b)))
        .then(|| page.clone())
    }

    /// Keeps `body` under `key`, written from `views` and `next`, when every view is
    /// shared.
    pub fn insert<'a>(
        &self,
        key: String,
        views: impl Iterator<Item = &'a Arc<Instance>>,
        next: Option<&PageToken>,
        body: &str,
    ) {
        let mut kept_views = Vec::new();
        for v in views {
            if !referred(v) {
                return;
            }
            kept_views.push(v.clone());
        }
        if body.len() > PAGES_BYTES / 4 {
            return;
        }
        let page = Arc::new(Page {
            views: kept_views,
            next: next.cloned(),
            body: body.into(),
        });
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let (map, bytes) = &mut *kept;
        if *bytes + body.len() > PAGES_BYTES {
            map.clear();
            *bytes = 0;
        }
        *bytes += body.len();
        if let Some(old) = map.insert(key, page) {
            *bytes -= old.body.len();
        }
    }
}

/// Whether someone else (its driver) refers to a view: it may be listed again.
fn referred(v: &Arc<Instance>) -> bool {
    Arc::weak_count(v) > 0 || Arc::strong_count(v) > 1
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use cms_core::{InstanceId, InstanceState};

    use super::*;

    fn view(id: &str, name: &str) -> Arc<Instance> {
        Arc::new(Instance {
            id: InstanceId::new(id),
            name: name.into(),
            state: InstanceState::Running,
            raw_state: "running".into(),
            image_id: None,
            flavor_id: None,
            location_id: None,
            network_ids: Vec::new(),
            key_name: None,
            private_ips: Vec::new(),
            public_ips: Vec::new(),
            tags: Default::default(),
            created_at: None,
            client_token: None,
            owner: None,
            security_group_ids: Arc::default(),
            volumes: Vec::new(),
        })
    }

    #[test]
    fn a_shared_view_is_derived_once_until_it_changes() {
        let cache: Derived<String> = Derived::new(10);
        let made = Cell::new(0);
        let make = |i: &Instance| {
            made.set(made.get() + 1);
            format!("{}={}", i.id, i.name)
        };
        // The driver's own references, as the memory cloud keeps them.
        let a = view("i-1", "a");
        let b = view("i-2", "b");
        let held = [a.clone(), b.clone()];
        assert_eq!(cache.get_all(held.iter(), make), ["i-1=a", "i-2=b"]);
        assert_eq!(cache.get_all(held.iter(), make), ["i-1=a", "i-2=b"]);
        assert_eq!(made.get(), 2, "the second call derives nothing");
        // i-1 changes: a new view (with the same id, as a driver's views share it),
        // derived again; i-2 still kept.
        let a2 = Arc::new(Instance {
            name: "a2".into(),
            ..(*a).clone()
        });
        let held = [a2.clone(), b.clone()];
        assert_eq!(cache.get_all(held.iter(), make), ["i-1=a2", "i-2=b"]);
        assert_eq!(made.get(), 3);
        assert_eq!(cache.len(), 2);
        drop((a, a2, b));
    }

    #[test]
    fn a_page_is_answered_again_only_for_the_same_views_and_next_token() {
        let pages = Pages::default();
        let (a, b) = (view("i-1", "a"), view("i-2", "b"));
        let held = [a.clone(), b.clone()];
        let next = PageToken::new("t");
        pages.insert("k".into(), held.iter(), Some(&next), "<page/>");
        let got = pages.get("k", held.iter(), Some(&next)).expect("kept");
        assert_eq!(&*got.body, "<page/>");
        assert!(
            pages.get("k", held.iter(), None).is_none(),
            "another next token"
        );
        assert!(pages.get("other", held.iter(), Some(&next)).is_none());
        assert!(
            pages.get("k", held[..1].iter(), Some(&next)).is_none(),
            "fewer views"
        );
        // i-2 changed: a new view, another answer.
        let b2 = Arc::new(Instance {
            name: "b2".into(),
            ..(*b).clone()
        });
        let changed = [a.clone(), b2.clone()];
        assert!(pages.get("k", changed.iter(), Some(&next)).is_none());
        // A page of views nobody else holds is not kept.
        let fresh = [view("i-3", "c")];
        pages.insert("f".into(), fresh.iter(), None, "<f/>");
        let fresh_again = [fresh[0].clone()];
        drop(fresh);
        assert!(pages.get("f", fresh_again.iter(), None).is_none());
        drop((a, b, b2, held, changed));
    }

    #[test]
    fn views_nobody_else_holds_are_not_kept() {
        let cache: Derived<String> = Derived::new(10);
        let made = Cell::new(0);
        let make = |i: &Instance| {
            made.set(made.get() + 1);
            i.name.clone()
        };
        for _ in 0..3 {
            let fresh = [view("i-1", "a")];
            assert_eq!(cache.get_all(fresh.iter(), make), ["a"]);
        }
        assert_eq!(made.get(), 3);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_drops_stale_views_first_and_never_grows_past_its_capacity() {
        let cache: Derived<u32> = Derived::new(3);
        let live: Vec<Arc<Instance>> = (0..3).map(|n| view(&format!("i-{n}"), "x")).collect();
        let held = live.clone();
        cache.get_all(held.iter(), |_| 1);
        assert_eq!(cache.len(), 3);
        // i-0 changes: its old view is held by the cache alone.
        let mut live = live;
        live[0] = view("i-0", "y");
        drop(held);
        let other = [view("i-9", "z")];
        let hold_other = other.clone();
        // The old i-0 view is stale; i-1 and i-2 are still the driver's.
        cache.get_all(other.iter(), |_| 2);
        assert_eq!(cache.len(), 3);
        let many: Vec<Arc<Instance>> = (10..20).map(|n| view(&format!("i-{n}"), "x")).collect();
        let hold_many = many.clone();
        cache.get_all(many.iter(), |_| 3);
        assert!(cache.len() <= 3);
        drop((hold_other, hold_many, live));
    }
}
