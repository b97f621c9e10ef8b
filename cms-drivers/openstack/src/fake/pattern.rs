//! The regular expressions of Nova's `name` and `ip` filters (Nova matches them with
//! `re.search` semantics): the common subset, `^ $ . * + ? [a-z] [^…] \x`. Other
//! characters (groups, alternation, counted repetition) are taken literally.

#[derive(Clone, Debug)]
enum Atom {
    Char(char),
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Char(x) => *x == c,
            Atom::Any => c != '\n',
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Piece {
    atom: Atom,
    min: usize,
    max: usize,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    anchored_start: bool,
    anchored_end: bool,
    pieces: Vec<Piece>,
}

impl Pattern {
    pub fn new(src: &str) -> Pattern {
        let mut chars: Vec<char> = src.chars().collect();
        let anchored_start = chars.first() == Some(&'^');
        if anchored_start {
            chars.remove(0);
        }
        let anchored_end =
            chars.last() == Some(&'$') && !(chars.len() >= 2 && chars[chars.len() - 2] == '\\');
        if anchored_end {
            chars.pop();
        }
        let mut pieces: Vec<Piece> = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            let atom = match c {
                '.' => Atom::Any,
                '\\' if i < chars.len() => {
                    i += 1;
                    escape(chars[i - 1])
                }
                '[' => {
                    let (atom, next) = class(&chars, i);
                    i = next;
                    atom
                }
                '*' | '+' | '?' => match pieces.last_mut() {
                    Some(last) if last.min == 1 && last.max == 1 => {
                        match c {
                            '*' => (last.min, last.max) = (0, usize::MAX),
                            '+' => last.max = usize::MAX,
                            _ => last.min = 0,
                        }
                        continue;
                    }
                    // The `?` of a lazy quantifier (`*?`): the same set of matches.
                    Some(_) if c == '?' => continue,
                    _ => Atom::Char(c),
                },
                other => Atom::Char(other),
            };
            pieces.push(Piece {
                atom,
                min: 1,
                max: 1,
            });
        }
        Pattern {
            anchored_start,
            anchored_end,
            pieces,
        }
    }

    /// Whether the pattern matches somewhere in `text` (`re.search`).
    pub fn is_match(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        if self.anchored_start {
            return self.at(0, &t, 0);
        }
        (0..=t.len()).any(|start| self.at(0, &t, start))
    }

    fn at(&self, p: usize, t: &[char], i: usize) -> bool {
        let Some(piece) = self.pieces.get(p) else {
            return !self.anchored_end || i == t.len();
        };
        let mut n = 0;
        while n < piece.max && i + n < t.len() && piece.atom.matches(t[i + n]) {
            n += 1;
        }
        // Greedy, then back off.
        loop {
            if n >= piece.min && self.at(p + 1, t, i + n) {
                return true;
            }
            if n == 0 || n <= piece.min {
                return false;
            }
            n -= 1;
        }
    }
}

fn escape(c: char) -> Atom {
    let ranges = match c {
        'd' => vec![('0', '9')],
        'w' => vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')],
        's' => vec![(' ', ' '), ('\t', '\r')],
        'D' | 'W' | 'S' => {
            return Atom::Class {
                negated: true,
                ranges: match escape(c.to_ascii_lowercase()) {
                    Atom::Class { ranges, .. } => ranges,
                    _ => Vec::new(),
                },
            }
        }
        other => return Atom::Char(other),
    };
    Atom::Class {
        negated: false,
        ranges,
    }
}

/// A `[...]` class starting after the `[` at `i`; answers it and the index after `]`
/// (an unterminated class is a literal `[`).
fn class(chars: &[char], mut i: usize) -> (Atom, usize) {
    let start = i;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    while i < chars.len() && (chars[i] != ']' || first) {
        first = false;
        let mut lo = chars[i];
        if lo == '\\' && i + 1 < chars.len() {
            i += 1;
            match escape(chars[i]) {
                Atom::Class {
                    ranges: r,
                    negated: false,
                } => {
                    ranges.extend(r);
                    i += 1;
                    continue;
                }
                _ => lo = chars[i],
            }
        }
        if i + 2 < chars.len() && chars[i + 1] == '-' && chars[i + 2] != ']' {
            ranges.push((lo, chars[i + 2]));
            i += 3;
        } else {
            ranges.push((lo, lo));
            i += 1;
        }
    }
    if i >= chars.len() {
        return (Atom::Char('['), start);
    }
    (Atom::Class { negated, ranges }, i + 1)
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn searches_like_python() {
        let m = |p: &str, t: &str| Pattern::new(p).is_match(t);
        assert!(m("web", "my-web-1"));
        assert!(!m("^web", "my-web-1"));
        assert!(m("^my-.*-1$", "my-web-1"));
        assert!(!m("^my-.*-2$", "my-web-1"));
        assert!(m("web-[0-9]+$", "web-42"));
        assert!(!m("web-[0-9]+$", "web-"));
        assert!(m("colou?r", "color"));
        assert!(m("a\\.b", "a.b"));
        assert!(!m("a\\.b", "axb"));
        assert!(m("[^a-z]", "abc1"));
        assert!(!m("[^a-z]", "abc"));
        assert!(m("", "anything"));
        assert!(m("10\\.0\\.0\\.", "10.0.0.5"));
        assert!(m("x*", ""));
    }
}
