//! A small XML writer for EC2 answers: elements are written straight into one string,
//! text escaped, no tree built.

use std::fmt::Write as _;

/// The namespace of every EC2 answer.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Appends text content `s` with `&`, `<` and `>` escaped, and characters XML 1.0
/// cannot carry dropped (text only: never used in attribute values).
pub fn escape_into(out: &mut String, s: &str) {
    if is_plain(s.as_bytes()) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c if c < ' ' => {}
            c => out.push(c),
        }
    }
}

/// Whether `b` has nothing to escape: no `&`, `<`, `>` and no control character.
/// The hot path of every answer, so it looks at eight bytes at a time: a byte of
/// the word is zero exactly where `word ^ broadcast(c)` has a zero byte, and below
/// 0x20 exactly where `word - broadcast(0x20)` borrows into its top bit.
fn is_plain(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGH != 0;
    let has_below_space = |w: u64| w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
    let mut words = b.chunks_exact(8);
    for c in &mut words {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        if has_below_space(w)
            || has_zero(w ^ (ONES * u64::from(b'&')))
            || has_zero(w ^ (ONES * u64::from(b'<')))
            || has_zero(w ^ (ONES * u64::from(b'>')))
        {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| !matches!(b, b'&' | b'<' | b'>') && b >= b' ')
}

/// A timestamp as EC2 writes them: `2026-11-22T10:00:00.000Z` (what filters on
/// times match against, too).
pub fn time_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    String::from_utf8_lossy(&time_bytes(t)).into_owned()
}

/// A timestamp as EC2 writes them, in place.
pub fn time_bytes(t: &chrono::DateTime<chrono::Utc>) -> [u8; 24] {
    use chrono::{Datelike, Timelike};
    let mut b = [0u8; 24];
    let mut put = |at: usize, n: u32, width: usize| {
        let mut n = n;
        for i in (0..width).rev() {
            b[at + i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, t.year().clamp(0, 9999) as u32, 4);
    put(5, t.month(), 2);
    put(8, t.day(), 2);
    put(11, t.hour(), 2);
    put(14, t.minute(), 2);
    put(17, t.second(), 2);
    put(20, t.timestamp_subsec_millis().min(999), 3);
    b[4] = b'-';
    b[7] = b'-';
    b[10] = b'T';
    b[13] = b':';
    b[16] = b':';
    b[19] = b'.';
    b[23] = b'Z';
    b
}

/// `<tag>text</tag>` for a literal tag, its markup made at compile time (the hot
/// paths' form of [`Xml::leaf`]).
macro_rules! leaf {
    ($x:expr, $tag:literal, $text:expr) => {
        $x.raw(concat!("<", $tag, ">"))
            .text($text)
            .raw(concat!("</", $tag, ">"))
    };
}
pub(crate) use leaf;

/// `<tag>id</tag>` for a literal tag and an id the server made (public ids are a
/// prefix and hex digits: nothing to escape, so nothing is looked for).
macro_rules! id_leaf {
    ($x:expr, $tag:literal, $id:expr) => {
        $x.raw(concat!("<", $tag, ">"))
            .id($id)
            .raw(concat!("</", $tag, ">"))
    };
}
pub(crate) use id_leaf;

/// An answer being written.
pub struct Xml {
    buf: String,
}

impl Xml {
    /// Starts `<{action}Response xmlns=…><requestId>…</requestId>`.
    pub fn response(action: &str, request_id: &str, capacity: usize) -> Xml {
        let mut buf = String::with_capacity(capacity.max(256));
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<");
        buf.push_str(action);
        buf.push_str("Response xmlns=\"");
        buf.push_str(NAMESPACE);
        buf.push_str("\"><requestId>");
        escape_into(&mut buf, request_id);
        buf.push_str("</requestId>");
        Xml { buf }
    }

    /// A part of an answer, written apart (and kept, see [`Xml::append`]).
    pub fn fragment(capacity: usize) -> Xml {
        Xml {
            buf: String::with_capacity(capacity),
        }
    }

    /// The markup of a [`fragment`](Xml::fragment).
    pub fn into_markup(self) -> String {
        self.buf
    }

    /// Where the next byte goes (for [`since`](Xml::since)).
    pub fn position(&self) -> usize {
        self.buf.len()
    }

    /// What was written from byte `at` on.
    pub fn since(&self, at: usize) -> &str {
        &self.buf[at..]
    }

    /// Markup written before by a fragment, as is.
    pub fn append(&mut self, markup: &str) -> &mut Self {
        self.buf.push_str(markup);
        self
    }

    /// `<tag>`.
    pub fn open(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// `</tag>`.
    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// An id the server made, written as it is (see [`id_leaf`]).
    pub fn id(&mut self, id: &str) -> &mut Self {
        debug_assert!(is_plain(id.as_bytes()), "{id:?} is not a public id");
        self.buf.push_str(id);
        self
    }

    /// Text content, escaped.
    pub fn text(&mut self, text: &str) -> &mut Self {
        escape_into(&mut self.buf, text);
        self
    }

    /// `<tag>text</tag>`, text escaped.
    pub fn leaf(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.buf, text);
        self.close(tag)
    }

    /// `<tag>PREFIX-DIGITS</tag>` for an id derived from the public id `of` (as
    /// [`derived_id`](super::actions::derived_id) makes it), written in place.
    pub fn derived_id(&mut self, tag: &str, prefix: &str, of: &str) -> &mut Self {
        let digits = of.split_once('-').map(|(_, d)| d).unwrap_or(of);
        self.open(tag);
        self.id(prefix);
        self.buf.push('-');
        self.id(digits);
        self.close(tag)
    }

    /// `<tag>ip-A-B-C-D.ec2.internal</tag>`: EC2's private DNS name of an IPv4
    /// address, written in place (other addresses are written as they are).
    pub fn private_dns(&mut self, tag: &str, ip: &str) -> &mut Self {
        self.open(tag);
        if ip.parse::<std::net::Ipv4Addr>().is_ok() {
            self.buf.push_str("ip-");
            self.buf
                .extend(ip.chars().map(|c| if c == '.' { '-' } else { c }));
            self.buf.push_str(".ec2.internal");
        } else {
            escape_into(&mut self.buf, ip);
        }
        self.close(tag)
    }

    /// `<tag>text</tag>` when there is a text.
    pub fn leaf_opt(&mut self, tag: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.leaf(tag, t);
        }
        self
    }

    /// `<tag>n</tag>`.
    pub fn num(&mut self, tag: &str, n: impl itoa::Integer) -> &mut Self {
        self.open(tag);
        self.buf.push_str(itoa::Buffer::new().format(n));
        self.close(tag)
    }

    /// `<tag>true</tag>` or `false`.
    pub fn bool(&mut self, tag: &str, b: bool) -> &mut Self {
        self.leaf(tag, if b { "true" } else { "false" })
    }

    /// Markup written as is: constant, well-formed XML only.
    pub fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.buf.push_str(markup);
        self
    }

    /// `<tag>2026-11-22T10:00:00.000Z</tag>`: a timestamp as EC2 writes them.
    pub fn time(&mut self, tag: &str, t: &chrono::DateTime<chrono::Utc>) -> &mut Self {
        let b = time_bytes(t);
        self.open(tag);
        self.buf
            .push_str(std::str::from_utf8(&b).unwrap_or_default());
        self.close(tag)
    }

    /// `<tag/>`: an empty list or structure.
    pub fn empty(&mut self, tag: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push_str("/>");
        self
    }

    /// A `tagSet` (or `tag`) list of key/value items; nothing when empty.
    pub fn tags<'a>(
        &mut self,
        tag: &str,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> &mut Self {
        let mut opened = false;
        for (k, v) in tags {
            if !opened {
                self.open(tag);
                opened = true;
            }
            self.raw("<item><key>")
                .text(k)
                .raw("</key><value>")
                .text(v)
                .raw("</value></item>");
        }
        if opened {
            self.close(tag);
        }
        self
    }

    /// Ends the answer.
    pub fn finish(mut self, action: &str) -> String {
        self.buf.push_str("</");
        self.buf.push_str(action);
        self.buf.push_str("Response>");
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_told_apart_at_every_position() {
        for len in 0..40 {
            let plain = "a".repeat(len);
            assert!(is_plain(plain.as_bytes()), "{len}");
            for at in 0..len {
                for special in [b'&', b'<', b'>', b'\n', 0, 0x1f] {
                    let mut t = plain.clone().into_bytes();
                    t[at] = special;
                    assert!(!is_plain(&t), "{len} {at} {special}");
                }
                // Bytes next to the special ones, and UTF-8, are plain.
                for other in [b' ', b'%', b'=', b'?', 0x7f, 0x80, 0xff] {
                    let mut t = plain.clone().into_bytes();
                    t[at] = other;
                    assert!(is_plain(&t), "{len} {at} {other}");
                }
            }
        }
    }

    #[test]
    fn writes_derived_ids_and_dns_names_in_place() {
        let mut x = Xml::response("A", "r", 0);
        x.derived_id("volumeId", "vol", "i-0123456789abcdef0")
            .private_dns("privateDnsName", "10.0.0.2")
            .private_dns("privateDnsName", "fd00::<1>");
        let out = x.finish("A");
        assert!(
            out.contains("<volumeId>vol-0123456789abcdef0</volumeId>"),
            "{out}"
        );
        assert!(
            out.contains("<privateDnsName>ip-10-0-0-2.ec2.internal</privateDnsName>"),
            "{out}"
        );
        assert!(
            out.contains("<privateDnsName>fd00::&lt;1&gt;</privateDnsName>"),
            "{out}"
        );
        let mut long = String::new();
        escape_into(&mut long, &format!("{}<{}", "a".repeat(40), "b".repeat(3)));
        assert_eq!(long, format!("{}&lt;bbb", "a".repeat(40)));
    }

    #[test]
    fn writes_escaped_elements() {
        let mut x = Xml::response("DescribeThings", "r1", 0);
        x.open("set")
            .leaf("a", "x<y & 'z'")
            .num("n", 16u32)
            .bool("b", true)
            .empty("e")
            .tags("tagSet", [("k", "v\u{1}")])
            .time(
                "t",
                &chrono::DateTime::from_timestamp_millis(1_795_000_000_123).unwrap(),
            )
            .close("set");
        assert_eq!(
            x.finish("DescribeThings"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeThingsResponse \
             xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>r1</requestId>\
             <set><a>x&lt;y &amp; 'z'</a><n>16</n><b>true</b><e/>\
             <tagSet><item><key>k</key><value>v</value></item></tagSet>\
             <t>2026-11-18T11:06:40.123Z</t></set>\
             </DescribeThingsResponse>"
        );
    }
}
