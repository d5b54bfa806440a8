//! Label matchers, as Alertmanager writes them: `severity="page"`,
//! `team!="db"`, `service=~"cart|search"`, `env!~"dev.*"`. Regexes are
//! anchored, as in Alertmanager.

use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    Re,
    NotRe,
}

impl Matcher {
    /// Parses `name="value"` (the quotes are optional for plain values).
    pub fn parse(text: &str) -> Result<Matcher, String> {
        let t = text.trim();
        let at = t.find(['=', '!']).ok_or_else(|| {
            format!("`{text}` is not a matcher: write label=\"value\" (or !=, =~, !~)")
        })?;
        let name = t[..at].trim();
        let rest = &t[at..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (Op::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (Op::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (Op::NotEq, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (Op::Eq, v)
        } else {
            return Err(format!("`{text}`: expected =, !=, =~ or !~ after `{name}`"));
        };
        if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("`{text}`: `{name}` is not a label name"));
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(v) => v
                .strip_suffix('"')
                .ok_or_else(|| format!("`{text}`: the value's quote is not closed"))
                .map(unescape)?,
            None => value.to_string(),
        };
        let regex = match op {
            Op::Re | Op::NotRe => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("`{text}`: bad regex: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    /// A missing label matches as the empty string, as in Alertmanager.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Eq, _) => v == self.value,
            (Op::NotEq, _) => v != self.value,
            (Op::Re, Some(r)) => r.is_match(v),
            (Op::NotRe, Some(r)) => !r.is_match(v),
            _ => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Eq => "=",
            Op::NotEq => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        let v = self.value.replace('\\', "\\\\").replace('"', "\\\"");
        write!(f, "{}{op}\"{v}\"", self.name)
    }
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(n @ ('"' | '\\'))) => {
                out.push(n);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// Matchers travel and persist in their text form.
impl Serialize for Matcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Matcher::parse(&text).map_err(serde::de::Error::custom)
    }
}

pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Labels from pairs, for tests.
#[cfg(test)]
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_operators_match_as_in_alertmanager() {
        let l = labels(&[("service", "cart"), ("severity", "page")]);
        let m = |t: &str| Matcher::parse(t).unwrap().matches(&l);
        assert!(m(r#"service="cart""#));
        assert!(m("service=cart"));
        assert!(!m(r#"service!="cart""#));
        assert!(m(r#"service=~"ca.*""#));
        assert!(!m(r#"service=~"ar""#), "regexes are anchored");
        assert!(m(r#"service!~"search|db""#));
        assert!(m(r#"team="""#), "a missing label is the empty string");
        assert!(!m(r#"team=~".+""#));
    }

    #[test]
    fn bad_matchers_say_what_is_wrong() {
        assert!(Matcher::parse("service")
            .unwrap_err()
            .contains("not a matcher"));
        assert!(Matcher::parse(r#"service="cart"#)
            .unwrap_err()
            .contains("quote"));
        assert!(Matcher::parse(r#"service=~"(""#)
            .unwrap_err()
            .contains("bad regex"));
        let m = Matcher::parse(r#"a="x\"y""#).unwrap();
        assert_eq!(Matcher::parse(&m.to_string()).unwrap().value, m.value);
    }
}
