//! Masks personal data before it leaves: e-mail addresses, payment card
//! numbers (Luhn-checked), IPv4 and IPv6 addresses in every string value at
//! any depth, and the whole value of configured field names.
//!
//! ```toml
//! [transforms.redact]
//! type = "wasm"
//! plugin = "redact.wasm"
//! config = { fields = "password,token,authorization", ips = true }
//! ```
//!
//! Matches become `[EMAIL]`, `[CARD]`, `[IPV4]`, `[IPV6]`; configured fields
//! become `[REDACTED]` (names compare case-insensitively). `emails`, `cards`
//! and `ips` switch each kind off with `false`. Events with nothing to mask
//! pass as a byte copy. Counters: `emails`, `cards`, `ips`, `fields`.

use std::net::{Ipv4Addr, Ipv6Addr};
use weir_sdk::{
    export_transform, host, Config, Event, ObjectBuilder, Output, Result, Transform, Value,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Email,
    Card,
    Ip4,
    Ip6,
}

impl Kind {
    fn mask(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL]",
            Kind::Card => "[CARD]",
            Kind::Ip4 => "[IPV4]",
            Kind::Ip6 => "[IPV6]",
        }
    }
}

#[derive(Default)]
struct Counts {
    emails: u64,
    cards: u64,
    ips: u64,
    fields: u64,
}

pub struct Redact {
    emails: bool,
    cards: bool,
    ips: bool,
    fields: Vec<String>,
    counts: Counts,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn email_spans(s: &[u8], out: &mut Vec<(usize, usize, Kind)>) {
    let local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let domain = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    for at in memchr_all(b'@', s) {
        let mut l = at;
        while l > 0 && local(s[l - 1]) {
            l -= 1;
        }
        let mut r = at + 1;
        while r < s.len() && domain(s[r]) {
            r += 1;
        }
        while r > at + 1 && matches!(s[r - 1], b'.' | b'-') {
            r -= 1;
        }
        let host = &s[at + 1..r];
        let tld_ok = host
            .rsplit(|b| *b == b'.')
            .next()
            .is_some_and(|t| t.len() >= 2 && t.iter().all(u8::is_ascii_alphabetic));
        if l < at && host.contains(&b'.') && tld_ok {
            out.push((l, r, Kind::Email));
        }
    }
}

fn memchr_all(needle: u8, s: &[u8]) -> impl Iterator<Item = usize> + '_ {
    s.iter()
        .enumerate()
        .filter(move |(_, b)| **b == needle)
        .map(|(i, _)| i)
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(d - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn card_spans(s: &[u8], out: &mut Vec<(usize, usize, Kind)>) {
    let mut i = 0;
    while i < s.len() {
        if !s[i].is_ascii_digit() || (i > 0 && is_word(s[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::with_capacity(19);
        let mut end = i;
        while i < s.len() && digits.len() <= 19 {
            if s[i].is_ascii_digit() {
                digits.push(s[i]);
                i += 1;
                end = i;
            } else if matches!(s[i], b' ' | b'-') && i + 1 < s.len() && s[i + 1].is_ascii_digit() {
                i += 1;
            } else {
                break;
            }
        }
        let bounded = end >= s.len() || !is_word(s[end]);
        if bounded && (13..=19).contains(&digits.len()) && luhn(&digits) {
            out.push((start, end, Kind::Card));
        }
        i = end.max(start + 1);
    }
}

fn ip_spans(s: &[u8], out: &mut Vec<(usize, usize, Kind)>) {
    let cand = |b: u8| b.is_ascii_hexdigit() || b == b':' || b == b'.';
    let mut i = 0;
    while i < s.len() {
        if !cand(s[i]) || (i > 0 && (is_word(s[i - 1]) || s[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let start = i;
        while i < s.len() && cand(s[i]) {
            i += 1;
        }
        let mut end = i;
        while end > start && s[end - 1] == b'.' {
            end -= 1;
        }
        let text = std::str::from_utf8(&s[start..end]).unwrap_or("");
        let bounded = end >= s.len() || !is_word(s[end]);
        if bounded {
            if text.parse::<Ipv4Addr>().is_ok() {
                out.push((start, end, Kind::Ip4));
            } else if text.bytes().filter(|b| *b == b':').count() >= 2
                && text.bytes().any(|b| b.is_ascii_hexdigit())
                && text.parse::<Ipv6Addr>().is_ok()
            {
                out.push((start, end, Kind::Ip6));
            }
        }
        i = i.max(start + 1);
    }
}

impl Redact {
    /// The masked text, or `None` when there is nothing to mask.
    fn mask(&mut self, text: &str) -> Option<String> {
        let s = text.as_bytes();
        let mut spans = Vec::new();
        if self.emails && s.contains(&b'@') {
            email_spans(s, &mut spans);
        }
        if self.cards && s.len() >= 13 {
            card_spans(s, &mut spans);
        }
        if self.ips && s.len() >= 2 {
            ip_spans(s, &mut spans);
        }
        if spans.is_empty() {
            return None;
        }
        spans.sort();
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end, kind) in spans {
            if start < at {
                continue; // overlaps an earlier match
            }
            out.push_str(&text[at..start]);
            out.push_str(kind.mask());
            at = end;
            match kind {
                Kind::Email => self.counts.emails += 1,
                Kind::Card => self.counts.cards += 1,
                Kind::Ip4 | Kind::Ip6 => self.counts.ips += 1,
            }
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    fn sensitive(&self, key: &str) -> bool {
        self.fields.iter().any(|f| f.eq_ignore_ascii_case(key))
    }

    /// Whether anything in `v` (under `key`) would change.
    fn needs(&mut self, key: &str, v: Value) -> bool {
        if self.sensitive(key) {
            return true;
        }
        match v {
            Value::Str(s) => {
                let before = (self.counts.emails, self.counts.cards, self.counts.ips);
                let hit = self.mask(s).is_some();
                (self.counts.emails, self.counts.cards, self.counts.ips) = before;
                hit
            }
            Value::Object(o) => o.iter().any(|(k, v)| self.needs(k, v)),
            Value::Array(a) => a.iter().any(|v| self.needs("", v)),
            _ => false,
        }
    }

    fn write_field(&mut self, o: &mut ObjectBuilder<'_>, key: &str, v: Value) {
        if self.sensitive(key) {
            self.counts.fields += 1;
            o.field(key, "[REDACTED]");
            return;
        }
        match v {
            Value::Str(s) => match self.mask(s) {
                Some(masked) => o.field(key, masked.as_str()),
                None => o.field(key, s),
            },
            Value::Object(obj) => o.object(key, |inner| {
                for (k, v) in obj.iter() {
                    self.write_field(inner, k, v);
                }
            }),
            Value::Array(arr) => o.array_with(key, |a| {
                for v in arr.iter() {
                    match v {
                        Value::Str(s) => match self.mask(s) {
                            Some(m) => a.push(m.as_str()),
                            None => a.push(s),
                        },
                        Value::Object(obj) => a.object(|inner| {
                            for (k, v) in obj.iter() {
                                self.write_field(inner, k, v);
                            }
                        }),
                        other => a.push(other),
                    };
                }
            }),
            other => o.field(key, other),
        };
    }
}

impl Transform for Redact {
    fn new(config: &Config) -> Result<Self> {
        config.reject_unknown(&["fields", "emails", "cards", "ips"])?;
        Ok(Redact {
            emails: config.parse_or("emails", true)?,
            cards: config.parse_or("cards", true)?,
            ips: config.parse_or("ips", true)?,
            fields: config
                .list("fields")
                .into_iter()
                .map(str::to_string)
                .collect(),
            counts: Counts::default(),
        })
    }

    fn transform(&mut self, event: &Event, out: &mut Output) -> Result<()> {
        let Some(fields) = event.object() else {
            return out.emit(event); // metrics carry no free text
        };
        if !fields.iter().any(|(k, v)| self.needs(k, v)) {
            return out.emit(event);
        }
        let mut log = out.log(event.timestamp());
        for (k, v) in fields.iter() {
            self.write_field(log.fields(), k, v);
        }
        log.finish()?;
        Ok(())
    }

    fn end_batch(&mut self) {
        let c = std::mem::take(&mut self.counts);
        for (name, n) in [
            ("emails", c.emails),
            ("cards", c.cards),
            ("ips", c.ips),
            ("fields", c.fields),
        ] {
            if n > 0 {
                host::counter_add(name, n);
            }
        }
    }
}

export_transform!(Redact);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{testing, BatchBuf};

    fn redact(text: &str) -> String {
        let mut r = Redact::new(&Config::default()).unwrap();
        r.mask(text).unwrap_or_else(|| text.to_string())
    }

    #[test]
    fn masks_each_kind_in_free_text() {
        assert_eq!(
            redact("mail jane.doe+x@mail.example.com now."),
            "mail [EMAIL] now."
        );
        assert_eq!(redact("card 4111 1111 1111 1111 ok"), "card [CARD] ok");
        assert_eq!(redact("card 4111-1111-1111-1111"), "card [CARD]");
        assert_eq!(
            redact("from 192.168.1.20, to 10.0.0.1."),
            "from [IPV4], to [IPV4]."
        );
        assert_eq!(
            redact("v6 2001:db8::8a2e:370:7334 and ::1"),
            "v6 [IPV6] and [IPV6]"
        );
    }

    #[test]
    fn leaves_look_alikes_alone() {
        for text in [
            "order 4111 1111 1111 1112", // fails Luhn
            "at 12:30:45 on 2024-05-01", // times and dates
            "version 1.2.3 of Foo::bar", // not an IP, a Rust path
            "user@localhost",            // no domain
            "id 999.999.1.1",            // not an IPv4
            "trace 4bf92f3577b34da6a3ce929d0e0e4736",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn walks_nested_values_and_configured_fields_and_copies_clean_events() {
        let mut b = BatchBuf::new();
        b.log(5)
            .field("msg", "login by bob@corp.example from 10.1.2.3")
            .field("Password", "hunter2")
            .object("ctx", |c| {
                c.field("ip", "::ffff:10.0.0.1")
                    .array("cc", ["5500 0000 0000 0004", "none"]);
            })
            .finish()
            .unwrap();
        b.log(6)
            .field("msg", "nothing here")
            .field("n", 3)
            .finish()
            .unwrap();
        let run = testing::transform::<Redact>(&[("fields", "password, token")], &b).unwrap();
        let e = run.output.get(0).unwrap();
        assert_eq!(e.timestamp(), 5);
        assert_eq!(e.get_str("msg"), Some("login by [EMAIL] from [IPV4]"));
        assert_eq!(e.get_str("Password"), Some("[REDACTED]"));
        assert_eq!(e.lookup("ctx.ip").and_then(|v| v.as_str()), Some("[IPV6]"));
        assert_eq!(
            e.lookup("ctx.cc.0").and_then(|v| v.as_str()),
            Some("[CARD]")
        );
        assert_eq!(e.lookup("ctx.cc.1").and_then(|v| v.as_str()), Some("none"));
        assert_eq!(run.output.get(1).unwrap().raw(), b.get(1).unwrap().raw());
        assert!(run.errors.is_empty());
    }
}
