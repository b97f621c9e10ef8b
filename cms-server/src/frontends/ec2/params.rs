//! The parameters of a Query request: `Action=…&InstanceId.1=…&Filter.1.Name=…`,
//! from the query string and the form body, decoded once, read through views.

use std::collections::BTreeMap;

use super::error::{Ec2Error, Result};

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a
/// byte; the bytes must be UTF-8.
pub fn form_decode(s: &str) -> Option<String> {
    if !s.contains(['+', '%']) {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = b.get(i + 1).copied().and_then(hex)?;
                let lo = b.get(i + 2).copied().and_then(hex)?;
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Every parameter of a request.
#[derive(Debug, Default)]
pub struct Params {
    map: BTreeMap<String, String>,
}

impl Params {
    /// Adds the pairs of a form-encoded string (a query string or a body). A name
    /// given twice keeps its last value.
    pub fn add_form(&mut self, form: &str) -> Result<()> {
        for pair in form.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(k), Some(v)) = (form_decode(k), form_decode(v)) else {
                return Err(Ec2Error::invalid_value(format!(
                    "the request has a parameter that is not valid form encoding of UTF-8 text: `{}`",
                    pair.chars().take(64).collect::<String>()
                )));
            };
            self.map.insert(k, v);
        }
        Ok(())
    }

    /// The first parameter (in name order) that none of `allowed` describes; see
    /// [`describes`] for the patterns.
    pub fn unknown(&self, allowed: &[&[&str]]) -> Option<&str> {
        self.map
            .keys()
            .find(|k| {
                !allowed
                    .iter()
                    .flat_map(|a| a.iter())
                    .any(|p| describes(p, k))
            })
            .map(String::as_str)
    }

    /// The top-level view.
    pub fn view(&self) -> View<'_> {
        View {
            map: &self.map,
            prefix: String::new(),
        }
    }
}

/// The parameters under a prefix (`Filter.1.`), read by their rest.
#[derive(Clone, Debug)]
pub struct View<'a> {
    map: &'a BTreeMap<String, String>,
    prefix: String,
}

impl<'a> View<'a> {
    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The full name of a parameter, for messages.
    pub fn full_name(&self, name: &str) -> String {
        self.key(name)
    }

    /// Every parameter under the prefix, by full name, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.map
            .range(self.prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&self.prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A value.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.map.get(&self.key(name)).map(String::as_str)
    }

    /// A value that must be there.
    pub fn required(&self, name: &str) -> Result<&'a str> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(Ec2Error::missing(&self.key(name))),
        }
    }

    /// The positions of the entries `name.N…` in order. Positions are whole numbers
    /// written without leading zeros; `0` is one (some clients count from it). A
    /// value given without a position (`KeyName=web`, not `KeyName.1=web`) is read
    /// as position 1, as the client means it; given with `name.1` as well, the
    /// request is refused rather than one of them dropped.
    fn numbers(&self, name: &str, bare: bool) -> Result<Vec<u32>> {
        let whole = self.key(name);
        let head = format!("{whole}.");
        let mut ns: Vec<u32> = Vec::new();
        for k in self.map.range(head.clone()..).map(|(k, _)| k) {
            let Some(rest) = k.strip_prefix(&head) else {
                break;
            };
            let digits = rest.split('.').next().unwrap_or("");
            let n = digits
                .parse::<u32>()
                .ok()
                .filter(|_| digits == "0" || !digits.starts_with('0'))
                .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| {
                    Ec2Error::invalid_value(format!(
                        "parameter `{k}`: `{digits}` is not a list position (0, 1, 2, …)"
                    ))
                })?;
            if ns.last() != Some(&n) && !ns.contains(&n) {
                ns.push(n);
            }
        }
        if bare && self.map.contains_key(&whole) {
            if ns.contains(&1) {
                return Err(Ec2Error::combination(format!(
                    "The request gives both {whole} and {whole}.1; give one of them"
                )));
            }
            ns.push(1);
        }
        ns.sort_unstable();
        Ok(ns)
    }

    /// A list of values: `name.1`, `name.2`, … in order (`name` alone is `name.1`).
    pub fn list(&self, name: &str) -> Result<Vec<&'a str>> {
        let ns = self.numbers(name, true)?;
        let whole = self.key(name);
        ns.iter()
            .map(|n| {
                let k = format!("{whole}.{n}");
                let bare = || (*n == 1).then(|| self.map.get(&whole)).flatten();
                match self.map.get(&k).or_else(bare) {
                    Some(v) => Ok(v.as_str()),
                    None => Err(Ec2Error::invalid_value(format!(
                        "parameter `{k}` is a structure, not a value"
                    ))),
                }
            })
            .collect()
    }

    /// A list of structures: one view per `name.N.`, in order.
    pub fn structs(&self, name: &str) -> Result<Vec<View<'a>>> {
        Ok(self
            .numbers(name, false)?
            .into_iter()
            .map(|n| View {
                map: self.map,
                prefix: format!("{}.{n}.", self.key(name)),
            })
            .collect())
    }

    /// A nested structure `name.`.
    pub fn nested(&self, name: &str) -> View<'a> {
        View {
            map: self.map,
            prefix: format!("{}.", self.key(name)),
        }
    }

    /// An integer in `range`, if given.
    pub fn int(&self, name: &str, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.trim().parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            Ok(n) => Err(Ec2Error::invalid_value(format!(
                "Value ({n}) for parameter {} is invalid. Expected a value between {} and {}.",
                self.key(name),
                range.start(),
                range.end()
            ))),
            Err(_) => Err(Ec2Error::invalid_value(format!(
                "Value ({v}) for parameter {} is invalid. Expected an integer.",
                self.key(name)
            ))),
        }
    }

    /// A boolean (`true`/`false`), if given.
    pub fn bool(&self, name: &str) -> Result<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(Ec2Error::invalid_value(format!(
                "Value ({v}) for parameter {} is invalid. Expected true or false.",
                self.key(name)
            ))),
        }
    }
}

/// Whether the parameter `key` is one that `pattern` describes: the same
/// dot-separated parts, where `N` stands for a list position (digits); a pattern that
/// ends in `.N` (a list of values) also describes its name given alone, which
/// [`View::list`] reads as position 1. `Filter.N.Value.N` describes `Filter.1.Value.2`
/// and `Filter.1.Value`, not `Filter.Value` or `Filter.1.Values`.
pub fn describes(pattern: &str, key: &str) -> bool {
    let position = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut p = pattern.split('.');
    let mut k = key.split('.');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some("N"), None) => return p.next().is_none(),
            (Some("N"), Some(part)) if position(part) => {}
            (Some(a), Some(b)) if a == b && a != "N" => {}
            _ => return false,
        }
    }
}

/// One `Filter.N`: a name and the values any of which may match (`*` and `?`
/// wildcards, `\` escapes).
#[derive(Clone, Debug)]
pub struct Filter {
    /// The filter's name (`instance-state-name`, `tag:Name`).
    pub name: String,
    /// Its values.
    pub values: Vec<String>,
}

impl Filter {
    /// Whether any of `candidates` matches any value.
    pub fn matches<'s>(&self, candidates: impl IntoIterator<Item = &'s str>) -> bool {
        candidates
            .into_iter()
            .any(|c| self.values.iter().any(|p| wildcard(p, c)))
    }

    /// For `tag-key` and `tag:KEY`, whether `tags` match; `None` for other filters.
    pub fn on_tags(&self, tags: &cms_core::Tags) -> Option<bool> {
        if self.name == "tag-key" {
            return Some(self.matches(tags.keys().map(String::as_str)));
        }
        let key = self.name.strip_prefix("tag:")?;
        Some(self.matches(tags.get(key).map(String::as_str)))
    }
}

/// The `Filter.N` of a request, each with at least one value.
pub fn filters(p: &View<'_>) -> Result<Vec<Filter>> {
    let mut out = Vec::new();
    for f in p.structs("Filter")? {
        let name = f.required("Name")?.to_owned();
        let values: Vec<String> = f.list("Value")?.into_iter().map(str::to_owned).collect();
        if values.is_empty() {
            return Err(Ec2Error::invalid_value(format!(
                "The filter '{name}' has no values ({} is required)",
                f.full_name("Value.1")
            )));
        }
        out.push(Filter { name, values });
    }
    Ok(out)
}

/// The error for a filter name an action does not know.
pub fn unknown_filter(name: &str) -> Ec2Error {
    Ec2Error::invalid_value(format!("The filter '{name}' is invalid"))
}

/// EC2's filter wildcards: `*` any run, `?` one character, `\` escapes the next.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '\\']) {
        return pattern == text;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative glob with one backtrack point.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '\\' if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                    pi += 2;
                    ti += 1;
                    continue;
                }
                c if c != '\\' && c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(form: &str) -> Params {
        let mut p = Params::default();
        p.add_form(form).unwrap();
        p
    }

    #[test]
    fn decodes_forms_and_lists() {
        let p = params(
            "Action=DescribeInstances&InstanceId.2=i-b&InstanceId.1=i-a&InstanceId.10=i-j\
             &Filter.1.Name=tag%3AName&Filter.1.Value.1=web+1&Filter.1.Value.2=db%2A",
        );
        let v = p.view();
        assert_eq!(v.get("Action"), Some("DescribeInstances"));
        assert_eq!(v.list("InstanceId").unwrap(), ["i-a", "i-b", "i-j"]);
        let f = filters(&v).unwrap();
        assert_eq!(f[0].name, "tag:Name");
        assert_eq!(f[0].values, ["web 1", "db*"]);
        assert!(f[0].matches(["dbx"]));
        assert!(!f[0].matches(["web"]));
        assert!(v.required("Nope").is_err());
        assert!(params("InstanceId.x=1").view().list("InstanceId").is_err());
        let mut bad = Params::default();
        assert!(bad.add_form("A=%ZZ").is_err());
        assert!(bad.add_form("A=%FF").is_err());
        let e = filters(&params("Filter.1.Name=x").view()).unwrap_err();
        assert!(e.message.contains("Filter.1.Value.1"), "{e:?}");
    }

    #[test]
    fn numbers_and_booleans_name_the_parameter() {
        let v = params("MaxResults=3&DryRun=maybe");
        let v = v.view();
        let e = v.int("MaxResults", 5..=1000).unwrap_err();
        assert!(e.message.contains("MaxResults"), "{e:?}");
        assert!(v.bool("DryRun").unwrap_err().message.contains("DryRun"));
    }

    #[test]
    fn lists_count_from_zero_or_one_and_take_a_bare_member() {
        let p = params("ResourceId.0=i-a&ResourceId.1=i-b&Tag.0.Key=k&Tag.0.Value=v");
        let v = p.view();
        assert_eq!(v.list("ResourceId").unwrap(), ["i-a", "i-b"]);
        let tags = v.structs("Tag").unwrap();
        assert_eq!(tags[0].get("Key"), Some("k"));
        assert_eq!(
            params("KeyName=web").view().list("KeyName").unwrap(),
            ["web"]
        );
        assert_eq!(
            params("KeyName=a&KeyName.2=b")
                .view()
                .list("KeyName")
                .unwrap(),
            ["a", "b"]
        );
        let both = params("KeyName=a&KeyName.1=b");
        let e = both.view().list("KeyName").unwrap_err();
        assert_eq!(e.code, "InvalidParameterCombination");
        assert!(params("InstanceId.01=i").view().list("InstanceId").is_err());
        assert!(params("InstanceId.+1=i").view().list("InstanceId").is_err());
        let f = filters(&params("Filter.1.Name=key-name&Filter.1.Value=web").view()).unwrap();
        assert_eq!(f[0].values, ["web"]);
    }

    #[test]
    fn patterns_describe_parameters() {
        assert!(describes("InstanceId.N", "InstanceId.1"));
        assert!(describes("InstanceId.N", "InstanceId.0"));
        assert!(describes("InstanceId.N", "InstanceId"));
        assert!(!describes("InstanceId.N", "InstanceId.x"));
        assert!(!describes("InstanceId.N", "InstanceId.1.Foo"));
        assert!(!describes("InstanceId.N", "instanceId.1"));
        assert!(describes("Filter.N.Value.N", "Filter.2.Value.10"));
        assert!(describes("Filter.N.Value.N", "Filter.2.Value"));
        assert!(!describes("Filter.N.Name", "Filter.Name"));
        assert!(!describes("Filter.N.Name", "Filter.1"));
        assert!(describes(
            "Placement.AvailabilityZone",
            "Placement.AvailabilityZone"
        ));
        assert!(!describes("Placement.AvailabilityZone", "Placement"));
        assert!(!describes("Version", "Version.1"));
        let p = params("Action=X&Version=1&Bogus=1&InstanceId.1=i");
        assert_eq!(
            p.unknown(&[&["Action", "Version", "InstanceId.N"]]),
            Some("Bogus")
        );
        assert_eq!(
            p.unknown(&[&["Action", "Version", "InstanceId.N", "Bogus"]]),
            None
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("web-*", "web-1"));
        assert!(wildcard("w?b", "web"));
        assert!(!wildcard("w?b", "weeb"));
        assert!(wildcard("*b*d*", "abcde"));
        assert!(wildcard("a\\*", "a*"));
        assert!(!wildcard("a\\*", "ab"));
        assert!(wildcard("exact", "exact"));
        assert!(!wildcard("exact", "exactly"));
    }
}
