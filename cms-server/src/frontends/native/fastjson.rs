//! A hand-written JSON writer for instance listings, the hot path of the server.
//!
//! It writes exactly the bytes `serde_json` writes for the derived `Serialize` of
//! [`Instance`] (the tests compare both on awkward values), about twice as fast: no
//! per-fragment escaping of timestamps through `fmt`, and strings that need no
//! escaping (nearly all) copied whole. A field added to `Instance` breaks the
//! exhaustive destructuring below at compile time, so the two cannot drift apart.

use chrono::{DateTime, Datelike, Timelike, Utc};
use cms_core::{Instance, PageToken};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Which bytes `serde_json` escapes: `"`, `\\` and the control characters.
static ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether any byte of `bytes` needs escaping. Eight bytes at a time ("SWAR": a byte
/// below 0x20, or equal to `"` or `\\`, sets its high bit in the mask), the tail with
/// the table.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut mask = 0u64;
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let below_space = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * b'"' as u64);
        let quote = q.wrapping_sub(ONES) & !q;
        let b = x ^ (ONES * b'\\' as u64);
        let backslash = b.wrapping_sub(ONES) & !b;
        mask |= (below_space | quote | backslash) & HIGH;
    }
    mask != 0 || chunks.remainder().iter().any(|&b| ESCAPE[b as usize])
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !ESCAPE[b as usize] {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        start = i + 1;
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                continue;
            }
        };
        out.extend_from_slice(esc);
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_str_list<'a>(out: &mut Vec<u8>, items: impl Iterator<Item = &'a str>) {
    out.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, s);
    }
    out.push(b']');
}

fn two(out: &mut Vec<u8>, n: u32) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

fn digits(out: &mut Vec<u8>, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(b'0' + (n / div % 10) as u8);
        div /= 10;
    }
}

/// Appends a timestamp as chrono serializes it (RFC 3339, `Z`, sub-seconds as needed).
fn write_datetime(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    // One conversion; the accessors of `DateTime` convert again each time.
    let t_utc = t;
    let t = t.naive_utc();
    let year = t.year();
    if !(0..=9999).contains(&year) {
        // Rare: let chrono write the signed form.
        let _ = serde_json::to_writer(&mut *out, t_utc);
        return;
    }
    let (mut sec, mut nano) = (t.second(), t.nanosecond());
    if nano >= 1_000_000_000 {
        sec += 1;
        nano -= 1_000_000_000;
    }
    out.reserve(32);
    out.push(b'"');
    digits(out, year as u32, 4);
    out.push(b'-');
    two(out, t.month());
    out.push(b'-');
    two(out, t.day());
    out.push(b'T');
    two(out, t.hour());
    out.push(b':');
    two(out, t.minute());
    out.push(b':');
    two(out, sec);
    if nano != 0 {
        out.push(b'.');
        if nano % 1_000_000 == 0 {
            digits(out, nano / 1_000_000, 3);
        } else if nano % 1_000 == 0 {
            digits(out, nano / 1_000, 6);
        } else {
            digits(out, nano, 9);
        }
    }
    out.extend_from_slice(b"Z\"");
}

/// Appends one instance, byte for byte as `serde_json::to_writer(instance)` would.
pub fn write_instance(out: &mut Vec<u8>, i: &Instance) {
    let Instance {
        id,
        name,
        state,
        raw_state,
        image_id,
        flavor_id,
        location_id,
        network_ids,
        key_name,
        private_ips,
        public_ips,
        tags,
        created_at,
        client_token,
        owner,
        security_group_ids,
        volumes,
    } = i;
    out.extend_from_slice(b"{\"id\":");
    write_str(out, id.as_str());
    out.extend_from_slice(b",\"name\":");
    write_str(out, name);
    out.extend_from_slice(b",\"state\":\"");
    out.extend_from_slice(state.as_str().as_bytes());
    out.extend_from_slice(b"\",\"raw_state\":");
    write_str(out, raw_state);
    out.extend_from_slice(b",\"image_id\":");
    write_opt_str(out, image_id.as_ref().map(|x| x.as_str()));
    out.extend_from_slice(b",\"flavor_id\":");
    write_opt_str(out, flavor_id.as_ref().map(|x| x.as_str()));
    out.extend_from_slice(b",\"location_id\":");
    write_opt_str(out, location_id.as_ref().map(|x| x.as_str()));
    out.extend_from_slice(b",\"network_ids\":");
    write_str_list(out, network_ids.iter().map(|x| x.as_str()));
    out.extend_from_slice(b",\"key_name\":");
    write_opt_str(out, key_name.as_deref());
    out.extend_from_slice(b",\"private_ips\":");
    write_str_list(out, private_ips.iter().map(String::as_str));
    out.extend_from_slice(b",\"public_ips\":");
    write_str_list(out, public_ips.iter().map(String::as_str));
    out.extend_from_slice(b",\"tags\":{");
    for (n, (k, v)) in tags.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_str(out, v);
    }
    out.extend_from_slice(b"},\"created_at\":");
    match created_at {
        Some(t) => write_datetime(out, t),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"client_token\":");
    write_opt_str(out, client_token.as_deref());
    out.extend_from_slice(b",\"owner\":");
    write_opt_str(out, owner.as_deref());
    out.extend_from_slice(b",\"security_group_ids\":");
    write_str_list(out, security_group_ids.iter().map(|x| x.as_str()));
    out.extend_from_slice(b",\"volumes\":[");
    for (n, v) in volumes.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"volume_id\":");
        write_str(out, v.volume_id.as_str());
        out.extend_from_slice(b",\"device\":");
        write_opt_str(out, v.device.as_deref());
        out.extend_from_slice(if v.delete_on_termination {
            b",\"delete_on_termination\":true}"
        } else {
            b",\"delete_on_termination\":false}"
        });
    }
    out.extend_from_slice(b"]}");
}

/// Appends a listing `{"items":[…],"next_page_token":…}` of instances.
pub fn write_instance_page<'a>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = &'a Instance>,
    next: Option<&PageToken>,
) {
    write_page_with(out, items, next, write_instance);
}

/// [`write_instance_page`], each item written by `write` (with [`write_instance`], or
/// as the bytes it wrote before).
pub fn write_page_with<T>(
    out: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    next: Option<&PageToken>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    out.extend_from_slice(b"{\"items\":[");
    for (n, i) in items.into_iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write(out, i);
    }
    out.extend_from_slice(b"],\"next_page_token\":");
    write_opt_str(out, next.map(PageToken::as_str));
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cms_core::{InstanceId, InstanceState, Page};

    use super::*;

    fn instance(n: u32) -> Instance {
        let created = Utc
            .with_ymd_and_hms(2026, 1 + n % 12, 1 + n % 28, n % 24, n % 60, 7)
            .unwrap()
            + chrono::Duration::nanoseconds(
                [0, 5_000_000, 123_456_000, 987_654_321, 1_000, 999_999_999][n as usize % 6],
            );
        let mut tags = cms_core::Tags::new();
        tags.insert("env".into(), "prod".into());
        tags.insert(
            "quote\"key".into(),
            "back\\slash\n\t\u{1}\u{1f}\u{7f}é 😀".into(),
        );
        Instance {
            id: InstanceId::new(format!("i-{n:016x}")),
            name: if n % 2 == 0 {
                format!("web-{n}")
            } else {
                String::new()
            },
            state: InstanceState::ALL[n as usize % InstanceState::ALL.len()],
            raw_state: "RUNNING/\u{8}\u{c}\r".into(),
            image_id: (n % 3 != 0).then(|| "img-1".into()),
            flavor_id: (n % 3 != 1).then(|| "flv/2".into()),
            location_id: (n % 2 == 0).then(|| "zone-a".into()),
            network_ids: (0..n % 3).map(|k| format!("net-{k}").into()).collect(),
            key_name: (n % 4 == 0).then(|| "key \"one\"".into()),
            private_ips: vec!["10.0.0.2".into()],
            public_ips: Vec::new(),
            tags: if n % 5 == 0 { Default::default() } else { tags },
            created_at: (n % 7 != 0).then_some(created),
            client_token: (n % 2 == 1).then(|| "idem-abc".into()),
            owner: (n % 3 == 1).then(|| "team-a".into()),
            security_group_ids: (0..n % 3).map(|k| format!("sg-{k}").into()).collect(),
            volumes: (0..n % 4)
                .map(|k| cms_core::InstanceVolume {
                    volume_id: format!("vol-\"{k}").into(),
                    device: (k % 2 == 0).then(|| format!("/dev/sd{k}")),
                    delete_on_termination: k % 3 == 0,
                })
                .collect(),
        }
    }

    #[test]
    fn writes_what_serde_writes() {
        for n in 0..60 {
            let i = instance(n);
            let mut fast = Vec::new();
            write_instance(&mut fast, &i);
            let serde = serde_json::to_vec(&i).unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(serde).unwrap(),
                "instance {n}"
            );
        }
    }

    #[test]
    fn pages_match_the_listing_shape() {
        let items: Vec<Instance> = (0..5).map(instance).collect();
        for next in [None, Some(PageToken::new("tok\"en"))] {
            let page = Page {
                items: items.clone(),
                next: next.clone(),
            };
            let mut fast = Vec::new();
            write_instance_page(&mut fast, &page.items, page.next.as_ref());
            let expected = super::super::handlers::ListResponse::from(page);
            assert_eq!(fast, serde_json::to_vec(&expected).unwrap());
        }
    }

    #[test]
    fn escape_detection_is_exact() {
        // Every byte value at every position of strings of several lengths.
        for len in [1usize, 7, 8, 9, 16, 17, 31] {
            for pos in 0..len {
                for b in 0u8..=255 {
                    let mut v = vec![b'a'; len];
                    v[pos] = b;
                    assert_eq!(
                        needs_escape(&v),
                        ESCAPE[b as usize],
                        "byte {b:#x} at {pos} of {len}"
                    );
                }
            }
        }
        // Random strings mixing every kind of byte.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 59) as usize + 1;
            let v: Vec<u8> = (0..len)
                .map(|k| (seed.rotate_left(k as u32 * 7) >> 13) as u8)
                .collect();
            let expected = v.iter().any(|&b| ESCAPE[b as usize]);
            assert_eq!(needs_escape(&v), expected, "{v:?}");
        }
        let mut out = Vec::new();
        write_str(&mut out, "plain ascii and ünïcödé, 12345678");
        assert_eq!(
            out,
            serde_json::to_vec("plain ascii and ünïcödé, 12345678").unwrap()
        );
    }

    #[test]
    fn odd_years_fall_back_to_chrono() {
        let mut i = instance(1);
        i.created_at = Some(Utc.with_ymd_and_hms(12345, 1, 1, 0, 0, 0).unwrap());
        let mut fast = Vec::new();
        write_instance(&mut fast, &i);
        assert_eq!(fast, serde_json::to_vec(&i).unwrap());
    }
}
