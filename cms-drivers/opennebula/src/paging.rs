//! Paging through OpenNebula pools without fetching them whole, and without losing or
//! repeating objects while the pool changes.
//!
//! OpenNebula's pool calls (`one.vmpool.info`, `one.imagepool.info`, …) take a start
//! and an end argument. With an end below -1 they page: the start is an offset and
//! `-end` the page size (SQL `LIMIT offset, size`), over objects ordered by id —
//! ascending, or descending where oned's `API_LIST_ORDER` says `DESC`. Offsets alone
//! are not stable: an object that leaves the listing (a VM reaching DONE) shifts every
//! later one back, and a page would then skip an object.
//!
//! So a [`Cursor`] keeps the offset *and* the id of the last object handed out (the
//! anchor). The next window is read from a little before the offset; objects at or
//! before the anchor are dropped (no repeats); and when the window starts after the
//! anchor, objects before it vanished and the window moved past objects not yet seen,
//! so the cursor steps back, doubling the step, until the window reaches the anchor
//! again (no losses). Objects created meanwhile get higher ids: at the end of an
//! ascending listing they are found; in a descending one they come before the anchor
//! and are skipped, as they did not exist when the listing began.

use std::future::Future;

use crate::model::HasId;

/// How many objects before the offset each window re-reads to find the anchor.
const OVERLAP: u64 = 8;

/// A position in a pool listing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Whether the pool is listed in descending id order.
    pub desc: bool,
    /// Where the next object is expected.
    pub offset: u64,
    /// The id of the last object handed out.
    pub anchor: Option<i64>,
}

impl Cursor {
    /// `a12.4711`: the order, the offset, the anchor (empty before the first object).
    pub fn encode(&self) -> String {
        format!(
            "{}{}.{}",
            if self.desc { 'd' } else { 'a' },
            self.offset,
            self.anchor.map(|a| a.to_string()).unwrap_or_default()
        )
    }

    /// Reads what [`encode`](Cursor::encode) wrote.
    pub fn decode(text: &str) -> Option<Cursor> {
        let desc = match text.as_bytes().first()? {
            b'a' => false,
            b'd' => true,
            _ => return None,
        };
        let (offset, anchor) = text[1..].split_once('.')?;
        let offset = offset.parse().ok().filter(|o| *o <= i32::MAX as u64)?;
        let anchor = match anchor {
            "" => None,
            a => Some(a.parse().ok()?),
        };
        Some(Cursor {
            desc,
            offset,
            anchor,
        })
    }

    fn is_after(&self, id: i64) -> bool {
        match self.anchor {
            None => true,
            Some(a) if self.desc => id < a,
            Some(a) => id > a,
        }
    }
}

/// What one scan found.
#[derive(Debug)]
pub struct Scan<T> {
    pub items: Vec<T>,
    /// Where to continue; `None` when the pool is exhausted.
    pub next: Option<Cursor>,
}

/// Reads objects after `start` until `limit` of them pass `accept`, the pool ends, or
/// `budget` objects were read (then the page is short and `next` says where to go on).
///
/// `fetch(offset, size)` reads one window of the pool (the paging form of the pool
/// call). `window` is the smallest window to read; larger ones save round trips when
/// `accept` drops objects.
pub async fn scan<T, E, F, Fut>(
    mut fetch: F,
    start: Option<Cursor>,
    limit: usize,
    window: usize,
    budget: usize,
    mut accept: impl FnMut(&T) -> bool,
) -> Result<Scan<T>, E>
where
    T: HasId,
    F: FnMut(u64, u64) -> Fut,
    Fut: Future<Output = Result<Vec<T>, E>>,
{
    let limit = limit.max(1);
    let mut cur = start.unwrap_or_default();
    let mut out: Vec<T> = Vec::new();
    let mut scanned = 0usize;
    let mut back = 0u64;
    loop {
        let overlap = if cur.anchor.is_some() {
            cur.offset.min(OVERLAP)
        } else {
            0
        };
        let begin = cur.offset.saturating_sub(overlap + back);
        let wanted = ((limit - out.len()) + 1).max(window) as u64;
        let size = (cur.offset - begin) + wanted;
        let rows = fetch(begin, size).await?;
        scanned += rows.len();
        if rows.len() >= 2 {
            cur.desc = rows[0].oid() > rows[1].oid();
        }
        if cur.anchor.is_some() && begin > 0 && rows.first().is_none_or(|r| cur.is_after(r.oid())) {
            // Objects before the anchor left the listing: step back until the window
            // reaches the anchor again. Ends at offset 0 at the latest.
            back = back.max(size).saturating_mul(2);
            continue;
        }
        back = 0;
        let full = rows.len() as u64 == size;
        let mut progressed = false;
        for (i, row) in rows.into_iter().enumerate() {
            if !cur.is_after(row.oid()) {
                continue;
            }
            if out.len() == limit {
                return Ok(Scan {
                    items: out,
                    next: Some(cur),
                });
            }
            cur.anchor = Some(row.oid());
            cur.offset = begin + i as u64 + 1;
            progressed = true;
            if accept(&row) {
                out.push(row);
            }
        }
        if !full {
            return Ok(Scan {
                items: out,
                next: None,
            });
        }
        if !progressed {
            // Everything read is at or before the anchor (objects were inserted before
            // it in a descending listing): move on.
            cur.offset = begin + size;
        }
        if scanned >= budget {
            return Ok(Scan {
                items: out,
                next: Some(cur),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Obj(i64);

    impl HasId for Obj {
        fn oid(&self) -> i64 {
            self.0
        }
    }

    /// A pool whose contents the test changes between pages.
    struct Pool {
        ids: RefCell<Vec<i64>>,
        desc: bool,
        calls: RefCell<usize>,
    }

    impl Pool {
        fn new(ids: impl IntoIterator<Item = i64>, desc: bool) -> Pool {
            Pool {
                ids: RefCell::new(ids.into_iter().collect()),
                desc,
                calls: RefCell::new(0),
            }
        }

        async fn window(&self, offset: u64, size: u64) -> Result<Vec<Obj>, ()> {
            *self.calls.borrow_mut() += 1;
            let mut ids = self.ids.borrow().clone();
            ids.sort();
            if self.desc {
                ids.reverse();
            }
            Ok(ids
                .into_iter()
                .skip(offset as usize)
                .take(size as usize)
                .map(Obj)
                .collect())
        }

        async fn page(&self, cursor: Option<Cursor>, limit: usize) -> Scan<Obj> {
            scan(|o, s| self.window(o, s), cursor, limit, 1, 10_000, |_| true)
                .await
                .unwrap()
        }
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn ids(items: &[Obj]) -> Vec<i64> {
        items.iter().map(|o| o.0).collect()
    }

    #[test]
    fn cursor_round_trips() {
        for c in [
            Cursor::default(),
            Cursor {
                desc: true,
                offset: 12,
                anchor: Some(4711),
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        for bad in ["", "x1.2", "a.2", "a1", "a1.x", "a99999999999.1"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn pages_through_a_stable_pool() {
        block_on(async {
            let pool = Pool::new(0..23, false);
            let mut all = Vec::new();
            let mut cursor = None;
            loop {
                let page = pool.page(cursor, 5).await;
                assert!(page.items.len() <= 5);
                all.extend(ids(&page.items));
                match page.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(all, (0..23).collect::<Vec<_>>());
        });
    }

    #[test]
    fn loses_nothing_when_earlier_objects_vanish() {
        block_on(async {
            let pool = Pool::new(0..40, false);
            let first = pool.page(None, 10).await;
            assert_eq!(ids(&first.items), (0..10).collect::<Vec<_>>());
            // Nine objects already listed leave the pool (VMs reaching DONE).
            pool.ids.borrow_mut().retain(|i| *i >= 10 || *i == 3);
            let second = pool.page(first.next, 10).await;
            assert_eq!(ids(&second.items), (10..20).collect::<Vec<_>>());
        });
    }

    #[test]
    fn repeats_nothing_and_sees_new_objects_ascending() {
        block_on(async {
            let pool = Pool::new(0..10, false);
            let first = pool.page(None, 4).await;
            pool.ids.borrow_mut().extend(100..103);
            let mut all = ids(&first.items);
            let mut cursor = first.next;
            while let Some(c) = cursor {
                let p = pool.page(Some(c), 4).await;
                all.extend(ids(&p.items));
                cursor = p.next;
            }
            let mut want: Vec<i64> = (0..10).collect();
            want.extend(100..103);
            assert_eq!(all, want);
        });
    }

    #[test]
    fn descending_pools_page_without_repeats() {
        block_on(async {
            let pool = Pool::new(0..20, true);
            let first = pool.page(None, 5).await;
            assert_eq!(ids(&first.items), vec![19, 18, 17, 16, 15]);
            assert!(first.next.is_some_and(|c| c.desc));
            // New objects come first in a descending listing and shift every offset.
            pool.ids.borrow_mut().extend(50..80);
            let mut all = ids(&first.items);
            let mut cursor = first.next;
            while let Some(c) = cursor {
                let p = pool.page(Some(c), 5).await;
                all.extend(ids(&p.items));
                cursor = p.next;
            }
            assert_eq!(all, (0..20).rev().collect::<Vec<_>>());
        });
    }

    #[test]
    fn a_filtered_scan_stops_at_its_budget() {
        block_on(async {
            let pool = Pool::new(0..1000, false);
            let page = scan(
                |o, s| pool.window(o, s),
                None,
                5,
                100,
                300,
                |o: &Obj| o.0 % 400 == 399,
            )
            .await
            .unwrap();
            assert!(page.items.is_empty());
            let next = page.next.expect("a short page with a token");
            assert!(next.offset >= 300);
            let page = scan(
                |o, s| pool.window(o, s),
                Some(next),
                5,
                100,
                10_000,
                |o: &Obj| o.0 % 400 == 399,
            )
            .await
            .unwrap();
            assert_eq!(ids(&page.items), vec![399, 799]);
            assert!(page.next.is_none());
        });
    }
}
