//! The `weir` commands a user runs, against the real binary.

use crate::common::*;

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn help_names_every_command() {
    let out = run(weir().arg("--help"), b"", 10);
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "validate", "plugin"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = run(weir().args(["plugin", "--help"]), b"", 10);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("run") && help.contains("new"), "{help}");
}

#[test]
fn validate_accepts_the_quickstart() {
    let out = run(
        weir()
            .args(["validate", "-c"])
            .arg(repo().join("examples/quickstart/pipeline.toml")),
        b"",
        60,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("ok (2 sources, 3 transforms, 1 queries, 2 sinks, 1 alert rules)"));
}

#[test]
fn validate_reports_every_wiring_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "bad.toml",
        r#"[sources.app]
type = "stdin"

[transforms.errors]
type = "wasm"
inputs = ["ap"]
plugin = "x.wasm"

[sinks.out]
type = "stdout"
inputs = ["errors", "nowhere"]
"#,
    );
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 30);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(
        err.contains(
            "bad.toml:6: [transforms.errors] inputs: no component named `ap` (did you mean `app`?)"
        ),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:11: [sinks.out] inputs: no component named `nowhere`"),
        "{err}"
    );
    assert!(err.contains("2 problems found"), "{err}");
}

#[test]
fn validate_reports_every_runtime_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "garbage.wasm", "this is not wasm");
    let p = pipeline(
        dir.path(),
        r#"[sources.app]
type = "file"
path = "missing.log"

[transforms.errors]
type = "wasm"
inputs = ["app"]
plugin = "{plugin:level_filter}"
config = { level = "loud" }

[transforms.broken]
type = "wasm"
inputs = ["app"]
plugin = "garbage.wasm"

[transforms.absent]
type = "wasm"
inputs = ["app"]
plugin = "absent.wasm"

[sinks.out]
type = "file"
path = "no/such/dir/out.jsonl"
inputs = ["errors", "broken", "absent"]
"#,
    );
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 60);
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    let err = stderr(&out);
    for want in [
        "pipeline.toml:3: [sources.app] path: no file at",
        "pipeline.toml:9: [transforms.errors] config: plugin `errors` (",
        "init refused the config: level: unknown level `loud`",
        "pipeline.toml:14: [transforms.broken] plugin:",
        "garbage.wasm is not a loadable Wasm component",
        "pipeline.toml:19: [transforms.absent] plugin: no file at",
        "pipeline.toml:23: [sinks.out] path: directory",
        "5 problems found",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // `run` refuses the same pipeline with the same report.
    let out = run(weir().args(["run", "-c"]).arg(&p), b"", 60);
    assert_eq!(out.status.code(), Some(78));
    assert!(stderr(&out).contains("5 problems found"));
}

#[test]
fn config_typos_name_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "typo.toml", "[sources.app]\ntype = \"stdin\"\nformt = \"json\"\n\n[sinks.out]\ntype = \"stdout\"\ninputs = [\"app\"]\n");
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 30);
    assert_eq!(out.status.code(), Some(78));
    let err = stderr(&out);
    assert!(err.contains("typo.toml:") && err.contains("formt"), "{err}");

    let p = write(
        dir.path(),
        "env.toml",
        "[sources.app]\ntype = \"file\"\npath = \"${WEIR_TEST_NOT_SET}\"\n",
    );
    let out = run(weir().args(["validate", "-c"]).arg(&p), b"", 30);
    assert!(
        stderr(&out).contains("env.toml:3: environment variable `WEIR_TEST_NOT_SET` is not set"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plugin_run_filters_with_level_filter() {
    let input = b"{\"level\":\"info\",\"n\":1}\n{\"level\":\"ERROR\",\"n\":2}\n{\"level\":\"warn\",\"n\":3}\nnope\n";
    let out = plugin_run(&plugin("level_filter"), &["level=warn"], &[], input);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out.stdout);
    let ns: Vec<_> = events.iter().map(|e| e["n"].clone()).collect();
    assert_eq!(
        ns,
        [
            serde_json::json!(2),
            serde_json::json!(3),
            serde_json::Value::Null
        ]
    );
    assert!(events[2]["_error"]
        .as_str()
        .unwrap()
        .starts_with("stdin:4: invalid JSON"));
    assert!(stderr(&out).contains(
        "level_filter (filter): 4 events in, 3 out, 0 failed in the plugin, 1 could not be decoded"
    ));
}

#[test]
fn plugin_run_parses_access_logs() {
    let input = b"10.0.0.1 - - [24/Nov/2025:16:00:01 +0000] \"GET /a HTTP/1.1\" 200 5 \"-\" \"curl/8\"\nnot an access line\n";
    let out = plugin_run(&plugin("parse"), &[], &["--format", "text"], input);
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out.stdout);
    assert_eq!(events[0]["status"], 200);
    assert_eq!(events[0]["user_agent"], "curl/8");
    assert_eq!(events[0]["client"], "10.0.0.1");
    assert!(events[1]["_error"]
        .as_str()
        .unwrap()
        .contains("not an access log line"));
    assert_eq!(events[1]["message"], "not an access line");
}

#[test]
fn plugin_run_redacts_and_samples() {
    let input = b"{\"msg\":\"mail a.b@example.org card 5500-0000-0000-0004\",\"auth\":{\"Token\":\"abc\"}}\n";
    let out = plugin_run(&plugin("redact"), &["fields=token"], &[], input);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = &json_lines(&out.stdout)[0];
    assert_eq!(e["msg"], "mail [EMAIL] card [CARD]");
    assert_eq!(e["auth"]["Token"], "[REDACTED]");

    let input: String = (0..100).map(|i| format!("{{\"i\":{i}}}\n")).collect();
    let out = plugin_run(&plugin("sample"), &["rate=10"], &[], input.as_bytes());
    let kept: Vec<_> = json_lines(&out.stdout)
        .iter()
        .map(|e| e["i"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, (0..100).step_by(10).collect::<Vec<_>>());

    let out = plugin_run(&plugin("sample"), &["rate=0"], &[], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("plugin `sample`")
            && stderr(&out).contains("rate: must be at least 1"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plugin_new_scaffolds_a_plugin_that_builds_tests_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("my-filter");
    let out = run(
        weir()
            .args(["plugin", "new", "my-filter", "--path"])
            .arg(&project),
        b"",
        30,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let target = repo().join("target/scaffold");
    let cargo = |args: &[&str]| {
        let out = run(
            std::process::Command::new(env!("CARGO"))
                .args(args)
                .current_dir(&project)
                .env("CARGO_TARGET_DIR", &target),
            b"",
            600,
        );
        assert!(out.status.success(), "cargo {args:?}: {}", stderr(&out));
        out
    };
    let tested = cargo(&["test"]);
    assert!(String::from_utf8_lossy(&tested.stdout).contains("test result: ok. 1 passed"));
    cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    let wasm = target.join("wasm32-wasip2/release/my_filter.wasm");
    let out = plugin_run(
        &wasm,
        &["value=warn"],
        &[],
        b"{\"level\":\"warn\",\"n\":1}\n{\"level\":\"error\",\"n\":2}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out.stdout);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["n"], 1);

    let again = run(
        weir()
            .args(["plugin", "new", "my-filter", "--path"])
            .arg(&project),
        b"",
        30,
    );
    assert!(stderr(&again).contains("already exists"));
    let bad = run(weir().args(["plugin", "new", "My Filter"]), b"", 30);
    assert!(stderr(&bad).contains("is not a crate name"));
}

/// Scaffolds a plugin in `lang`, runs its own tests, builds it, runs it.
fn scaffold_round_trip(lang: &str, test: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(format!("demo-{lang}"));
    let out = run(
        weir()
            .args([
                "plugin",
                "new",
                &format!("demo-{lang}"),
                "--lang",
                lang,
                "--path",
            ])
            .arg(&project),
        b"",
        30,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sh = |cmd: &[&str]| {
        let out = run(
            std::process::Command::new(cmd[0])
                .args(&cmd[1..])
                .current_dir(&project),
            b"",
            600,
        );
        assert!(
            out.status.success(),
            "{cmd:?} in a new {lang} plugin: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        out
    };
    sh(test);
    sh(&["./build.sh"]);
    let wasm = project.join(format!("demo_{lang}.wasm"));
    let out = plugin_run(
        &wasm,
        &["value=warn"],
        &[],
        b"{\"level\":\"warn\",\"n\":1}\n{\"level\":\"error\",\"n\":2}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let events = json_lines(&out.stdout);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["n"], 1);
}

#[test]
fn plugin_new_python_tests_builds_and_runs() {
    scaffold_round_trip("python", &["python3", "-m", "unittest"]);
}

#[test]
fn plugin_new_js_tests_builds_and_runs() {
    scaffold_round_trip("js", &["node", "--test"]);
}

#[test]
fn graph_draws_the_pipeline_as_dot_mermaid_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        r#"
[sources.app]
type = "generator"

[transforms.keep]
type = "wasm"
inputs = ["app"]
plugin = "{plugin:level_filter}"
on_error = "dead_letter"

[queries.per_minute]
inputs = ["app"]
sql = "SELECT window_start, count(*) AS n FROM app GROUP BY tumble(interval '1 minute')"

[sinks.out]
type = "stdout"
inputs = ["keep", "per_minute"]

[sinks.out_of_band]
type = "blackhole"
inputs = ["keep.dead_letter", "per_minute.late"]

[alerts.busy]
query = "per_minute"
condition = "n > 10"

[receivers.out]
type = "stdout"
"#,
    );
    let graph = |format: &str| {
        let out = run(
            weir().args(["graph", "--format", format, "-c"]).arg(&p),
            b"",
            30,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let dot = graph("dot");
    for edge in [
        r#""app" -> "keep";"#,
        r#""keep" -> "out_of_band" [label="dead_letter", style=dashed];"#,
        r#""per_minute" -> "out_of_band" [label="late", style=dashed];"#,
        r#""per_minute" -> "alert/busy";"#,
        r#""alert/busy" -> "receiver/out";"#,
    ] {
        assert!(dot.contains(edge), "{edge} missing from:\n{dot}");
    }
    assert!(
        dot.contains(r#""out" [shape=folder"#) && dot.contains(r#""receiver/out" [shape=note"#)
    );

    let mermaid = graph("mermaid");
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(
        mermaid.contains(r#"n1["keep<br/>transform: wasm level_filter.wasm"]"#),
        "{mermaid}"
    );
    assert!(mermaid.contains("n1 -. dead_letter .-> n4"), "{mermaid}");
    assert!(mermaid.contains("n0 --> n1"), "{mermaid}");

    let svg = graph("svg");
    assert!(
        svg.contains("<svg") && svg.contains("alert: n &gt; 10"),
        "{svg}"
    );
}

#[test]
fn weir_test_passes_on_the_quickstart_and_fails_with_a_diff_on_a_broken_expectation() {
    let quickstart = repo().join("examples/quickstart/pipeline.toml");
    let out = run(weir().args(["test", "-c"]).arg(&quickstart), b"", 120);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("test level-filter keeps warnings and errors ... ok"),
        "{text}"
    );
    assert!(text.contains("the rule fires for cart ... ok"), "{text}");
    assert!(text.trim_end().ends_with("3 passed, 0 failed"), "{text}");

    // The same tests with two expectations broken and one naming a
    // component that is not there.
    let dir = tempfile::tempdir().unwrap();
    let plugins = repo().join("plugins").display().to_string() + "/";
    let broken = std::fs::read_to_string(&quickstart)
        .unwrap()
        .replace("../../plugins/", &plugins)
        .replace(r#"password = "[REDACTED]""#, r#"password = "[HIDDEN]""#)
        .replace(r#"state = "firing""#, r#"state = "pending""#)
        + "\n[[tests]]\nname = \"typo\"\ninput = \"warnigns\"\nevents = [{ level = \"warn\" }]\n";
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, broken).unwrap();
    let out = run(weir().args(["test", "-c"]).arg(&path), b"", 120);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("test redact masks e-mail addresses and passwords ... FAILED"),
        "{text}"
    );
    assert!(
        text.contains(r#"    - {"msg":"reset for [EMAIL]","password":"[HIDDEN]"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"    + {"msg":"reset for [EMAIL]","password":"[REDACTED]"}"#),
        "{text}"
    );
    assert!(text.contains("missing {\"alertname\": \"service_degraded\", \"service\": \"cart\", \"state\": \"pending\"}"), "{text}");
    assert!(
        text.contains("firing {\"alertname\": \"service_degraded\""),
        "{text}"
    );
    assert!(
        text.contains("`warnigns` is not a transform or query (did you mean `warnings`?)"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("1 passed, 3 failed"), "{text}");
}

#[test]
fn long_work_shows_a_progress_bar_on_a_terminal_and_nothing_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.log");
    let line = "{\"service\":\"cart\",\"level\":\"info\",\"latency_ms\":12,\"msg\":\"request completed in good time\"}\n";
    std::fs::write(&big, line.repeat(200_000)).unwrap();
    let sql = "SELECT window_start, count(*) AS n FROM events GROUP BY tumble(interval '1 hour')";
    let weir_bin = env!("CARGO_BIN_EXE_weir");
    let p = pipeline(
        dir.path(),
        &format!(
            "[sources.big]\ntype = \"file\"\npath = \"{}\"\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"big\"]\n",
            big.display()
        ),
    );

    // On a terminal: the bar's last state stays on screen.
    let script = dir.path().join("both.sh");
    std::fs::write(
        &script,
        format!(
            "{weir_bin} sql \"{sql}\" {} > /dev/null\necho SQL-DONE\nWEIR_LOG=error {weir_bin} run -c {}\necho RUN-DONE\nsleep 60\n",
            big.display(),
            p.display()
        ),
    )
    .unwrap();
    let cmd = format!("sh {}", script.display());
    let tmux = Tmux::start(&format!("weir-progress-{}", std::process::id()), &cmd);
    let mut screen = String::new();
    eventually(60, "both commands", || {
        screen = tmux.screen();
        screen.contains("RUN-DONE")
    });
    let bars: Vec<&str> = screen.lines().filter(|l| l.contains("ETA")).collect();
    assert_eq!(bars.len(), 2, "{screen}");
    let total = format!(
        "{0:.2} MiB/{0:.2} MiB",
        (line.len() * 200_000) as f64 / (1 << 20) as f64
    );
    assert!(
        bars.iter().all(|b| b.contains(&total)),
        "{total} in:\n{screen}"
    );
    assert!(bars[0].contains("200000 events"), "{screen}");

    // Piped: nothing but the summary.
    let out = run(weir().args(["sql", sql]).arg(&big), b"", 60);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("ETA") && !stderr(&out).contains('\u{1b}'),
        "{}",
        stderr(&out)
    );
}
