//! The pipeline file: `[sources.*]`, `[transforms.*]`, `[queries.*]` and
//! `[sinks.*]`, each naming its `inputs`; `[alerts.*]` rules over query rows
//! with their `[route]` and `[receivers.*]`.
//!
//! ```toml
//! [sources.app]
//! type = "file"
//! path = "app.log"
//!
//! [transforms.warnings]
//! type = "wasm"
//! inputs = ["app"]
//! plugin = "level_filter.wasm"
//! config = { level = "warn" }
//!
//! [sinks.out]
//! type = "stdout"
//! inputs = ["warnings"]
//! ```
//!
//! Relative paths are relative to the pipeline file. `${NAME}` is replaced by
//! the environment variable (`$${` writes a literal `${`).

mod alerts;
mod describe;
mod env;
mod http_sinks;
mod listen;
mod problems;
pub mod secrets;
mod types;

pub use alerts::*;
pub use describe::{Kind, Node};
pub use http_sinks::*;
pub use listen::*;
pub use problems::{Problem, Problems};
pub use types::*;

use std::path::{Path, PathBuf};

/// A parsed pipeline with the text it came from, for pointing at lines.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    pub text: String,
    pub file: PipelineFile,
}

impl Pipeline {
    /// Reads, interpolates and parses the file; every problem found is returned.
    pub fn load(path: &Path) -> Result<Pipeline, Problems> {
        let raw = std::fs::read_to_string(path).map_err(|e| {
            Problems::one(Problem::new(
                path,
                None,
                format!("cannot read the pipeline file: {e}"),
            ))
        })?;
        Self::parse(path, &raw)
    }

    /// Interpolates and parses `raw`; its secrets are known to
    /// [`secrets::redact`] from here on, whether it parses or not.
    pub fn parse(path: &Path, raw: &str) -> Result<Pipeline, Problems> {
        let (text, from_env) = env::interpolate(raw).map_err(|errs| {
            Problems(
                errs.into_iter()
                    .map(|(line, msg)| Problem::new(path, Some(line), msg))
                    .collect(),
            )
        })?;
        let mut found = secrets::Secrets::default();
        for v in &from_env {
            found.add_from_env(v);
        }
        if let Ok(table) = toml::from_str::<toml::Table>(&text) {
            found.add_from_toml(&table);
        }
        secrets::install(&found);
        let file: PipelineFile = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| line_of(&text, s.start));
            let message = found.redact(e.message().trim()).into_owned();
            Problems::one(Problem::new(path, line, message))
        })?;
        let p = Pipeline {
            path: path.to_path_buf(),
            text,
            file,
        };
        p.check_graph()?;
        Ok(p)
    }

    /// Directory relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Where state that outlives a restart is kept: `[settings] data_dir`,
    /// else `$WEIR_DATA_DIR`, else `.weir/` beside the pipeline file.
    /// Created by whatever writes there first.
    pub fn data_dir(&self) -> PathBuf {
        match &self.file.settings.data_dir {
            Some(d) => self.resolve(d),
            None => match std::env::var_os("WEIR_DATA_DIR") {
                Some(d) => PathBuf::from(d),
                None => self.base_dir().join(".weir"),
            },
        }
    }

    /// `data_dir/kind/NAME`, for state a component keeps: a component's
    /// name made safe as a file name (`/` and the like become `_`).
    pub fn state_path(&self, kind: &str, name: &str) -> PathBuf {
        let safe: String = name
            .chars()
            .map(|c| match c.is_ascii_alphanumeric() || "-_.".contains(c) {
                true => c,
                false => '_',
            })
            .collect();
        self.data_dir().join(kind).join(safe)
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir().join(p)
        }
    }

    /// The line of `key` inside `[section.name]`, or of the header itself.
    pub fn locate(&self, section: &str, name: &str, key: Option<&str>) -> Option<usize> {
        let header = format!("[{section}.{name}]");
        let quoted = format!("[{section}.\"{name}\"]");
        let mut lines = self.text.lines().enumerate();
        let (h, _) = lines.find(|(_, l)| {
            let t = l.trim();
            t.starts_with(&header) || t.starts_with(&quoted)
        })?;
        let Some(key) = key else { return Some(h + 1) };
        for (i, l) in lines {
            let t = l.trim_start();
            if t.starts_with('[') {
                break;
            }
            if t.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return Some(i + 1);
            }
        }
        Some(h + 1)
    }

    pub fn problem(
        &self,
        section: &str,
        name: &str,
        key: Option<&str>,
        msg: impl Into<String>,
    ) -> Problem {
        let line = self.locate(section, name, key);
        let what = match key {
            Some(k) => format!("[{section}.{name}] {k}: "),
            None => format!("[{section}.{name}]: "),
        };
        Problem::new(&self.path, line, format!("{what}{}", msg.into()))
    }

    /// Every component name, with its section.
    pub fn components(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let f = &self.file;
        f.sources
            .keys()
            .map(|k| ("sources", k.as_str()))
            .chain(f.transforms.keys().map(|k| ("transforms", k.as_str())))
            .chain(f.queries.keys().map(|k| ("queries", k.as_str())))
            .chain(f.sinks.keys().map(|k| ("sinks", k.as_str())))
    }

    /// `[api]` is not opened by mistake: an empty token, or an address
    /// beyond loopback without a token (unless `allow_no_token`), is a
    /// problem.
    fn check_api(&self, problems: &mut Vec<Problem>) {
        let Some(api) = &self.file.api else { return };
        let line = |key: &str| {
            let header = self.text.lines().position(|l| l.trim() == "[api]")?;
            let at = self
                .text
                .lines()
                .skip(header + 1)
                .take_while(|l| !l.trim_start().starts_with('['))
                .position(|l| {
                    let l = l.trim_start();
                    l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
                });
            Some(header + 1 + at.map_or(0, |a| a + 1))
        };
        let problem = |key: &str, msg: String| Problem::new(&self.path, line(key), msg);
        match &api.token {
            Some(t) if t.trim().is_empty() => problems.push(problem(
                "token",
                "[api] token is empty, which would serve the API to anyone: set a token (`token = \"${WEIR_API_TOKEN}\"` with the variable set) or remove the key".into(),
            )),
            Some(_) => {}
            None if !api.allow_no_token && !is_loopback(&api.address) => problems.push(problem(
                "address",
                format!("[api] listens on {} beyond loopback with no token: anyone who reaches it can read events (/tap) and run SQL; set `token`, or `allow_no_token = true` to serve it anyway", api.address),
            )),
            None => {}
        }
    }

    /// Names are unique, inputs exist, nothing feeds on a sink, no cycles.
    fn check_graph(&self) -> Result<(), Problems> {
        let mut problems = Vec::new();
        self.check_api(&mut problems);
        let f = &self.file;
        let mut seen = std::collections::HashMap::new();
        for (section, name) in self.components() {
            if let Some(other) = seen.insert(name, section) {
                problems.push(self.problem(
                    section,
                    name,
                    None,
                    format!(
                    "the name `{name}` is also used in [{other}]; component names must be unique"
                ),
                ));
            }
        }
        if f.sources.is_empty() {
            problems.push(Problem::new(
                &self.path,
                None,
                "no [sources.*]: a pipeline needs at least one source".into(),
            ));
        }
        if f.sinks.is_empty() {
            problems.push(Problem::new(
                &self.path,
                None,
                "no [sinks.*]: a pipeline needs at least one sink".into(),
            ));
        }
        let inputs = f
            .transforms
            .iter()
            .map(|(n, t)| ("transforms", n, t.inputs()))
            .chain(f.queries.iter().map(|(n, q)| ("queries", n, &q.inputs[..])))
            .chain(f.sinks.iter().map(|(n, s)| ("sinks", n, s.inputs())));
        for (section, name, ins) in inputs {
            if ins.is_empty() {
                problems.push(self.problem(
                    section,
                    name,
                    Some("inputs"),
                    "empty: name at least one source or transform",
                ));
            }
            for input in ins {
                if let Some(from) = input.strip_suffix(&format!(".{DEAD_LETTER}")) {
                    match f.transforms.get(from) {
                        Some(t) if t.on_error() == OnError::DeadLetter => {}
                        Some(_) => problems.push(self.problem(section, name, Some("inputs"), format!(
                            "`{input}`: [transforms.{from}] does not route failures there; set its on_error = \"dead_letter\""
                        ))),
                        None => problems.push(self.problem(section, name, Some("inputs"), format!(
                            "`{input}`: only transforms have a dead-letter output, and there is no transform `{from}`"
                        ))),
                    }
                    continue;
                }
                let query_output = [LATE, ERRORS]
                    .iter()
                    .find_map(|o| Some((input.strip_suffix(o)?.strip_suffix('.')?, o)));
                if let Some((from, output)) = query_output {
                    if !f.queries.contains_key(from) {
                        problems.push(self.problem(section, name, Some("inputs"), format!(
                            "`{input}`: only queries have a `.{output}` output, and there is no query `{from}`"
                        )));
                    }
                    continue;
                }
                match seen.get(input.as_str()) {
                    Some(&"sinks") => problems.push(self.problem(
                        section,
                        name,
                        Some("inputs"),
                        format!(
                            "`{input}` is a sink; inputs must be sources, transforms or queries"
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        let hint = closest(input, seen.keys().copied())
                            .map(|c| format!(" (did you mean `{c}`?)"))
                            .unwrap_or_default();
                        problems.push(self.problem(
                            section,
                            name,
                            Some("inputs"),
                            format!("no component named `{input}`{hint}"),
                        ));
                    }
                }
            }
        }
        for (name, t) in &f.transforms {
            let dead = format!("{name}.{DEAD_LETTER}");
            let read = f
                .transforms
                .values()
                .map(|t| t.inputs())
                .chain(f.queries.values().map(|q| &q.inputs[..]))
                .chain(f.sinks.values().map(|s| s.inputs()));
            if t.on_error() == OnError::DeadLetter && !read.flatten().any(|i| *i == dead) {
                problems.push(self.problem("transforms", name, Some("on_error"), format!(
                    "failed events go to `{dead}`, but nothing reads it: add \"{dead}\" to a sink's inputs"
                )));
            }
        }
        if problems.is_empty() {
            if let Some((section, cycle)) = self.find_cycle() {
                problems.push(self.problem(
                    section,
                    &cycle[0],
                    Some("inputs"),
                    format!(
                        "components feed each other in a cycle: {}",
                        cycle.join(" -> ")
                    ),
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Problems(problems))
        }
    }

    /// A cycle among transforms and queries, as the names along it.
    fn find_cycle(&self) -> Option<(&'static str, Vec<String>)> {
        let f = &self.file;
        let inputs: std::collections::HashMap<&str, (&'static str, &[String])> = f
            .transforms
            .iter()
            .map(|(n, t)| (n.as_str(), ("transforms", t.inputs())))
            .chain(
                f.queries
                    .iter()
                    .map(|(n, q)| (n.as_str(), ("queries", &q.inputs[..]))),
            )
            .collect();
        type Inputs<'a> = std::collections::HashMap<&'a str, (&'static str, &'a [String])>;
        fn visit<'a>(
            n: &'a str,
            t: &Inputs<'a>,
            path: &mut Vec<&'a str>,
            done: &mut Vec<&'a str>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| *p == n) {
                let mut c: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            if done.contains(&n) {
                return None;
            }
            path.push(n);
            for input in t.get(n).map(|x| x.1).unwrap_or_default() {
                let input = [DEAD_LETTER, LATE, ERRORS]
                    .iter()
                    .find_map(|o| input.strip_suffix(o)?.strip_suffix('.'))
                    .unwrap_or(input);
                if t.contains_key(input) {
                    if let Some(c) = visit(input, t, path, done) {
                        return Some(c);
                    }
                }
            }
            path.pop();
            done.push(n);
            None
        }
        let mut done = Vec::new();
        let mut names: Vec<&str> = inputs.keys().copied().collect();
        names.sort_unstable();
        names
            .into_iter()
            .find_map(|n| visit(n, &inputs, &mut Vec::new(), &mut done))
            .map(|c| (inputs[c[0].as_str()].0, c))
    }
}

/// Whether every address `address` resolves to is a loopback one (an
/// address that does not resolve is not).
pub fn is_loopback(address: &str) -> bool {
    match std::net::ToSocketAddrs::to_socket_addrs(address) {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

pub fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// The known name nearest to `word`, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (strsim(word, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn strsim(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Pipeline, String> {
        Pipeline::parse(Path::new("p.toml"), text).map_err(|p| p.to_string())
    }

    const OK: &str = r#"
[sources.app]
type = "generator"

[transforms.keep]
type = "wasm"
inputs = ["app"]
plugin = "f.wasm"
config = { level = "warn", n = 3, nested = { a = true } }

[sinks.out]
type = "stdout"
inputs = ["keep"]
"#;

    #[test]
    fn a_good_pipeline_parses_with_flattened_plugin_config() {
        let p = parse(OK).unwrap();
        let t = &p.file.transforms["keep"];
        assert_eq!(
            t.plugin_config(),
            [
                ("level".into(), "warn".into()),
                ("n".into(), "3".into()),
                ("nested.a".into(), "true".into())
            ]
        );
    }

    #[test]
    fn wrong_inputs_are_reported_with_line_and_suggestion() {
        let err =
            parse(&OK.replace("inputs = [\"keep\"]", "inputs = [\"kep\", \"nope\"]")).unwrap_err();
        assert!(
            err.contains(
                "p.toml:13: [sinks.out] inputs: no component named `kep` (did you mean `keep`?)"
            ),
            "{err}"
        );
        assert!(err.contains("no component named `nope`"), "{err}");
    }

    #[test]
    fn typos_in_keys_and_types_name_the_line() {
        let err = parse(&OK.replace("plugin = ", "plugn = ")).unwrap_err();
        assert!(
            err.contains("p.toml:5:") || err.contains("p.toml:8:"),
            "{err}"
        );
        assert!(err.contains("plugn"), "{err}");
        let err = parse(&OK.replace("type = \"stdout\"", "type = \"stdot\"")).unwrap_err();
        assert!(err.contains("stdot"), "{err}");
    }

    #[test]
    fn dead_letter_outputs_must_be_routed_and_read() {
        let unread = OK.replace("config = {", "on_error = \"dead_letter\"\nconfig = {");
        assert!(parse(&unread)
            .unwrap_err()
            .contains("nothing reads it: add \"keep.dead_letter\""));
        let read = format!(
            "{unread}\n[sinks.dlq]\ntype = \"blackhole\"\ninputs = [\"keep.dead_letter\"]\n"
        );
        parse(&read).unwrap();
        let not_routed =
            format!("{OK}\n[sinks.dlq]\ntype = \"blackhole\"\ninputs = [\"keep.dead_letter\"]\n");
        assert!(parse(&not_routed)
            .unwrap_err()
            .contains("does not route failures there"));
    }

    #[test]
    fn queries_are_wired_like_transforms_with_a_late_output() {
        let q = format!(
            "{OK}\n[queries.q]\ninputs = [\"keep\"]\nsql = \"SELECT 1\"\n\n[sinks.late]\ntype = \"blackhole\"\ninputs = [\"q.late\", \"q\"]\n"
        );
        parse(&q).unwrap();
        let wrong = q.replace("\"q.late\"", "\"keep.late\"");
        assert!(parse(&wrong)
            .unwrap_err()
            .contains("`keep.late`: only queries have a `.late` output"));
        let cycle = q.replace("inputs = [\"app\"]", "inputs = [\"app\", \"q\"]");
        assert!(parse(&cycle)
            .unwrap_err()
            .contains("cycle: keep -> q -> keep"));
    }

    #[test]
    fn cycles_and_sink_inputs_are_refused() {
        let cyc = OK.replace("inputs = [\"app\"]", "inputs = [\"keep\"]");
        assert!(parse(&cyc).unwrap_err().contains("cycle: keep -> keep"));
        let extra = format!("{OK}\n[sinks.two]\ntype = \"blackhole\"\ninputs = [\"out\"]\n");
        assert!(parse(&extra).unwrap_err().contains("`out` is a sink"));
    }

    #[test]
    fn an_api_open_to_anyone_is_refused() {
        let api = |section: &str| parse(&format!("{section}\n{OK}"));
        let err = api("[api]\ntoken = \"\"").unwrap_err();
        assert!(err.starts_with("p.toml:2: [api] token is empty"), "{err}");
        let err = api("[api]\naddress = \"0.0.0.0:8686\"").unwrap_err();
        assert!(
            err.starts_with(
                "p.toml:2: [api] listens on 0.0.0.0:8686 beyond loopback with no token"
            ),
            "{err}"
        );
        for ok in [
            "[api]\naddress = \"0.0.0.0:8686\"\ntoken = \"t0ken\"",
            "[api]\naddress = \"0.0.0.0:8686\"\nallow_no_token = true",
            "[api]\naddress = \"127.0.0.1:8686\"",
            "[api]\naddress = \"[::1]:8686\"",
            "[api]",
        ] {
            assert!(api(ok).is_ok(), "{ok}");
        }
    }
}
