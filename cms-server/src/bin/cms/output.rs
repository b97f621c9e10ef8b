//! Output: tables for people, JSON and YAML for scripts, bare ids for pipes.

use std::io::Write;

use serde::Deserialize;
use serde_json::Value;

/// `-o`: how results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Aligned columns (the default on a terminal).
    Table,
    /// JSON, as the native API answers (the default when piped).
    Json,
    /// YAML.
    Yaml,
    /// One id (or name) per line.
    Ids,
}

/// A result ready to print: its data, its table and its ids.
pub struct Shown {
    /// What `json` and `yaml` print.
    pub value: Value,
    /// Column headers and rows of `table`; a single object prints as FIELD/VALUE rows.
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
    /// What `ids` prints.
    pub ids: Vec<String>,
}

impl Shown {
    /// Prints in `format` to stdout.
    pub fn print(&self, format: Format) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        match format {
            Format::Json => {
                serde_json::to_writer_pretty(&mut out, &self.value)?;
                writeln!(out)
            }
            Format::Yaml => {
                let mut s = String::new();
                yaml(&mut s, &self.value, 0, false);
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                out.write_all(s.as_bytes())
            }
            Format::Ids => {
                for id in &self.ids {
                    writeln!(out, "{id}")?;
                }
                Ok(())
            }
            Format::Table => out.write_all(table(&self.headers, &self.rows).as_bytes()),
        }
    }
}

/// Aligned columns, two spaces apart, no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h)).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(width(c));
            }
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        let last = cells.len().saturating_sub(1);
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i < last {
                s.extend(std::iter::repeat_n(' ', widths[i] - width(c) + 2));
            }
        }
        s.push('\n');
    };
    line(&mut s, &mut headers.iter().copied());
    for r in rows {
        // Cells are single lines: a newline in a value would break the columns.
        let cells: Vec<String> = r.iter().map(|c| c.replace(['\n', '\r'], " ")).collect();
        line(&mut s, &mut cells.iter().map(String::as_str));
    }
    s
}

/// YAML of a JSON value, in block style. Strings are plain where YAML reads them back
/// as the same string, else JSON-quoted (a JSON string is a YAML double-quoted
/// scalar).
fn yaml(out: &mut String, v: &Value, indent: usize, in_seq: bool) {
    let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n(' ', n));
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (i, (k, val)) in m.iter().enumerate() {
                if i > 0 || !in_seq {
                    pad(out, indent);
                }
                out.push_str(&scalar_text(k));
                out.push(':');
                block_child(out, val, indent);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for (i, item) in a.iter().enumerate() {
                if i > 0 || !in_seq {
                    pad(out, indent);
                }
                out.push_str("- ");
                match item {
                    Value::Object(m) if !m.is_empty() => yaml(out, item, indent + 2, true),
                    Value::Array(a) if !a.is_empty() => yaml(out, item, indent + 2, true),
                    _ => {
                        out.push_str(&inline(item));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            out.push_str(&inline(v));
            out.push('\n');
        }
    }
}

fn block_child(out: &mut String, val: &Value, indent: usize) {
    match val {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml(out, val, indent + 2, false);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml(out, val, indent + 2, false);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(val));
            out.push('\n');
        }
    }
}

fn inline(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_text(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a plain scalar when that is unambiguous, else JSON-quoted.
fn scalar_text(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '@'))
        && !s.starts_with(['-', '.', '@'])
        && !looks_typed(s);
    if plain {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// Whether YAML (1.1 or 1.2) would read the plain text as something else than a
/// string: a number, a boolean, null, a date.
fn looks_typed(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    matches!(
        l.as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "null" | "nan" | "inf"
    ) || s.starts_with(|c: char| c.is_ascii_digit())
}

/// One line of a FIELD/VALUE table per field of an object.
pub fn fields(value: &Value) -> Vec<Vec<String>> {
    match value {
        Value::Object(m) => m.iter().map(|(k, v)| vec![k.clone(), cell(v)]).collect(),
        other => vec![vec![String::new(), cell(other)]],
    }
}

/// A value as one table cell: strings bare, lists comma-separated, maps `k=v`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Object(m) if m.is_empty() => "-".into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(v)))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["i-1".into(), "web".into()],
                vec!["i-100".into(), "db\nx".into()],
            ],
        );
        assert_eq!(t, "ID     NAME\ni-1    web\ni-100  db x\n");
    }

    #[test]
    fn yaml_quotes_what_would_change_type() {
        let v = serde_json::json!({"a": "yes", "b": "1.0", "c": "web-1", "d": [], "e": {"k": [1, {"x": null}]}, "f": "a: b", "g": ""});
        let mut s = String::new();
        yaml(&mut s, &v, 0, false);
        assert_eq!(
            s,
            "a: \"yes\"\nb: \"1.0\"\nc: web-1\nd: []\ne:\n  k:\n    - 1\n    - x: null\nf: \"a: b\"\ng: \"\"\n"
        );
    }
}
