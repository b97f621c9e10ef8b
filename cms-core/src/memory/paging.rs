//! Page tokens and pages over ordered maps.
//!
//! A token is `after:<id>`: the last id the previous page returned (or looked at).
//! Every listing is ordered by id, and new instance ids are always larger than the old
//! ones, so continuing "after" an id neither repeats nor loses anything, and a page
//! costs a range lookup plus the page itself.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::model::{Page, PageToken};
use crate::{Error, Operation, Result};

const PREFIX: &str = "after:";

/// The token that continues after `id`.
pub(super) fn token_after(id: impl std::fmt::Display) -> PageToken {
    PageToken::new(format!("{PREFIX}{id}"))
}

/// The id a token continues after; `InvalidArgument` naming `page_token` when the
/// token was not made by [`token_after`] (or, with `parse_id`, names no id of the
/// listing's kind).
pub(super) fn parse_token<T>(
    token: Option<&PageToken>,
    op: Operation,
    parse_id: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>> {
    let Some(token) = token else {
        return Ok(None);
    };
    token
        .as_str()
        .strip_prefix(PREFIX)
        .filter(|id| !id.is_empty())
        .and_then(parse_id)
        .map(Some)
        .ok_or_else(|| bad_token(token, op))
}

fn bad_token(token: &PageToken, op: Operation) -> Error {
    let shown: String = token.as_str().chars().take(64).collect();
    let ellipsis = if shown.len() < token.as_str().len() {
        "…"
    } else {
        ""
    };
    Error::invalid_argument(
        "page_token",
        format!(
            "`{shown}{ellipsis}` is not a page token of this listing; \
             pass back the `next` token of the previous page, or none to start over"
        ),
    )
    .with_operation(op)
}

/// One page of a map keyed by string ids, in id order, mapped through `view`.
pub(super) fn page_of<V, T>(
    map: &BTreeMap<String, V>,
    token: Option<&PageToken>,
    limit: usize,
    op: Operation,
    view: impl Fn(&V) -> T,
) -> Result<Page<T>> {
    let after = parse_token(token, op, |id| Some(id.to_owned()))?;
    let lower = match &after {
        Some(id) => Bound::Excluded(id.as_str()),
        None => Bound::Unbounded,
    };
    let mut range = map.range::<str, _>((lower, Bound::Unbounded));
    let mut items = Vec::with_capacity(limit.min(map.len()));
    let mut last = None;
    for (id, v) in range.by_ref().take(limit) {
        items.push(view(v));
        last = Some(id);
    }
    // Peek: no token when this page reached the end.
    let next = match (range.next(), last) {
        (Some(_), Some(last)) => Some(token_after(last)),
        _ => None,
    };
    Ok(Page { items, next })
}
