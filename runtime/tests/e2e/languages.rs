//! The same filter written in Rust, Python, JavaScript and C, run through
//! the real host on the same events: the same output from each.

use crate::common::*;

fn example(lang: &str) -> std::path::PathBuf {
    let p = repo()
        .join("plugins/examples")
        .join(lang)
        .join("build/keep_errors.wasm");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-examples first",
        p.display()
    );
    p
}

/// Generated logs plus the shapes that trip readers up: nested values
/// before the field, a numeric level, no level, unicode, an empty object.
fn input() -> String {
    let mut lines: Vec<String> = (0..3000)
        .map(|i| {
            let level = ["info", "warn", "error"][i % 3];
            format!(
                r#"{{"i":{i},"level":"{level}","svc":"api","lat":{}.5}}"#,
                i % 97
            )
        })
        .collect();
    lines
        .push(r#"{"i":-1,"nested":{"a":[1,2,{"level":"error"}],"b":null},"level":"error"}"#.into());
    lines.push(r#"{"i":-2,"level":50}"#.into());
    lines.push(r#"{"i":-3,"msg":"no level"}"#.into());
    lines.push(r#"{"i":-4,"level":"error","msg":"ünïcødé ✓"}"#.into());
    lines.push(r#"{"i":-5,"level":"ERROR"}"#.into());
    lines.push("{}".into());
    lines.join("\n") + "\n"
}

#[test]
fn every_language_keeps_exactly_the_same_events() {
    let input = input();
    let want: Vec<i64> = input
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["level"] == "error").then(|| v["i"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(want.len(), 1002);
    let mut outputs = Vec::new();
    for lang in ["rust", "python", "js", "c"] {
        let out = plugin_run(&example(lang), &[], &[], input.as_bytes());
        assert!(out.status.success(), "{lang}: {}", stderr(&out));
        let got: Vec<i64> = json_lines(&out.stdout)
            .iter()
            .map(|e| e["i"].as_i64().unwrap())
            .collect();
        assert_eq!(got, want, "{lang} kept different events");
        outputs.push((lang, out.stdout));
    }
    for (lang, bytes) in &outputs[1..] {
        assert_eq!(
            bytes, &outputs[0].1,
            "{lang} output differs from rust's byte for byte"
        );
    }
}

#[test]
fn every_language_refuses_a_bad_config_with_its_reason() {
    for lang in ["rust", "python", "js", "c"] {
        let out = plugin_run(&example(lang), &["colour=red"], &[], b"");
        assert!(!out.status.success(), "{lang} accepted an unknown setting");
        let err = stderr(&out);
        assert!(
            err.contains("init refused the config: unknown setting"),
            "{lang}: {err}"
        );
    }
}
