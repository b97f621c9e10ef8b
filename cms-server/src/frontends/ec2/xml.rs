//! A small XML writer for EC2 answers: elements are written straight into one string,
//! text escaped, no tree built.

use std::fmt::Write as _;

/// The namespace of every EC2 answer.
pub const NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// Appends text content `s` with `&`, `<` and `>` escaped, and characters XML 1.0
/// cannot carry dropped (text only: never used in attribute values).
pub fn escape_into(out: &mut String, s: &str) {
    if !s
        .bytes()
        .any(|b| matches!(b, b'&' | b'<' | b'>') || b < b' ')
    {
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

/// A timestamp as EC2 writes them: `2026-11-22T10:00:00.000Z` (what filters on
/// times match against, too).
pub fn time_text(t: &chrono::DateTime<chrono::Utc>) -> String {
    String::from_utf8_lossy(&time_bytes(t)).into_owned()
}

fn time_bytes(t: &chrono::DateTime<chrono::Utc>) -> [u8; 24] {
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

    /// `<tag>text</tag>`, text escaped.
    pub fn leaf(&mut self, tag: &str, text: &str) -> &mut Self {
        self.open(tag);
        escape_into(&mut self.buf, text);
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
            self.open("item")
                .leaf("key", k)
                .leaf("value", v)
                .close("item");
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
