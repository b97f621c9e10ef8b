//! Percent-encoding of paths and query strings, for every frontend.

use std::borrow::Cow;

/// Decodes `%XX` escapes (and nothing else: `+` is a plus in paths).
pub fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    Cow::Owned(String::from_utf8_lossy(&decode_bytes(s.as_bytes(), false)).into_owned())
}

/// Decodes a query-string component: `%XX` escapes and `+` as space.
pub fn query_decode(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(String::from_utf8_lossy(&decode_bytes(s.as_bytes(), true)).into_owned())
}

fn decode_bytes(b: &[u8], plus_space: bool) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// Encodes a path segment (ids may hold `/` or other reserved characters).
pub fn percent_encode_segment(s: &str) -> Cow<'_, str> {
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if s.bytes().all(keep) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%20b%2"), "a b%2");
        assert_eq!(percent_decode("%41%"), "A%");
        assert_eq!(query_decode("a+b%3Dc"), "a b=c");
        assert_eq!(percent_encode_segment("i/1 x"), "i%2F1%20x");
    }
}
