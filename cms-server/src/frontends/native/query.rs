//! Query-string parameters of the listings: parsed by hand (repeatable keys, comma
//! lists, precise errors), documented by the `IntoParams` types beside the parsers.

use std::borrow::Cow;

use cms_core::{InstanceFilter, InstanceState, PageRequest, PageToken};
use serde::Deserialize;
use utoipa::IntoParams;

use super::problem::{ApiError, ServerKind};
use super::routes::query_decode;

/// The largest `limit`.
pub const MAX_LIMIT: u32 = 1000;

/// The most instance ids one listing request may name (`id=…`).
pub const MAX_IDS: usize = 100;

/// Filters of instance listings (`GET /v1/providers/{provider}/instances`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct InstanceListQuery {
    /// Only these instance ids: repeat the parameter (`id=a&id=b`; at most 100).
    #[param(style = Form, explode)]
    id: Option<Vec<String>>,
    /// Only instances in these states: repeat the parameter or give a comma list
    /// (`state=running,stopped`).
    #[param(style = Form, explode)]
    state: Option<Vec<InstanceState>>,
    /// Only instances with exactly this name.
    name: Option<String>,
    /// Only instances carrying this tag: `key` (any value) or `key=value`; repeatable.
    #[param(style = Form, explode)]
    tag: Option<Vec<String>>,
    /// At most this many items (1 to 1000; 100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_page_token` of the previous page (a token the listing did not hand
    /// out answers 404 `page_not_found`).
    page_token: Option<String>,
}

/// Filters of the aggregated instance listing (`GET /v1/instances`): every page of
/// every provider is collected, so there is no `limit` or `page_token`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AggregateQuery {
    /// Only these instance ids: repeat the parameter (`id=a&id=b`; at most 100).
    #[param(style = Form, explode)]
    id: Option<Vec<String>>,
    /// Only instances in these states: repeat the parameter or give a comma list.
    #[param(style = Form, explode)]
    state: Option<Vec<InstanceState>>,
    /// Only instances with exactly this name.
    name: Option<String>,
    /// Only instances carrying this tag: `key` or `key=value`; repeatable.
    #[param(style = Form, explode)]
    tag: Option<Vec<String>>,
}

/// Paging of the other paginated listings (images, flavors, networks).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageQuery {
    /// At most this many items (1 to 1000; the provider's default when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_page_token` of the previous page.
    page_token: Option<String>,
}

fn pairs(q: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    q.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (query_decode(k), query_decode(v))
    })
}

fn invalid(detail: String) -> ApiError {
    ApiError::server(ServerKind::InvalidQuery, detail)
}

fn unknown(key: &str, expected: &str) -> ApiError {
    if expected.is_empty() {
        invalid(format!(
            "unknown query parameter `{key}`; this route takes no query parameters"
        ))
    } else {
        invalid(format!(
            "unknown query parameter `{key}`; expected one of: {expected}"
        ))
    }
}

fn parse_limit(v: &str) -> Result<u32, ApiError> {
    match v.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(invalid(format!(
            "query parameter `limit` must be an integer from 1 to {MAX_LIMIT}, not `{v}`"
        ))),
    }
}

/// The longest `page_token`.
pub const MAX_PAGE_TOKEN: usize = 1024;

fn parse_page_token(v: &str) -> Result<PageToken, ApiError> {
    if v.is_empty() {
        return Err(invalid("query parameter `page_token` is empty".into()));
    }
    if v.len() > MAX_PAGE_TOKEN || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "query parameter `page_token` must be 1 to {MAX_PAGE_TOKEN} visible ASCII characters, \
             as the `next_page_token` of the previous page"
        )));
    }
    Ok(PageToken::new(v))
}

fn set_once<T>(slot: &mut Option<T>, key: &str, v: T) -> Result<(), ApiError> {
    if slot.is_some() {
        return Err(invalid(format!(
            "query parameter `{key}` is given more than once"
        )));
    }
    *slot = Some(v);
    Ok(())
}

/// Parses the instance filters, and the paging when `paged`.
pub fn instance_query(q: &str, paged: bool) -> Result<(InstanceFilter, PageRequest), ApiError> {
    let mut filter = InstanceFilter::default();
    let mut page = PageRequest::default();
    let expected = if paged {
        "id, state, name, tag, limit, page_token"
    } else {
        "id, state, name, tag"
    };
    for (k, v) in pairs(q) {
        match &*k {
            "id" => {
                if v.is_empty() || v.chars().count() > cms_core::MAX_ID {
                    return Err(invalid(format!(
                        "query parameter `id` must be 1 to {} characters",
                        cms_core::MAX_ID
                    )));
                }
                if filter.ids.len() == MAX_IDS {
                    return Err(invalid(format!(
                        "query parameter `id` is given more than {MAX_IDS} times"
                    )));
                }
                let id = cms_core::InstanceId::new(v.into_owned());
                if !filter.ids.contains(&id) {
                    filter.ids.push(id);
                }
            }
            "state" => {
                for s in v.split(',') {
                    let s = s.trim();
                    let st = s.parse::<InstanceState>().map_err(|_| {
                        invalid(format!(
                            "query parameter `state`: unknown state `{s}`; expected one of: {}",
                            InstanceState::ALL.map(|s| s.as_str()).join(", ")
                        ))
                    })?;
                    if !filter.states.contains(&st) {
                        filter.states.push(st);
                    }
                }
            }
            "name" => {
                cms_core::check_name("name", &v, false)
                    .map_err(|e| invalid(format!("query parameter {}", e.message())))?;
                set_once(&mut filter.name, "name", v.into_owned())?
            }
            "tag" => {
                let (key, value) = match v.split_once('=') {
                    Some((k, v)) => (k, Some(v.to_owned())),
                    None => (&*v, None),
                };
                if key.is_empty() {
                    return Err(invalid(format!(
                        "query parameter `tag`: `{v}` has an empty key; use `key` or `key=value`"
                    )));
                }
                if key.chars().count() > cms_core::MAX_TAG_KEY
                    || value
                        .as_ref()
                        .is_some_and(|v| v.chars().count() > cms_core::MAX_TAG_VALUE)
                {
                    return Err(invalid(format!(
                        "query parameter `tag`: keys have at most {} characters, values at most {}",
                        cms_core::MAX_TAG_KEY,
                        cms_core::MAX_TAG_VALUE
                    )));
                }
                filter.tags.insert(key.to_owned(), value);
            }
            "limit" if paged => set_once(&mut page.limit, "limit", parse_limit(&v)?)?,
            "page_token" if paged => {
                set_once(&mut page.token, "page_token", parse_page_token(&v)?)?
            }
            _ => return Err(unknown(&k, expected)),
        }
    }
    Ok((filter, page))
}

/// Parses `limit` and `page_token`.
pub fn page_query(q: &str) -> Result<PageRequest, ApiError> {
    let mut page = PageRequest::default();
    for (k, v) in pairs(q) {
        match &*k {
            "limit" => set_once(&mut page.limit, "limit", parse_limit(&v)?)?,
            "page_token" => set_once(&mut page.token, "page_token", parse_page_token(&v)?)?,
            _ => return Err(unknown(&k, "limit, page_token")),
        }
    }
    Ok(page)
}

/// A `page_token` that names nothing of the caller's: not one a listing handed out.
pub fn unknown_page() -> ApiError {
    ApiError::server(
        ServerKind::PageNotFound,
        "query parameter `page_token` is not a token this listing handed out",
    )
}

/// Parses the paging of the server's own listings (jobs, deployments): `limit` (100
/// when absent), `page_token` (the last id of the previous page) and, with `target`,
/// the job listing's `target`.
pub fn cursor_query(
    q: &str,
    target: bool,
) -> Result<(u32, Option<String>, Option<String>), ApiError> {
    let (mut limit, mut token, mut tgt) = (None, None, None);
    let expected = if target {
        "target, limit, page_token"
    } else {
        "limit, page_token"
    };
    for (k, v) in pairs(q) {
        match &*k {
            "limit" => set_once(&mut limit, "limit", parse_limit(&v)?)?,
            "page_token" => {
                if v.is_empty()
                    || v.len() > 64
                    || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(unknown_page());
                }
                set_once(&mut token, "page_token", v.into_owned())?;
            }
            "target" if target => {
                if v.is_empty() || v.len() > 255 {
                    return Err(invalid(
                        "query parameter `target` must be 1 to 255 characters".into(),
                    ));
                }
                set_once(&mut tgt, "target", v.into_owned())?;
            }
            _ => return Err(unknown(&k, expected)),
        }
    }
    Ok((limit.unwrap_or(100), token, tgt))
}

/// Whether an instance operation asks to be answered with a job (`wait=false`); no
/// other query parameter is taken.
pub fn wait_query(q: &str) -> Result<bool, ApiError> {
    let mut wait = None;
    for (k, v) in pairs(q) {
        match (&*k, &*v) {
            ("wait", "false") => set_once(&mut wait, "wait", false)?,
            ("wait", other) => {
                return Err(invalid(format!(
                    "query parameter `wait` takes only `false` (answer 202 with a job that \
                     follows the operation to its end), not `{other}`; without it the answer \
                     comes when the provider has accepted the operation"
                )))
            }
            _ => return Err(unknown(&k, "wait")),
        }
    }
    Ok(wait == Some(false))
}

/// Checks that there are no query parameters.
pub fn no_query(q: &str) -> Result<(), ApiError> {
    match pairs(q).next() {
        Some((k, _)) => Err(unknown(&k, "")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cursors_and_wait() {
        assert_eq!(
            cursor_query("limit=5&page_token=job-0abc&target=dep-1", true).unwrap(),
            (5, Some("job-0abc".into()), Some("dep-1".into()))
        );
        assert_eq!(cursor_query("", false).unwrap(), (100, None, None));
        assert!(cursor_query("target=x", false).is_err());
        assert!(cursor_query("limit=5&limit=6", false).is_err());
        assert!(cursor_query("page_token=a%20b", false).is_err());
        assert!(!wait_query("").unwrap());
        assert!(wait_query("wait=false").unwrap());
        assert!(wait_query("wait=true").is_err());
        assert!(wait_query("wait=false&wait=false").is_err());
        assert!(wait_query("other=1").is_err());
    }

    #[test]
    fn parses_filters() {
        let (f, p) = instance_query(
            "state=running,stopped&state=pending&name=web+1&tag=env%3Dprod&tag=team&limit=10&page_token=abc&id=i%2C1&id=i-2&id=i-2",
            true,
        )
        .unwrap();
        assert_eq!(f.ids, [cms_core::InstanceId::new("i,1"), "i-2".into()]);
        assert_eq!(
            f.states,
            vec![
                InstanceState::Running,
                InstanceState::Stopped,
                InstanceState::Pending
            ]
        );
        assert_eq!(f.name.as_deref(), Some("web 1"));
        assert_eq!(f.tags.get("env"), Some(&Some("prod".into())));
        assert_eq!(f.tags.get("team"), Some(&None));
        assert_eq!(p.limit, Some(10));
        assert_eq!(p.token.unwrap().as_str(), "abc");
    }

    #[test]
    fn rejects_bad_params() {
        for (q, needle) in [
            ("state=sleeping", "sleeping"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=x", "limit"),
            ("bogus=1", "bogus"),
            ("tag==x", "tag"),
            ("name=a&name=b", "name"),
            ("page_token=", "page_token"),
            ("id=", "id"),
        ] {
            let e = instance_query(q, true).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{q}");
            assert!(e.detail().contains(needle), "{q}: {}", e.detail());
        }
        assert!(instance_query("limit=5", false).is_err());
        assert!(no_query("x=1").is_err());
        assert!(no_query("").is_ok());
        assert!(page_query("limit=5&page_token=t").is_ok());
    }
}
