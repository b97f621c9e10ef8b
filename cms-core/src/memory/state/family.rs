//! What the families other than instances share: ids made like instance ids, an
//! index of each owner's resources, and exact pages.
//!
//! Ids are a prefix and 16 hex digits of a [`KeyClock`] key (`vol-0006…`): unique
//! across restarts and clouds, and sorting in creation order, so a listing in id order
//! continues after the last id of the previous page and neither repeats nor loses a
//! resource made meanwhile. A page filtered by owner reads that owner's index, so it
//! holds only the owner's resources and costs what the owner has; any filter looks at
//! no more than [`SCAN_BUDGET`] resources per page (a short page with a token then).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use super::{parse_token, token_after, KeyClock, SCAN_BUDGET};
use crate::model::{Page, PageRequest, PageToken};
use crate::{Operation, Result};

/// A stored resource that may have an owner.
pub(super) trait Owned {
    fn owner(&self) -> Option<&str>;
}

/// The resources of one family, by id, with their owners indexed.
#[derive(Debug)]
pub(super) struct Family<Id, V> {
    prefix: &'static str,
    keys: KeyClock,
    items: BTreeMap<Id, V>,
    by_owner: HashMap<String, BTreeSet<Id>>,
}

impl<Id, V> Family<Id, V>
where
    Id: Ord + Clone + From<String> + AsRef<str>,
    V: Owned,
{
    pub(super) fn new(prefix: &'static str) -> Self {
        Family {
            prefix,
            keys: KeyClock::new(),
            items: BTreeMap::new(),
            by_owner: HashMap::new(),
        }
    }

    /// A new id, larger than every id made before.
    pub(super) fn next_id(&mut self) -> Id {
        Id::from(format!("{}{:016x}", self.prefix, self.keys.next()))
    }

    /// Stores `v` (whose owner must not change afterwards).
    pub(super) fn insert(&mut self, id: Id, v: V) {
        if let Some(o) = v.owner() {
            self.by_owner
                .entry(o.to_owned())
                .or_default()
                .insert(id.clone());
        }
        self.items.insert(id, v);
    }

    pub(super) fn remove(&mut self, id: &Id) -> Option<V> {
        let v = self.items.remove(id)?;
        if let Some(o) = v.owner() {
            if let Some(ids) = self.by_owner.get_mut(o) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_owner.remove(o);
                }
            }
        }
        Some(v)
    }

    pub(super) fn get(&self, id: &Id) -> Option<&V> {
        self.items.get(id)
    }

    pub(super) fn get_key_value(&self, id: &Id) -> Option<(&Id, &V)> {
        self.items.get_key_value(id)
    }

    /// The resource, to change anything but its owner.
    pub(super) fn get_mut(&mut self, id: &Id) -> Option<&mut V> {
        self.items.get_mut(id)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Id, &V)> {
        self.items.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// The id a page token continues after: `InvalidArgument` for a token this family
    /// did not make (one of another listing included).
    pub(super) fn after(&self, token: Option<&PageToken>, op: Operation) -> Result<Option<Id>> {
        parse_token(token, op, |id| {
            id.starts_with(self.prefix).then(|| Id::from(id.to_owned()))
        })
    }

    /// The resources a listing looks at, in id order after `after`: those of `ids`
    /// when some are given, else the owner's when an owner is given, else all.
    pub(super) fn candidates<'s>(
        &'s self,
        ids: &[Id],
        owner: Option<&str>,
        after: Option<&Id>,
    ) -> Box<dyn Iterator<Item = (&'s Id, &'s V)> + 's> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        if !ids.is_empty() {
            let mut wanted: Vec<&Id> = ids
                .iter()
                .filter(|id| after.is_none_or(|a| *id > a))
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            let found: Vec<(&'s Id, &'s V)> = wanted
                .into_iter()
                .filter_map(|id| self.items.get_key_value(id))
                .collect();
            return Box::new(found.into_iter());
        }
        match owner {
            Some(o) => match self.by_owner.get(o) {
                Some(ids) => Box::new(
                    ids.range((lower, Bound::Unbounded))
                        .filter_map(|id| self.items.get_key_value(id)),
                ),
                None => Box::new(std::iter::empty()),
            },
            None => Box::new(self.items.range((lower, Bound::Unbounded))),
        }
    }

    /// One page: the candidates of `ids` and `owner` after the page token, each shown
    /// by `show` or skipped when it answers `None` (not visible, or not matching the
    /// rest of the filter).
    pub(super) fn page<T>(
        &self,
        ids: &[Id],
        owner: Option<&str>,
        page: &PageRequest,
        limit: usize,
        op: Operation,
        show: impl Fn(&Id, &V) -> Option<T>,
    ) -> Result<Page<T>> {
        let after = self.after(page.token.as_ref(), op)?;
        let candidates = self.candidates(ids, owner, after.as_ref());
        Ok(scan_page(
            candidates,
            limit,
            |(id, v)| show(id, v),
            |(id, _)| token_after(id.as_ref()),
        ))
    }
}

/// Two iterators in key order merged into one in key order (a key in both comes once,
/// from `a`).
pub(super) fn merge_sorted<K: Ord, C>(
    a: impl Iterator<Item = (K, C)>,
    b: impl Iterator<Item = (K, C)>,
) -> impl Iterator<Item = (K, C)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if x.0 == y.0 => {
            b.next();
            a.next()
        }
        (Some(x), Some(y)) if x.0 < y.0 => a.next(),
        (Some(_), Some(_)) | (None, _) => b.next(),
        (Some(_), None) => a.next(),
    })
}

/// A page of at most `limit` items shown from `candidates` (in listing order), looking
/// at no more than [`SCAN_BUDGET`] of them: when the budget is spent first, the page
/// is answered as it is (even empty) with a token after the last candidate looked at.
pub(super) fn scan_page<C: Clone, T>(
    candidates: impl Iterator<Item = C>,
    limit: usize,
    show: impl Fn(&C) -> Option<T>,
    token: impl Fn(&C) -> PageToken,
) -> Page<T> {
    let budget = SCAN_BUDGET.max(limit + 1);
    let mut items = Vec::new();
    let mut last_scanned: Option<C> = None;
    let mut last_returned: Option<C> = None;
    let mut next = None;
    for (scanned, c) in candidates.enumerate() {
        if scanned == budget {
            // More remain but this page has looked far enough.
            next = if items.len() == limit {
                last_returned
            } else {
                last_scanned
            };
            break;
        }
        if let Some(item) = show(&c) {
            if items.len() == limit {
                // One more match: the page is full and not the last.
                next = last_returned;
                break;
            }
            items.push(item);
            last_returned = Some(c.clone());
        }
        last_scanned = Some(c);
    }
    Page {
        items,
        next: next.as_ref().map(token),
    }
}
