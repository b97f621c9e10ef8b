//! The `$filter` and `$orderby` query parameters of the DMTF CIMI interface
//! (DSP0263 §4.1.6.1 and, for `$orderby`, CIMI 1.1).
//!
//! # `$filter`
//!
//! [`Filter::parse`] reads the already percent-decoded text of `$filter`:
//!
//! ```text
//! Filter    ::= AndExpr ('or' AndExpr)*
//! AndExpr   ::= Comp ('and' Comp)*
//! Comp      ::= Attribute Op Value | Value Op Attribute
//!             | PropExpr Op String | String Op PropExpr | '(' Filter ')'
//! PropExpr  ::= 'property' '[' String ']'
//! Op        ::= '<' | '<=' | '=' | '>=' | '>' | '!='
//! Value     ::= Int | Date | String | Bool
//! Attribute ::= an ASCII letter, then ASCII letters, digits or '_'
//! Int       ::= an optional '-', then digits (a 64-bit signed integer)
//! Date      ::= an unquoted date (2012-01-31) or date-time
//!               (2012-01-31T12:00:00Z, 2012-01-31T12:00:00.123+02:00)
//! String    ::= 'single quoted' or "double quoted"
//! Bool      ::= true | false
//! ```
//!
//! * `and` binds tighter than `or`; parentheses group.
//! * The keywords `and`, `or`, `true`, `false` and `property` are
//!   case-insensitive. `and`, `or`, `true` and `false` cannot be used as
//!   attribute names; `property` is an attribute name unless a `[` follows it.
//! * Whitespace may appear between any two tokens and is never required
//!   between a punctuation mark and a name or value.
//! * Inside a string the quote that delimits it is written twice (`'it''s'`)
//!   or escaped with a backslash (`'it\'s'`); `\'`, `\"` and `\\` stand for
//!   the second character. A backslash before any other character is kept as
//!   it is, so `'C:\dir'` means `C:\dir`.
//! * `Value Op Attribute` is the mirror of `Attribute Op Value`: `5 < cpu`
//!   means the same as `cpu > 5`.
//! * The text may be at most [`MAX_LENGTH`] characters long, and parentheses
//!   may be nested at most [`MAX_DEPTH`] deep. Chains of `and` and `or` have
//!   no limit of their own.
//! * A date-time without an offset (2012-01-31T12:00:00) is read as UTC, and a
//!   date without a time means midnight UTC.
//!
//! Errors carry the 1-based *character* (not byte) position at which the
//! problem was found, and a message naming what was expected and what was
//! found there.
//!
//! ## How a comparison is evaluated
//!
//! A resource is seen through the [`Subject`] trait. A comparison is true only
//! when the two sides can be compared; whenever they cannot, it is false, and
//! that holds for `!=` as well as for the other operators.
//!
//! * A missing attribute or property makes the comparison false.
//! * An integer literal compares numerically with an integer attribute, and
//!   with a string attribute whose text is an integer (CIMI JSON sometimes
//!   writes `"cpu": "4"`). Against any other attribute it is false.
//! * A string literal compares with a string attribute by byte order, with all
//!   six operators. With an integer attribute it is compared with the
//!   integer's decimal text, and with a boolean attribute with `true` or
//!   `false`, but only by `=` and `!=`; the other operators are false there.
//! * `true` and `false` compare only by `=` and `!=`, with boolean attributes
//!   and with string attributes whose text is exactly `true` or `false`.
//! * A date literal compares with a string attribute holding an RFC 3339
//!   date-time (or a plain date, meaning midnight UTC) as instants in time, so
//!   offsets are taken into account. An attribute that is not such a text
//!   makes the comparison false.
//! * `property['key']` compares the property's text with a string literal by
//!   byte order, with all six operators; other literals are refused when the
//!   filter is parsed.
//!
//! # `$orderby`
//!
//! [`OrderBy::parse`] reads `attr[:asc|:desc](,attr[:asc|:desc])*`, with up to
//! [`MAX_ORDER_KEYS`] attributes, whitespace allowed around every item, the
//! colon and the direction; `asc` and `desc` are case-insensitive.
//! [`OrderBy::compare`] then orders two resources: see its documentation.

use std::cmp::Ordering;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// The longest `$filter` or `$orderby` text accepted, in characters.
pub const MAX_LENGTH: usize = 4096;

/// How deeply parentheses may be nested in a `$filter`.
pub const MAX_DEPTH: usize = 64;

/// How many attributes a `$orderby` may name.
pub const MAX_ORDER_KEYS: usize = 8;

/// The longest piece of the filter text quoted back in an error message, in
/// characters; longer pieces are cut short.
const QUOTE_LIMIT: usize = 40;

/// The value of a resource's attribute, as a filter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    /// A text value.
    Str(&'a str),
    /// An integer value.
    Int(i64),
    /// A boolean value.
    Bool(bool),
}

/// What a filter is evaluated on: one resource.
pub trait Subject {
    /// The value of the top-level attribute `name`, when the resource has one and it is a scalar.
    fn attribute(&self, name: &str) -> Option<Scalar<'_>>;
    /// The value of the property (tag) `key`, when the resource has it.
    fn property(&self, key: &str) -> Option<&str>;
}

/// Why a `$filter` or `$orderby` text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// The 1-based character position in the text at which the problem was found.
    pub position: usize,
    /// What was expected there and what was found instead.
    pub message: String,
}

impl FilterError {
    fn new(position: usize, message: impl Into<String>) -> FilterError {
        FilterError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.position, self.message)
    }
}

impl std::error::Error for FilterError {}

/// A parsed `$filter`, ready to be evaluated on resources.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    root: Node,
}

/// A node of the parsed filter. `Or` and `And` hold at least two children.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Compare(Comparison),
}

/// One comparison, always written with the attribute or property on the left
/// (mirrored comparisons are turned around when parsed).
#[derive(Debug, Clone, PartialEq)]
struct Comparison {
    target: Target,
    op: Op,
    value: Literal,
}

/// What a comparison reads from the resource.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Attribute(String),
    Property(String),
}

/// A literal value written in the filter.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Int(i64),
    Str(String),
    Bool(bool),
    Date(DateTime<Utc>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Eq,
    Ne,
    Ge,
    Gt,
}

impl Op {
    /// Whether the operator holds when the left side compares to the right
    /// side as `ordering`.
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Op::Lt => ordering.is_lt(),
            Op::Le => ordering.is_le(),
            Op::Eq => ordering.is_eq(),
            Op::Ne => ordering.is_ne(),
            Op::Ge => ordering.is_ge(),
            Op::Gt => ordering.is_gt(),
        }
    }

    /// Whether the operator holds for values that can only be tested for
    /// equality: `=` and `!=` follow `equal`, the others are false.
    fn holds_for_equality(self, equal: bool) -> bool {
        match self {
            Op::Eq => equal,
            Op::Ne => !equal,
            _ => false,
        }
    }

    /// The operator with its two sides swapped: `a < b` is `b > a`.
    fn mirrored(self) -> Op {
        match self {
            Op::Lt => Op::Gt,
            Op::Le => Op::Ge,
            Op::Ge => Op::Le,
            Op::Gt => Op::Lt,
            other => other,
        }
    }
}

impl Filter {
    /// Parses the text of a `$filter` query parameter, which must already be
    /// percent-decoded.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let length = text.chars().count();
        if length > MAX_LENGTH {
            return Err(FilterError::new(
                MAX_LENGTH + 1,
                format!(
                    "the filter is too long: expected at most {MAX_LENGTH} characters, found {length}"
                ),
            ));
        }
        Filter::parse_unlimited(text)
    }

    /// Parses a filter without the limit on its length (the limit on the
    /// depth of parentheses still applies).
    fn parse_unlimited(text: &str) -> Result<Filter, FilterError> {
        if text.trim().is_empty() {
            return Err(FilterError::new(
                1,
                "the filter is empty: expected a comparison such as name='value'",
            ));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut parser = Parser {
            tokens: lex(&chars),
            at: 0,
            depth: 0,
        };
        let root = parser.parse_or()?;
        let next = parser.peek()?;
        match next.kind {
            TokenKind::End => Ok(Filter { root }),
            TokenKind::RParen => Err(FilterError::new(
                next.position,
                "unexpected \")\" with no '(' to match it",
            )),
            _ => Err(FilterError::new(
                next.position,
                format!(
                    "unexpected {} after the end of the filter: expected 'and', 'or' or nothing more",
                    describe(next)
                ),
            )),
        }
    }

    /// Whether the resource `s` passes the filter.
    pub fn matches(&self, s: &dyn Subject) -> bool {
        self.root.eval(s)
    }

    /// The attribute names the filter reads (not properties), for the caller to check they exist.
    ///
    /// Each name appears once, in the order of its first appearance in the text.
    pub fn attributes(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            match node {
                Node::Or(children) | Node::And(children) => pending.extend(children.iter().rev()),
                Node::Compare(comparison) => {
                    if let Target::Attribute(name) = &comparison.target {
                        if !names.contains(&name.as_str()) {
                            names.push(name);
                        }
                    }
                }
            }
        }
        names
    }
}

impl Node {
    fn eval(&self, s: &dyn Subject) -> bool {
        match self {
            Node::Or(children) => children.iter().any(|child| child.eval(s)),
            Node::And(children) => children.iter().all(|child| child.eval(s)),
            Node::Compare(comparison) => comparison.eval(s),
        }
    }
}

impl Comparison {
    fn eval(&self, s: &dyn Subject) -> bool {
        let op = self.op;
        let attribute = match &self.target {
            Target::Property(key) => {
                return match (s.property(key), &self.value) {
                    (Some(text), Literal::Str(literal)) => op.holds(text.cmp(literal.as_str())),
                    _ => false,
                };
            }
            Target::Attribute(name) => match s.attribute(name) {
                Some(value) => value,
                None => return false,
            },
        };
        match (&self.value, attribute) {
            (Literal::Int(literal), Scalar::Int(value)) => op.holds(value.cmp(literal)),
            (Literal::Int(literal), Scalar::Str(text)) => match text.parse::<i64>() {
                Ok(value) => op.holds(value.cmp(literal)),
                Err(_) => false,
            },
            (Literal::Int(_), Scalar::Bool(_)) => false,
            (Literal::Str(literal), Scalar::Str(text)) => op.holds(text.cmp(literal.as_str())),
            (Literal::Str(literal), Scalar::Int(value)) => {
                op.holds_for_equality(value.to_string() == *literal)
            }
            (Literal::Str(literal), Scalar::Bool(value)) => {
                op.holds_for_equality(bool_text(value) == literal)
            }
            (Literal::Bool(literal), Scalar::Bool(value)) => {
                op.holds_for_equality(value == *literal)
            }
            (Literal::Bool(literal), Scalar::Str(text)) => match text {
                "true" => op.holds_for_equality(*literal),
                "false" => op.holds_for_equality(!*literal),
                _ => false,
            },
            (Literal::Bool(_), Scalar::Int(_)) => false,
            (Literal::Date(literal), Scalar::Str(text)) => match parse_date(text) {
                Some(instant) => op.holds(instant.cmp(literal)),
                None => false,
            },
            (Literal::Date(_), Scalar::Int(_) | Scalar::Bool(_)) => false,
        }
    }
}

fn bool_text(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

/// Reads a date or date-time: a plain date (midnight UTC), an RFC 3339
/// date-time, or a date-time without an offset (taken as UTC).
fn parse_date(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|midnight| midnight.and_utc());
    }
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    let upper = text.to_ascii_uppercase();
    NaiveDateTime::parse_from_str(&upper, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|local| local.and_utc())
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Op(Op),
    /// A name or keyword.
    Word(String),
    Int(i64),
    Date(DateTime<Utc>),
    Str(String),
    /// A character that starts no token.
    Other,
    End,
    /// The text could not be split into tokens here; the parser reports the
    /// error if it gets this far.
    Bad(FilterError),
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    kind: TokenKind,
    /// The 1-based character position of the token's first character.
    position: usize,
    /// The token as written.
    text: String,
}

/// Splits the filter into tokens. The list always ends with `End`, or with
/// `Bad` when a token could not be read.
fn lex(chars: &[char]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        let Some(&c) = chars.get(i) else {
            tokens.push(Token {
                kind: TokenKind::End,
                position: chars.len() + 1,
                text: String::new(),
            });
            return tokens;
        };
        let next = chars.get(i + 1).copied();
        let kind = match c {
            '(' | ')' | '[' | ']' | '=' => {
                i += 1;
                Ok(match c {
                    '(' => TokenKind::LParen,
                    ')' => TokenKind::RParen,
                    '[' => TokenKind::LBracket,
                    ']' => TokenKind::RBracket,
                    _ => TokenKind::Op(Op::Eq),
                })
            }
            '<' | '>' | '!' => {
                let with_equals = next == Some('=');
                i += if with_equals { 2 } else { 1 };
                Ok(match (c, with_equals) {
                    ('<', false) => TokenKind::Op(Op::Lt),
                    ('<', true) => TokenKind::Op(Op::Le),
                    ('>', false) => TokenKind::Op(Op::Gt),
                    ('>', true) => TokenKind::Op(Op::Ge),
                    ('!', true) => TokenKind::Op(Op::Ne),
                    _ => TokenKind::Other,
                })
            }
            '\'' | '"' => lex_string(chars, &mut i).map(TokenKind::Str),
            c if c.is_ascii_alphabetic() => {
                while i < chars.len() && is_name_char(chars[i]) {
                    i += 1;
                }
                Ok(TokenKind::Word(chars[start..i].iter().collect()))
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                lex_number_or_date(chars, &mut i)
            }
            _ => {
                i += 1;
                Ok(TokenKind::Other)
            }
        };
        match kind {
            Ok(kind) => tokens.push(Token {
                kind,
                position: start + 1,
                text: chars[start..i].iter().collect(),
            }),
            Err(error) => {
                tokens.push(Token {
                    kind: TokenKind::Bad(error),
                    position: start + 1,
                    text: chars[start..].iter().collect(),
                });
                return tokens;
            }
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Reads a quoted string starting at `chars[*i]`, leaving `*i` after its
/// closing quote.
fn lex_string(chars: &[char], i: &mut usize) -> Result<String, FilterError> {
    let quote = chars[*i];
    let start = *i;
    *i += 1;
    let mut text = String::new();
    while let Some(&c) = chars.get(*i) {
        if c == quote {
            if chars.get(*i + 1) == Some(&quote) {
                text.push(quote);
                *i += 2;
                continue;
            }
            *i += 1;
            return Ok(text);
        }
        if c == '\\' {
            if let Some(&escaped @ ('\'' | '"' | '\\')) = chars.get(*i + 1) {
                text.push(escaped);
                *i += 2;
                continue;
            }
        }
        text.push(c);
        *i += 1;
    }
    Err(FilterError::new(
        chars.len() + 1,
        format!(
            "unterminated string starting at character {}: expected a closing {quote} but found the end of the filter",
            start + 1
        ),
    ))
}

/// Reads an integer or an unquoted date starting at `chars[*i]`, leaving `*i`
/// after it. Four digits followed by `-` and a digit start a date.
fn lex_number_or_date(chars: &[char], i: &mut usize) -> Result<TokenKind, FilterError> {
    let start = *i;
    let mut end = start;
    if chars[end] == '-' {
        end += 1;
    }
    let digits_start = end;
    while end < chars.len() && chars[end].is_ascii_digit() {
        end += 1;
    }
    let is_date = digits_start == start
        && end - digits_start == 4
        && chars.get(end) == Some(&'-')
        && chars.get(end + 1).is_some_and(|c| c.is_ascii_digit());
    if is_date {
        while end < chars.len() && is_date_char(chars[end]) {
            end += 1;
        }
    }
    *i = end;
    let text: String = chars[start..end].iter().collect();
    if is_date {
        parse_date(&text).map(TokenKind::Date).ok_or_else(|| {
            FilterError::new(
                start + 1,
                format!(
                    "expected a valid date such as 2012-01-31 or 2012-01-31T12:00:00Z, found {}",
                    quote_text(&text)
                ),
            )
        })
    } else {
        text.parse::<i64>().map(TokenKind::Int).map_err(|_| {
            FilterError::new(
                start + 1,
                format!(
                    "expected an integer between {} and {}, found {}",
                    i64::MIN,
                    i64::MAX,
                    quote_text(&text)
                ),
            )
        })
    }
}

fn is_date_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | '+' | 'T' | 't' | 'Z' | 'z')
}

/// A piece of the text in double quotes, cut short when long.
fn quote_text(text: &str) -> String {
    if text.chars().count() > QUOTE_LIMIT {
        let head: String = text.chars().take(QUOTE_LIMIT).collect();
        format!("\"{head}...\"")
    } else {
        format!("\"{text}\"")
    }
}

/// How a token is named in error messages.
fn describe(token: &Token) -> String {
    match token.kind {
        TokenKind::End => "the end of the filter".to_string(),
        _ => quote_text(&token.text),
    }
}

fn is_keyword(token: &Token, keyword: &str) -> bool {
    matches!(&token.kind, TokenKind::Word(word) if word.eq_ignore_ascii_case(keyword))
}

/// Whether `word` may name an attribute: any name but the keywords that
/// would make the text ambiguous.
fn is_attribute_name(word: &str) -> bool {
    !["and", "or", "true", "false"]
        .iter()
        .any(|keyword| word.eq_ignore_ascii_case(keyword))
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

const EXPECTED_COMPARISON: &str =
    "expected a comparison (an attribute name, a value, property['name'] or '(')";
const EXPECTED_VALUE: &str = "expected a value (a number, a date, a quoted string, true or false)";

/// A recursive-descent parser over the tokens. Chains of `and` and `or` are
/// read in loops; only parentheses recurse, at most [`MAX_DEPTH`] deep.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    /// The current token, or the error that stopped the tokenizer there.
    fn peek(&self) -> Result<&Token, FilterError> {
        let token = &self.tokens[self.at];
        match &token.kind {
            TokenKind::Bad(error) => Err(error.clone()),
            _ => Ok(token),
        }
    }

    /// The token after the current one, if any.
    fn peek_second(&self) -> Option<&Token> {
        self.tokens.get(self.at + 1)
    }

    /// Moves past the current token (never past the last one).
    fn advance(&mut self) {
        if self.at + 1 < self.tokens.len() {
            self.at += 1;
        }
    }

    /// Whether the current token is `property` followed by `[`.
    fn at_property(&self) -> bool {
        is_keyword(&self.tokens[self.at], "property")
            && matches!(
                self.peek_second().map(|token| &token.kind),
                Some(TokenKind::LBracket)
            )
    }

    fn parse_or(&mut self) -> Result<Node, FilterError> {
        let mut children = vec![self.parse_and()?];
        while is_keyword(self.peek()?, "or") {
            self.advance();
            children.push(self.parse_and()?);
        }
        Ok(if children.len() == 1 {
            children.remove(0)
        } else {
            Node::Or(children)
        })
    }

    fn parse_and(&mut self) -> Result<Node, FilterError> {
        let mut children = vec![self.parse_comparison()?];
        while is_keyword(self.peek()?, "and") {
            self.advance();
            children.push(self.parse_comparison()?);
        }
        Ok(if children.len() == 1 {
            children.remove(0)
        } else {
            Node::And(children)
        })
    }

    fn parse_comparison(&mut self) -> Result<Node, FilterError> {
        let token = self.peek()?.clone();
        match &token.kind {
            TokenKind::LParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(FilterError::new(
                        token.position,
                        format!(
                            "parentheses are nested too deeply: expected at most {MAX_DEPTH} levels, found a deeper '('"
                        ),
                    ));
                }
                self.depth += 1;
                self.advance();
                let inner = self.parse_or()?;
                let close = self.peek()?;
                if close.kind != TokenKind::RParen {
                    return Err(FilterError::new(
                        close.position,
                        format!(
                            "expected ')' to close the '(' at character {}, found {}",
                            token.position,
                            describe(close)
                        ),
                    ));
                }
                self.advance();
                self.depth -= 1;
                Ok(inner)
            }
            TokenKind::Word(_) if self.at_property() => {
                let key = self.parse_property_key()?;
                let op = self.parse_op()?;
                let value = self.peek()?;
                let TokenKind::Str(text) = &value.kind else {
                    return Err(FilterError::new(
                        value.position,
                        format!(
                            "expected a quoted string to compare the property with, found {}",
                            describe(value)
                        ),
                    ));
                };
                let value = Literal::Str(text.clone());
                self.advance();
                Ok(Node::Compare(Comparison {
                    target: Target::Property(key),
                    op,
                    value,
                }))
            }
            TokenKind::Word(word) if is_attribute_name(word) => {
                self.advance();
                let op = self.parse_op()?;
                let value = self.parse_value()?;
                Ok(Node::Compare(Comparison {
                    target: Target::Attribute(word.clone()),
                    op,
                    value,
                }))
            }
            TokenKind::Word(_) if is_keyword(&token, "true") || is_keyword(&token, "false") => {
                self.parse_mirrored()
            }
            TokenKind::Int(_) | TokenKind::Date(_) | TokenKind::Str(_) => self.parse_mirrored(),
            _ => Err(FilterError::new(
                token.position,
                format!("{EXPECTED_COMPARISON}, found {}", describe(&token)),
            )),
        }
    }

    /// Reads `Value Op Attribute` or `String Op PropExpr`, turning it around
    /// so the attribute or property is on the left.
    fn parse_mirrored(&mut self) -> Result<Node, FilterError> {
        let value_token = self.peek()?.clone();
        let value = self.parse_value()?;
        let op = self.parse_op()?.mirrored();
        let token = self.peek()?.clone();
        match &token.kind {
            TokenKind::Word(_) if self.at_property() => {
                if !matches!(value, Literal::Str(_)) {
                    return Err(FilterError::new(
                        value_token.position,
                        format!(
                            "expected a quoted string to compare the property with, found {}",
                            describe(&value_token)
                        ),
                    ));
                }
                let key = self.parse_property_key()?;
                Ok(Node::Compare(Comparison {
                    target: Target::Property(key),
                    op,
                    value,
                }))
            }
            TokenKind::Word(word) if is_attribute_name(word) => {
                self.advance();
                Ok(Node::Compare(Comparison {
                    target: Target::Attribute(word.clone()),
                    op,
                    value,
                }))
            }
            _ => Err(FilterError::new(
                token.position,
                format!(
                    "expected an attribute name or property['name'] after the operator, found {}",
                    describe(&token)
                ),
            )),
        }
    }

    /// Reads `property [ String ]`; the current token is `property`.
    fn parse_property_key(&mut self) -> Result<String, FilterError> {
        self.advance();
        let open = self.peek()?.position;
        self.advance();
        let key = self.peek()?;
        let TokenKind::Str(key) = &key.kind else {
            return Err(FilterError::new(
                key.position,
                format!(
                    "expected a quoted property name after \"property[\", found {}",
                    describe(key)
                ),
            ));
        };
        let key = key.clone();
        self.advance();
        let close = self.peek()?;
        if close.kind != TokenKind::RBracket {
            return Err(FilterError::new(
                close.position,
                format!(
                    "expected ']' to close the '[' at character {open}, found {}",
                    describe(close)
                ),
            ));
        }
        self.advance();
        Ok(key)
    }

    fn parse_op(&mut self) -> Result<Op, FilterError> {
        let token = self.peek()?;
        match token.kind {
            TokenKind::Op(op) => {
                self.advance();
                Ok(op)
            }
            _ => Err(FilterError::new(
                token.position,
                format!(
                    "expected an operator, found {}: the operator must be one of = != < <= > >=",
                    describe(token)
                ),
            )),
        }
    }

    fn parse_value(&mut self) -> Result<Literal, FilterError> {
        let token = self.peek()?;
        let value = match &token.kind {
            TokenKind::Int(value) => Literal::Int(*value),
            TokenKind::Date(value) => Literal::Date(*value),
            TokenKind::Str(value) => Literal::Str(value.clone()),
            _ if is_keyword(token, "true") => Literal::Bool(true),
            _ if is_keyword(token, "false") => Literal::Bool(false),
            _ => {
                return Err(FilterError::new(
                    token.position,
                    format!("{EXPECTED_VALUE}, found {}", describe(token)),
                ))
            }
        };
        self.advance();
        Ok(value)
    }
}

// ---------------------------------------------------------------------------
// $orderby
// ---------------------------------------------------------------------------

/// A parsed `$orderby`: the attributes to sort by, most significant first,
/// each with `true` when the order is descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy(pub Vec<(String, bool)>);

impl OrderBy {
    /// Parses the text of a `$orderby` query parameter, which must already be
    /// percent-decoded: `attr[:asc|:desc](,attr[:asc|:desc])*`.
    pub fn parse(text: &str) -> Result<OrderBy, FilterError> {
        let chars: Vec<char> = text.chars().collect();
        if chars.len() > MAX_LENGTH {
            return Err(FilterError::new(
                MAX_LENGTH + 1,
                format!(
                    "the ordering is too long: expected at most {MAX_LENGTH} characters, found {}",
                    chars.len()
                ),
            ));
        }
        if text.trim().is_empty() {
            return Err(FilterError::new(
                1,
                "the ordering is empty: expected an attribute name such as name or created:desc",
            ));
        }
        let skip_whitespace = |i: &mut usize| {
            while chars.get(*i).is_some_and(|c| c.is_whitespace()) {
                *i += 1;
            }
        };
        let mut keys = Vec::new();
        let mut i = 0;
        loop {
            skip_whitespace(&mut i);
            let start = i;
            if !chars.get(i).is_some_and(|c| c.is_ascii_alphabetic()) {
                return Err(FilterError::new(
                    i + 1,
                    format!(
                        "expected an attribute name, found {}",
                        describe_order_text(&chars, i)
                    ),
                ));
            }
            while chars.get(i).is_some_and(|&c| is_name_char(c)) {
                i += 1;
            }
            if keys.len() == MAX_ORDER_KEYS {
                return Err(FilterError::new(
                    start + 1,
                    format!(
                        "expected at most {MAX_ORDER_KEYS} attributes to order by, found a {}th",
                        MAX_ORDER_KEYS + 1
                    ),
                ));
            }
            let name: String = chars[start..i].iter().collect();
            skip_whitespace(&mut i);
            let mut descending = false;
            if chars.get(i) == Some(&':') {
                i += 1;
                skip_whitespace(&mut i);
                let direction_start = i;
                while chars.get(i).is_some_and(|c| c.is_ascii_alphabetic()) {
                    i += 1;
                }
                let direction: String = chars[direction_start..i].iter().collect();
                if direction.eq_ignore_ascii_case("desc") {
                    descending = true;
                } else if !direction.eq_ignore_ascii_case("asc") {
                    return Err(FilterError::new(
                        direction_start + 1,
                        format!(
                            "expected asc or desc after ':', found {}",
                            describe_order_text(&chars, direction_start)
                        ),
                    ));
                }
                skip_whitespace(&mut i);
            }
            keys.push((name, descending));
            match chars.get(i) {
                None => return Ok(OrderBy(keys)),
                Some(',') => i += 1,
                Some(_) => {
                    return Err(FilterError::new(
                        i + 1,
                        format!(
                            "expected ',' or the end of the ordering, found {}",
                            describe_order_text(&chars, i)
                        ),
                    ))
                }
            }
        }
    }

    /// Compares two resources by the keys in turn; a resource missing an attribute sorts after those that have it (in both directions); Int before Str when types differ; numbers numerically, strings by byte order, false < true.
    ///
    /// When the types differ the order is Int, then Str, then Bool; a
    /// descending key reverses this along with the values, but never moves
    /// a missing attribute to the front.
    pub fn compare(&self, a: &dyn Subject, b: &dyn Subject) -> Ordering {
        for (name, descending) in &self.0 {
            let ordering = match (a.attribute(name), b.attribute(name)) {
                (None, None) => Ordering::Equal,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => {
                    let ordering = compare_scalars(x, y);
                    if *descending {
                        ordering.reverse()
                    } else {
                        ordering
                    }
                }
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }
}

/// Orders two attribute values: by type first (Int, Str, Bool), then by value.
fn compare_scalars(a: Scalar<'_>, b: Scalar<'_>) -> Ordering {
    fn rank(value: &Scalar<'_>) -> u8 {
        match value {
            Scalar::Int(_) => 0,
            Scalar::Str(_) => 1,
            Scalar::Bool(_) => 2,
        }
    }
    match (a, b) {
        (Scalar::Int(x), Scalar::Int(y)) => x.cmp(&y),
        (Scalar::Str(x), Scalar::Str(y)) => x.cmp(y),
        (Scalar::Bool(x), Scalar::Bool(y)) => x.cmp(&y),
        (x, y) => rank(&x).cmp(&rank(&y)),
    }
}

/// How the `$orderby` text at `i` is named in error messages: the word that
/// starts there, or the single punctuation mark.
fn describe_order_text(chars: &[char], i: usize) -> String {
    let Some(&first) = chars.get(i) else {
        return "the end of the ordering".to_string();
    };
    if first == ',' || first == ':' {
        return format!("\"{first}\"");
    }
    let word: String = chars[i..]
        .iter()
        .take_while(|c| !c.is_whitespace() && **c != ',' && **c != ':')
        .collect();
    quote_text(&word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    enum Value {
        Str(String),
        Int(i64),
        Bool(bool),
    }

    /// A resource for the tests: attributes and properties in hash maps.
    #[derive(Default)]
    struct Resource {
        attributes: HashMap<String, Value>,
        properties: HashMap<String, String>,
    }

    impl Resource {
        fn new() -> Resource {
            Resource::default()
        }
        fn str(mut self, name: &str, value: &str) -> Resource {
            self.attributes
                .insert(name.to_string(), Value::Str(value.to_string()));
            self
        }
        fn int(mut self, name: &str, value: i64) -> Resource {
            self.attributes.insert(name.to_string(), Value::Int(value));
            self
        }
        fn bool(mut self, name: &str, value: bool) -> Resource {
            self.attributes.insert(name.to_string(), Value::Bool(value));
            self
        }
        fn prop(mut self, key: &str, value: &str) -> Resource {
            self.properties.insert(key.to_string(), value.to_string());
            self
        }
    }

    impl Subject for Resource {
        fn attribute(&self, name: &str) -> Option<Scalar<'_>> {
            self.attributes.get(name).map(|value| match value {
                Value::Str(text) => Scalar::Str(text),
                Value::Int(number) => Scalar::Int(*number),
                Value::Bool(flag) => Scalar::Bool(*flag),
            })
        }
        fn property(&self, key: &str) -> Option<&str> {
            self.properties.get(key).map(String::as_str)
        }
    }

    fn parse(text: &str) -> Filter {
        Filter::parse(text).unwrap_or_else(|error| panic!("{text:?} was refused: {error}"))
    }

    /// Checks each filter against the resource, with the expected outcome.
    fn check(resource: &Resource, cases: &[(&str, bool)]) {
        for (text, expected) in cases {
            assert_eq!(parse(text).matches(resource), *expected, "filter {text:?}");
        }
    }

    fn error(text: &str) -> FilterError {
        match Filter::parse(text) {
            Ok(filter) => panic!("{text:?} was accepted as {filter:?}"),
            Err(error) => error,
        }
    }

    fn assert_error(text: &str, position: usize, message: &str) {
        let error = error(text);
        assert_eq!(
            error,
            FilterError {
                position,
                message: message.to_string()
            },
            "filter {text:?}"
        );
    }

    #[test]
    fn int_literal_against_int_attribute() {
        let r = Resource::new().int("cpu", 4).int("temp", -3);
        check(
            &r,
            &[
                ("cpu=4", true),
                ("cpu=5", false),
                ("cpu!=4", false),
                ("cpu!=5", true),
                ("cpu<5", true),
                ("cpu<4", false),
                ("cpu<=4", true),
                ("cpu<=3", false),
                ("cpu>3", true),
                ("cpu>4", false),
                ("cpu>=4", true),
                ("cpu>=5", false),
                ("temp > -5", true),
                ("temp = -3", true),
                ("temp < -3", false),
            ],
        );
    }

    #[test]
    fn int_literal_against_other_attributes() {
        let r = Resource::new()
            .str("cpu", "4")
            .str("name", "web")
            .bool("enabled", true);
        check(
            &r,
            &[
                ("cpu = 4", true),
                ("cpu != 4", false),
                // Numerically 4 < 10, although "4" > "10" by byte order.
                ("cpu < 10", true),
                ("cpu > 10", false),
                ("cpu >= 4", true),
                ("cpu <= 3", false),
                ("name = 4", false),
                ("name != 4", false),
                ("name < 4", false),
                ("enabled = 1", false),
                ("enabled != 1", false),
            ],
        );
    }

    #[test]
    fn string_literal_against_string_attribute() {
        let r = Resource::new().str("name", "beta");
        check(
            &r,
            &[
                ("name = 'beta'", true),
                ("name = 'alpha'", false),
                ("name != 'beta'", false),
                ("name != 'alpha'", true),
                ("name < 'gamma'", true),
                ("name < 'beta'", false),
                ("name <= 'beta'", true),
                ("name <= 'alpha'", false),
                ("name > 'alpha'", true),
                ("name > 'beta'", false),
                ("name >= 'beta'", true),
                ("name >= 'gamma'", false),
                // Byte order: upper case sorts before lower case.
                ("name > 'Beta'", true),
                ("name = \"beta\"", true),
            ],
        );
    }

    #[test]
    fn string_literal_against_int_and_bool_attributes() {
        let r = Resource::new().int("cpu", 4).bool("enabled", true);
        check(
            &r,
            &[
                ("cpu = '4'", true),
                ("cpu = '04'", false),
                ("cpu != '4'", false),
                ("cpu != '5'", true),
                ("cpu < '5'", false),
                ("cpu <= '4'", false),
                ("cpu > '3'", false),
                ("cpu >= '4'", false),
                ("enabled = 'true'", true),
                ("enabled = 'false'", false),
                ("enabled != 'false'", true),
                ("enabled != 'true'", false),
                ("enabled = 'yes'", false),
                ("enabled > 'a'", false),
                ("enabled <= 'true'", false),
            ],
        );
    }

    #[test]
    fn bool_literals() {
        let r = Resource::new()
            .bool("enabled", true)
            .str("flag", "false")
            .str("vague", "maybe")
            .int("cpu", 1);
        check(
            &r,
            &[
                ("enabled = true", true),
                ("enabled = false", false),
                ("enabled != false", true),
                ("enabled != true", false),
                ("enabled < true", false),
                ("enabled <= true", false),
                ("enabled > false", false),
                ("enabled >= true", false),
                ("flag = false", true),
                ("flag = true", false),
                ("flag != true", true),
                ("flag != false", false),
                ("flag < true", false),
                ("vague = true", false),
                ("vague != true", false),
                ("cpu = true", false),
                ("cpu != true", false),
            ],
        );
    }

    #[test]
    fn date_literals() {
        let r = Resource::new()
            .str("created", "2012-01-31T12:00:00Z")
            .str("updated", "2012-01-31T14:00:00+02:00")
            .str("day", "2012-01-31")
            .str("bogus", "yesterday")
            .int("cpu", 2012);
        check(
            &r,
            &[
                ("created > 2012-01-31", true),
                ("created < 2012-02-01", true),
                ("created >= 2012-01-31T12:00:00Z", true),
                ("created <= 2012-01-31T12:00:00Z", true),
                ("created <= 2012-01-31T11:59:59Z", false),
                ("created = 2012-01-31T12:00:00Z", true),
                ("created = 2012-01-31T12:00:00.000Z", true),
                ("created = 2012-01-31T14:00:00+02:00", true),
                ("created != 2012-01-31T14:00:00+02:00", false),
                ("created != 2012-01-31T12:00:01Z", true),
                ("created = 2012-01-31t12:00:00z", true),
                ("created = 2012-01-31T12:00:00", true),
                // 12:00:00.123+02:00 is 10:00:00.123 UTC.
                ("created > 2012-01-31T12:00:00.123+02:00", true),
                ("created < 2012-01-31T12:00:00.123-02:00", true),
                ("updated = 2012-01-31T12:00:00Z", true),
                ("updated < 2012-01-31T13:00:00Z", true),
                ("day = 2012-01-31T00:00:00Z", true),
                ("day = 2012-01-31", true),
                ("day < 2012-01-31T00:00:00.001Z", true),
                ("day > 2012-01-30T23:00:00-02:00", false),
                ("bogus > 2000-01-01", false),
                ("bogus != 2000-01-01", false),
                ("cpu > 2000-01-01", false),
                ("missing != 2000-01-01", false),
            ],
        );
    }

    #[test]
    fn mirrored_comparisons() {
        let r = Resource::new()
            .int("cpu", 4)
            .str("name", "beta")
            .str("created", "2012-01-31T12:00:00Z")
            .bool("enabled", true)
            .prop("owner", "alice");
        check(
            &r,
            &[
                ("5 > cpu", true),
                ("4 < cpu", false),
                ("4 <= cpu", true),
                ("3 >= cpu", false),
                ("4 = cpu", true),
                ("4 != cpu", false),
                ("'alpha' < name", true),
                ("'alpha' > name", false),
                ("2012-01-01 < created", true),
                ("2012-01-01 >= created", false),
                ("true = enabled", true),
                ("false != enabled", true),
                ("'alice' = property['owner']", true),
                ("'bob' > property['owner']", true),
                ("'bob' < property['owner']", false),
            ],
        );
        assert_eq!(parse("cpu > 5"), parse("5 < cpu"));
        assert_eq!(parse("cpu <= 5"), parse("5 >= cpu"));
        assert_ne!(parse("cpu < 5"), parse("5 < cpu"));
    }

    #[test]
    fn missing_attributes_and_properties_are_false() {
        let r = Resource::new().int("cpu", 4).prop("owner", "alice");
        check(
            &r,
            &[
                ("nope = 1", false),
                ("nope != 1", false),
                ("nope != 'x'", false),
                ("nope = false", false),
                ("nope != false", false),
                ("property['nope'] = 'x'", false),
                ("property['nope'] != 'x'", false),
                ("nope != 1 or cpu = 4", true),
            ],
        );
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let r = Resource::new().int("a", 1).int("b", 2).int("c", 3);
        check(
            &r,
            &[
                ("a=1 or b=0 and c=0", true),
                ("(a=1 or b=0) and c=0", false),
                ("a=0 and b=2 or c=3", true),
                ("a=0 and (b=2 or c=3)", false),
                ("b=0 and c=0 or a=1", true),
                ("b=0 and (c=0 or a=1)", false),
                ("a=1 and b=2 and c=3", true),
                ("a=1 and b=2 and c=4", false),
                ("a=0 or b=0 or c=3", true),
                ("a=0 or b=0 or c=0", false),
                ("((a=1))", true),
                ("(a=1 and (b=0 or (c=3 and a=1)))", true),
                ("(a=1)and(b=2)", true),
                ("  a = 1   and(  b=2 )  ", true),
                ("a=1\tand\nb=2", true),
            ],
        );
    }

    #[test]
    fn properties_with_both_quote_styles() {
        let r = Resource::new()
            .prop("owner", "alice")
            .prop("it's", "x")
            .str("property", "plain");
        check(
            &r,
            &[
                ("property['owner'] = 'alice'", true),
                ("property[\"owner\"]=\"alice\"", true),
                ("property [ 'owner' ] = 'alice'", true),
                ("property['owner'] != 'bob'", true),
                ("property['owner'] != 'alice'", false),
                ("property['owner'] < 'bob'", true),
                ("property['owner'] <= 'alice'", true),
                ("property['owner'] > 'bob'", false),
                ("property['owner'] >= 'alicf'", false),
                ("property['it''s'] = 'x'", true),
                ("property[\"it's\"] = 'x'", true),
                // Without '[' the word is an ordinary attribute name.
                ("property = 'plain'", true),
            ],
        );
        assert_eq!(
            parse("property['owner'] = 'x'").attributes(),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let r = Resource::new()
            .int("a", 1)
            .int("b", 2)
            .bool("enabled", true)
            .prop("owner", "alice");
        check(
            &r,
            &[
                ("a=1 AND b=2", true),
                ("a=0 Or b=2", true),
                ("a=0 oR b=0 aNd a=1", false),
                ("enabled = TRUE", true),
                ("enabled != False", true),
                ("PROPERTY['owner'] = 'alice'", true),
                ("Property['owner'] = 'alice' AND a = 1", true),
            ],
        );
    }

    #[test]
    fn escaped_quotes() {
        let r = Resource::new()
            .str("name", "it's")
            .str("say", "say \"hi\"")
            .str("path", "a\\b");
        check(
            &r,
            &[
                ("name = 'it''s'", true),
                ("name = 'it\\'s'", true),
                ("name = \"it's\"", true),
                ("name = \"it\\'s\"", true),
                ("name = 'it'", false),
                ("say = \"say \"\"hi\"\"\"", true),
                ("say = \"say \\\"hi\\\"\"", true),
                ("say = 'say \"hi\"'", true),
                ("path = 'a\\\\b'", true),
                // A backslash before an ordinary character is kept.
                ("path = 'a\\b'", true),
                ("name = ''", false),
            ],
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let r = Resource::new().str("name", "café");
        check(&r, &[("name = 'café'", true)]);
        assert_error(
            "name = 'é' x",
            12,
            "unexpected \"x\" after the end of the filter: expected 'and', 'or' or nothing more",
        );
    }

    #[test]
    fn attributes_lists_each_attribute_once() {
        let filter = parse(
            "name='a' and (cpu>1 or name='b') and property['x']='y' and 5 < memory or 'z' = state",
        );
        assert_eq!(filter.attributes(), vec!["name", "cpu", "memory", "state"]);
        assert_eq!(parse("cpu=1").attributes(), vec!["cpu"]);
    }

    #[test]
    fn error_positions_and_messages() {
        assert_error(
            "name=",
            6,
            "expected a value (a number, a date, a quoted string, true or false), found the end of the filter",
        );
        assert_error(
            "name = 'a' and",
            15,
            "expected a comparison (an attribute name, a value, property['name'] or '('), found the end of the filter",
        );
        assert_error(
            "(name='a'",
            10,
            "expected ')' to close the '(' at character 1, found the end of the filter",
        );
        assert_error(
            "a=1 and (b=2 or (c=3) d=4)",
            23,
            "expected ')' to close the '(' at character 9, found \"d\"",
        );
        assert_error(
            "name ~ 'a'",
            6,
            "expected an operator, found \"~\": the operator must be one of = != < <= > >=",
        );
        assert_error(
            "'a'",
            4,
            "expected an operator, found the end of the filter: the operator must be one of = != < <= > >=",
        );
        assert_error(
            "property[k]='v'",
            10,
            "expected a quoted property name after \"property[\", found \"k\"",
        );
        assert_error(
            "name='a' or or x=1",
            13,
            "expected a comparison (an attribute name, a value, property['name'] or '('), found \"or\"",
        );
        assert_error(
            "name = 'abc",
            12,
            "unterminated string starting at character 8: expected a closing ' but found the end of the filter",
        );
        assert_error(
            "name = \"it\\\"",
            13,
            "unterminated string starting at character 8: expected a closing \" but found the end of the filter",
        );
        assert_error(
            "name='a' x",
            10,
            "unexpected \"x\" after the end of the filter: expected 'and', 'or' or nothing more",
        );
        assert_error("name='a')", 9, "unexpected \")\" with no '(' to match it");
        assert_error(
            "name = and",
            8,
            "expected a value (a number, a date, a quoted string, true or false), found \"and\"",
        );
        assert_error(
            "name = other",
            8,
            "expected a value (a number, a date, a quoted string, true or false), found \"other\"",
        );
        assert_error(
            "'a' = 'b'",
            7,
            "expected an attribute name or property['name'] after the operator, found \"'b'\"",
        );
        assert_error(
            "4 = true",
            5,
            "expected an attribute name or property['name'] after the operator, found \"true\"",
        );
        assert_error(
            "property['k'] = 4",
            17,
            "expected a quoted string to compare the property with, found \"4\"",
        );
        assert_error(
            "4 = property['k']",
            1,
            "expected a quoted string to compare the property with, found \"4\"",
        );
        assert_error(
            "property['k' = 'v'",
            14,
            "expected ']' to close the '[' at character 9, found \"=\"",
        );
        assert_error(
            "cpu == 1",
            6,
            "expected a value (a number, a date, a quoted string, true or false), found \"=\"",
        );
        assert_error(
            "cpu ! 1",
            5,
            "expected an operator, found \"!\": the operator must be one of = != < <= > >=",
        );
        assert_error(
            "cpu = 99999999999999999999",
            7,
            "expected an integer between -9223372036854775808 and 9223372036854775807, found \"99999999999999999999\"",
        );
        assert_error(
            "created > 2012-13-45",
            11,
            "expected a valid date such as 2012-01-31 or 2012-01-31T12:00:00Z, found \"2012-13-45\"",
        );
        assert_error(
            "and = 1",
            1,
            "expected a comparison (an attribute name, a value, property['name'] or '('), found \"and\"",
        );
        assert_error(
            "()",
            2,
            "expected a comparison (an attribute name, a value, property['name'] or '('), found \")\"",
        );
        assert_error(
            "",
            1,
            "the filter is empty: expected a comparison such as name='value'",
        );
        assert_error(
            "   ",
            1,
            "the filter is empty: expected a comparison such as name='value'",
        );
        // The leftmost problem is reported, even when a later string is unterminated.
        assert_error(
            "name ~ 'abc",
            6,
            "expected an operator, found \"~\": the operator must be one of = != < <= > >=",
        );
    }

    #[test]
    fn error_display() {
        assert_eq!(
            error("name=").to_string(),
            "at character 6: expected a value (a number, a date, a quoted string, true or false), found the end of the filter"
        );
    }

    #[test]
    fn long_tokens_are_cut_short_in_messages() {
        let long = "x".repeat(100);
        let text = format!("name = 'a' {long}");
        let message = error(&text).message;
        assert_eq!(
            message,
            format!(
                "unexpected \"{}...\" after the end of the filter: expected 'and', 'or' or nothing more",
                "x".repeat(QUOTE_LIMIT)
            )
        );
    }

    #[test]
    fn length_limit() {
        let at_limit = format!("name = '{}'", "a".repeat(MAX_LENGTH - 9));
        assert_eq!(at_limit.chars().count(), MAX_LENGTH);
        assert!(Filter::parse(&at_limit).is_ok());
        let over = format!("name = '{}'", "a".repeat(MAX_LENGTH - 8));
        assert_error(
            &over,
            MAX_LENGTH + 1,
            "the filter is too long: expected at most 4096 characters, found 4097",
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let message =
            "parentheses are nested too deeply: expected at most 64 levels, found a deeper '('";
        // 10,000 characters exceed the length limit before any nesting is seen...
        let hostile = "(".repeat(10_000);
        assert_eq!(error(&hostile).position, MAX_LENGTH + 1);
        // ...and without that limit the depth limit stops the parser.
        assert_eq!(
            Filter::parse_unlimited(&hostile),
            Err(FilterError::new(65, message))
        );
        let closed = format!("{}a=1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(
            Filter::parse_unlimited(&closed),
            Err(FilterError::new(65, message))
        );
        assert_error(&"(".repeat(4000), 65, message);
        // Exactly the limit is accepted.
        let r = Resource::new().int("a", 1);
        let deepest = format!("{}a=1{}", "(".repeat(64), ")".repeat(64));
        assert!(parse(&deepest).matches(&r));
        let too_deep = format!("{}a=1{}", "(".repeat(65), ")".repeat(65));
        assert_error(&too_deep, 65, message);
    }

    #[test]
    fn long_and_or_chains_do_not_recurse() {
        let r = Resource::new().int("a", 1);
        let chain = vec!["a=1"; 5_001].join(" and ");
        assert!(chain.chars().count() > MAX_LENGTH);
        assert_eq!(error(&chain).position, MAX_LENGTH + 1);
        let filter = Filter::parse_unlimited(&chain).expect("a long chain of 'and'");
        assert!(filter.matches(&r));
        assert_eq!(filter.attributes(), vec!["a"]);

        let mut failing = vec!["a=1"; 5_001];
        failing[2_500] = "a=2";
        let failing = Filter::parse_unlimited(&failing.join(" and ")).unwrap();
        assert!(!failing.matches(&r));

        let mut any = vec!["a=2"; 5_001];
        any[4_000] = "a=1";
        let any = Filter::parse_unlimited(&any.join(" or ")).unwrap();
        assert!(any.matches(&r));
        let none = Filter::parse_unlimited(&vec!["a=2"; 5_001].join(" OR ")).unwrap();
        assert!(!none.matches(&r));
        // Cloning, comparing and dropping a long chain is fine as well.
        assert_eq!(filter.clone(), filter);
    }

    #[test]
    fn orderby_parsing() {
        assert_eq!(
            OrderBy::parse("name").unwrap(),
            OrderBy(vec![("name".to_string(), false)])
        );
        assert_eq!(
            OrderBy::parse(" name:desc , cpu:ASC,created ,  memory : Desc ").unwrap(),
            OrderBy(vec![
                ("name".to_string(), true),
                ("cpu".to_string(), false),
                ("created".to_string(), false),
                ("memory".to_string(), true),
            ])
        );
        let eight = "a,b,c,d,e,f,g,h";
        assert_eq!(OrderBy::parse(eight).unwrap().0.len(), 8);

        let cases: [(&str, usize, &str); 9] = [
            (
                "",
                1,
                "the ordering is empty: expected an attribute name such as name or created:desc",
            ),
            (
                "name,",
                6,
                "expected an attribute name, found the end of the ordering",
            ),
            ("name,,cpu", 6, "expected an attribute name, found \",\""),
            ("name:up", 6, "expected asc or desc after ':', found \"up\""),
            (
                "name:",
                6,
                "expected asc or desc after ':', found the end of the ordering",
            ),
            ("1name", 1, "expected an attribute name, found \"1name\""),
            (
                "name desc",
                6,
                "expected ',' or the end of the ordering, found \"desc\"",
            ),
            (
                "a,b,c,d,e,f,g,h,i",
                17,
                "expected at most 8 attributes to order by, found a 9th",
            ),
            (
                "na-me",
                3,
                "expected ',' or the end of the ordering, found \"-me\"",
            ),
        ];
        for (text, position, message) in cases {
            assert_eq!(
                OrderBy::parse(text),
                Err(FilterError::new(position, message)),
                "ordering {text:?}"
            );
        }
        assert_eq!(
            OrderBy::parse(&"a".repeat(MAX_LENGTH + 1))
                .unwrap_err()
                .position,
            MAX_LENGTH + 1
        );
    }

    fn sorted(order: &str, resources: &[Resource]) -> Vec<String> {
        let order = OrderBy::parse(order).unwrap();
        let mut refs: Vec<&Resource> = resources.iter().collect();
        refs.sort_by(|a, b| order.compare(*a, *b));
        refs.iter()
            .map(|r| match r.attribute("id") {
                Some(Scalar::Str(id)) => id.to_string(),
                other => panic!("no id: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn orderby_comparing() {
        let resources = [
            Resource::new()
                .str("id", "a")
                .int("cpu", 4)
                .str("name", "web"),
            Resource::new()
                .str("id", "b")
                .int("cpu", 16)
                .str("name", "db"),
            Resource::new().str("id", "c").str("name", "cache"),
            Resource::new()
                .str("id", "d")
                .int("cpu", 4)
                .str("name", "api"),
            Resource::new()
                .str("id", "e")
                .str("cpu", "8")
                .str("name", "Zed"),
        ];
        // Numbers numerically (4 < 16), Int before Str, missing last.
        assert_eq!(sorted("cpu", &resources), ["a", "d", "b", "e", "c"]);
        assert_eq!(sorted("cpu:desc", &resources), ["e", "b", "a", "d", "c"]);
        assert_eq!(sorted("cpu, name", &resources), ["d", "a", "b", "e", "c"]);
        assert_eq!(
            sorted("cpu:desc,name:desc", &resources),
            ["e", "b", "a", "d", "c"]
        );
        // Strings by byte order: "Zed" before lower-case names.
        assert_eq!(sorted("name", &resources), ["e", "d", "c", "b", "a"]);
        assert_eq!(sorted("name:desc", &resources), ["a", "b", "c", "d", "e"]);
        assert_eq!(
            sorted("missing, id:desc", &resources),
            ["e", "d", "c", "b", "a"]
        );

        let flags = [
            Resource::new().str("id", "t").bool("on", true),
            Resource::new().str("id", "n"),
            Resource::new().str("id", "f").bool("on", false),
        ];
        assert_eq!(sorted("on", &flags), ["f", "t", "n"]);
        assert_eq!(sorted("on:desc", &flags), ["t", "f", "n"]);

        let order = OrderBy::parse("cpu").unwrap();
        assert_eq!(order.compare(&resources[0], &resources[3]), Ordering::Equal);
        assert_eq!(order.compare(&resources[0], &resources[1]), Ordering::Less);
        assert_eq!(
            order.compare(&resources[2], &resources[0]),
            Ordering::Greater
        );
        assert_eq!(order.compare(&resources[2], &resources[2]), Ordering::Equal);
        let descending = OrderBy::parse("cpu:desc").unwrap();
        assert_eq!(
            descending.compare(&resources[2], &resources[0]),
            Ordering::Greater
        );
        assert_eq!(
            descending.compare(&resources[0], &resources[1]),
            Ordering::Greater
        );
    }
}
