//! Secrets in a pipeline, and their removal from everything weir prints.
//!
//! A secret is a value that came from `${VAR}`, the value of a key that
//! names one (`token`, `password`, `api_key`, ...; every value of a
//! `headers` table), and the parts of a URL that carry credentials: the
//! user info, the query string, and the path of a receiver's URL (a Slack
//! webhook's path is its token). Once a pipeline is parsed they are known,
//! and [`redact`] replaces each of them with `***` wherever it appears: in
//! log lines (the log writer runs every line through it), in `weir graph`,
//! in the admin API's `/pipeline`, and in `weir validate`'s problems.
//!
//! ```
//! use weir::config::secrets::{redact_url, Secrets};
//! let mut s = Secrets::default();
//! s.add("hunter22");
//! assert_eq!(s.redact("login failed for hunter22"), "login failed for ***");
//! assert_eq!(
//!     redact_url("https://bob:hunter22@es.example:9200/logs?api_key=k"),
//!     "https://***@es.example:9200/logs?***"
//! );
//! ```

use aho_corasick::{AhoCorasick, MatchKind};
use std::borrow::Cow;
use std::sync::{Arc, RwLock};

/// What takes a secret's place.
pub const MASK: &str = "***";

/// Values from `${VAR}` shorter than this are not treated as secrets: a
/// port or a log level would otherwise be masked in every line.
const MIN_ENV_SECRET: usize = 6;

/// Keys whose values are secrets, matched as parts of the key's name
/// (`api_key`, `sasl.password`, `ssl.key.password`, `x_auth_token`, ...).
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "credential",
    "authorization",
    "private_key",
];

/// The secrets of one pipeline, and a matcher over them.
#[derive(Default, Clone)]
pub struct Secrets {
    values: Vec<String>,
    matcher: Option<AhoCorasick>,
}

impl Secrets {
    /// Adds a secret (and the forms a URL parser prints it in).
    pub fn add(&mut self, value: &str) {
        let value = value.trim();
        if value.is_empty() || value == MASK || self.values.iter().any(|v| v == value) {
            return;
        }
        self.values.push(value.to_string());
        let encoded = percent_encode(value);
        if encoded != value {
            self.values.push(encoded);
        }
        self.matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&self.values)
            .ok();
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                Cow::Owned(m.replace_all(text, &vec![MASK; self.values.len()]))
            }
            _ => Cow::Borrowed(text),
        }
    }

    /// Values substituted for `${VAR}`: secrets when long enough to be one.
    pub fn add_from_env(&mut self, value: &str) {
        if value.trim().len() >= MIN_ENV_SECRET {
            self.add(value);
        }
    }

    /// Walks a parsed pipeline file for secret keys, headers and URLs.
    pub fn add_from_toml(&mut self, root: &toml::Table) {
        const NAMED: &[&str] = &[
            "sources",
            "transforms",
            "queries",
            "sinks",
            "alerts",
            "receivers",
        ];
        for (section, value) in root {
            let Some(table) = value.as_table() else {
                continue;
            };
            let receiver = section == "receivers";
            if !NAMED.contains(&section.as_str()) {
                // `[api]`, `[settings]`, `[route]`: one table.
                self.walk(table, false, receiver);
                continue;
            }
            // A component's name is no secret, whatever it is.
            for component in table.values().filter_map(toml::Value::as_table) {
                self.walk(component, false, receiver);
            }
        }
    }

    fn walk(&mut self, table: &toml::Table, all: bool, receiver: bool) {
        for (key, value) in table {
            let secret_key = all || is_secret_key(key);
            match value {
                toml::Value::String(s) if secret_key => self.add(s),
                toml::Value::String(s) => self.add_url_parts(s, receiver && key == "url"),
                toml::Value::Table(t) => self.walk(t, secret_key || key == "headers", receiver),
                toml::Value::Array(items) => {
                    for item in items {
                        match item {
                            toml::Value::String(s) if secret_key => self.add(s),
                            toml::Value::String(s) => self.add_url_parts(s, false),
                            toml::Value::Table(t) => self.walk(t, secret_key, receiver),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The user info and query of a URL, and its path when the path is the
    /// credential (a webhook).
    fn add_url_parts(&mut self, text: &str, path_too: bool) {
        if !text.contains("://") {
            return;
        }
        let Ok(url) = reqwest::Url::parse(text) else {
            return;
        };
        if let Some(password) = url.password() {
            self.add(password);
            self.add(&percent_decode(password));
        }
        if let Some(query) = url.query() {
            self.add(query);
            self.add(&percent_decode(query));
        }
        for (key, value) in url.query_pairs() {
            if is_secret_key(&key) {
                self.add(&value);
            }
        }
        // A path of several parts or a long one (a Slack webhook's
        // `services/T0/B0/XYZ`) is a token; `/alerts` is not.
        let path = url.path().trim_start_matches('/');
        if path_too && (path.contains('/') || path.len() >= 16) {
            self.add(path);
        }
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|k| key.contains(k))
}

/// How a URL parser writes `value` in a path or query.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A URL fit to print: no user info, no query, no fragment; what is not a
/// URL is returned as it is.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(text) else {
        return text.to_string();
    };
    let had_user = !url.username().is_empty() || url.password().is_some();
    let had_query = url.query().is_some();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    let mut shown = url.to_string();
    if had_user {
        if let Some(at) = shown.find("://") {
            shown.insert_str(at + 3, &format!("{MASK}@"));
        }
    }
    if had_query {
        shown.push('?');
        shown.push_str(MASK);
    }
    shown
}

/// The secrets of the pipeline loaded last, which every output path masks.
static CURRENT: RwLock<Option<Arc<Secrets>>> = RwLock::new(None);

/// Makes `secrets` the ones [`redact`] masks (a pipeline was loaded). The
/// ones of earlier loads are kept too: a reload must not unmask a secret
/// that an error still in flight carries.
pub fn install(secrets: &Secrets) {
    let mut current = CURRENT.write().unwrap_or_else(|e| e.into_inner());
    let mut merged = current.as_deref().cloned().unwrap_or_default();
    for v in &secrets.values {
        merged.add(v);
    }
    *current = Some(Arc::new(merged));
}

/// `text` with every known secret masked.
pub fn redact(text: &str) -> Cow<'_, str> {
    let current = CURRENT.read().unwrap_or_else(|e| e.into_inner()).clone();
    match current {
        Some(s) => Cow::Owned(s.redact(text).into_owned()),
        None => Cow::Borrowed(text),
    }
}

/// The log writer: each formatted line is masked before it reaches stderr.
pub struct RedactingStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter(Vec::new())
    }
}

/// Collects one log record, masks it and writes it when dropped.
pub struct LineWriter(Vec<u8>);

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let _ = std::io::Write::write_all(&mut std::io::stderr(), redact(&text).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> Secrets {
        let mut s = Secrets::default();
        s.add_from_toml(&toml::from_str(text).unwrap());
        s
    }

    #[test]
    fn keys_headers_and_urls_give_their_secrets() {
        let s = of(r#"
[api]
token = "api-tok"
[sinks.es]
type = "elasticsearch"
endpoint = "https://elastic:pa ss@es.local:9200/?api_key=qk1"
password = "p4ss"
headers = { X-Custom = "hdr-value" }
[sinks.k]
librdkafka_options = { "sasl.password" = "kafka-pw", "client.id" = "weir" }
[sources.scrape]
targets = ["http://u:scrape-pw@10.0.0.1:9100/metrics?x=tgt-q"]
[receivers.slack]
url = "https://hooks.slack.example/services/T0/B0/XYZ"
[receivers.hook]
url = "http://127.0.0.1:9/alerts"
"#);
        let text = "api-tok pa ss pa%20ss qk1 api_key=qk1 p4ss hdr-value kafka-pw scrape-pw x=tgt-q services/T0/B0/XYZ alerts weir es.local 10.0.0.1 elasticsearch";
        assert_eq!(
            s.redact(text),
            "*** *** *** *** *** *** *** *** *** *** *** alerts weir es.local 10.0.0.1 elasticsearch"
        );
    }

    #[test]
    fn env_values_count_when_long_enough() {
        let mut s = Secrets::default();
        s.add_from_env("8080");
        s.add_from_env("s3cr3t-value");
        assert_eq!(s.redact("port 8080 s3cr3t-value"), "port 8080 ***");
    }

    #[test]
    fn urls_print_without_credentials() {
        assert_eq!(
            redact_url("http://127.0.0.1:9090/api/v1/write"),
            "http://127.0.0.1:9090/api/v1/write"
        );
        assert_eq!(redact_url("https://u@h/p#frag"), "https://***@h/p");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
