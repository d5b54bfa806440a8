//! `weir plugin new`: a Rust plugin project that builds and tests as generated.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The SDK this binary was built with, if the source tree is still there.
fn default_sdk() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/rust");
    p.join("Cargo.toml")
        .is_file()
        .then(|| p.canonicalize().unwrap_or(p))
}

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

pub fn run(
    name: &str,
    lang: Lang,
    path: Option<PathBuf>,
    sdk: Option<PathBuf>,
) -> Result<ExitCode> {
    let valid = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!("`{name}` is not a crate name: use lowercase letters, digits, `-` and `_`, starting with a letter");
    }
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!(
            "{} already exists; pick another name or --path",
            dir.display()
        );
    }
    let lib = name.replace('-', "_");
    let fill = |t: &str| t.replace("{name}", name).replace("{lib}", &lib);
    let files: Vec<(&str, String)> = match lang {
        Lang::Rust => {
            let sdk = match sdk.or_else(default_sdk) {
                Some(s) if s.join("Cargo.toml").is_file() => s.canonicalize().unwrap_or(s),
                Some(s) => bail!("--sdk {}: no Cargo.toml there", s.display()),
                None => bail!("cannot find weir's Rust SDK; pass --sdk PATH/TO/weir/sdk/rust"),
            };
            let sdk = sdk.display().to_string().replace('\\', "/");
            vec![
                ("Cargo.toml", fill(CARGO_TOML).replace("{sdk}", &sdk)),
                ("src/lib.rs", fill(LIB_RS)),
                (".gitignore", "target/\n".into()),
                ("README.md", fill(README)),
            ]
        }
        Lang::Python => vec![
            ("wit/plugin.wit", WIT.into()),
            ("weir_sdk.py", PY_SDK.into()),
            ("app.py", fill(PY_APP)),
            ("test_app.py", PY_TEST.into()),
            ("build.sh", fill(PY_BUILD)),
            (".gitignore", "__pycache__/\n*.wasm\n".into()),
            ("README.md", fill(PY_README)),
        ],
        Lang::Js => vec![
            ("wit/plugin.wit", WIT.into()),
            ("weir.js", JS_SDK.into()),
            ("plugin.js", JS_PLUGIN.into()),
            ("app.js", JS_APP.into()),
            ("plugin.test.js", JS_TEST.into()),
            ("package.json", fill(JS_PACKAGE)),
            ("build.sh", fill(JS_BUILD)),
            (".gitignore", "node_modules/\n*.wasm\n".into()),
            ("README.md", fill(JS_README)),
        ],
    };
    for (file, text) in &files {
        let p = dir.join(file);
        std::fs::create_dir_all(p.parent().expect("files are under the project"))
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        if file.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    let (test, build, wasm) = match lang {
        Lang::Rust => (
            "cargo test",
            "cargo build --release --target wasm32-wasip2",
            format!("target/wasm32-wasip2/release/{lib}.wasm"),
        ),
        Lang::Python => ("python3 -m unittest", "./build.sh", format!("{lib}.wasm")),
        Lang::Js => ("node --test", "./build.sh", format!("{lib}.wasm")),
    };
    println!("created {} — a filter plugin. Next:", dir.display());
    println!("  cd {} && {test}", dir.display());
    println!("  {build}");
    println!("  weir plugin run {wasm} < events.jsonl");
    Ok(ExitCode::SUCCESS)
}

const WIT: &str = include_str!("../../../wit/plugin.wit");
const PY_SDK: &str = include_str!("../../../sdk/python/weir_sdk.py");
const JS_SDK: &str = include_str!("../../../sdk/js/weir.js");

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
weir-sdk = { path = "{sdk}" }

[profile.release]
lto = true
strip = true

# A plugin is its own project, even when created inside another workspace.
[workspace]
"#;

const LIB_RS: &str = r#"//! {name}: a weir filter plugin.
//!
//! Keeps events whose `field` equals `value` (by default: level = error).

use weir_sdk::{export_filter, Config, Event, Filter, Result};

pub struct Plugin {
    field: String,
    value: String,
}

impl Filter for Plugin {
    fn new(config: &Config) -> Result<Self> {
        config.reject_unknown(&["field", "value"])?;
        Ok(Plugin {
            field: config.get_or("field", "level").to_string(),
            value: config.get_or("value", "error").to_string(),
        })
    }

    fn keep(&mut self, event: &Event) -> Result<bool> {
        Ok(event.get_str(&self.field) == Some(self.value.as_str()))
    }
}

export_filter!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_sdk::{testing, BatchBuf};

    #[test]
    fn keeps_only_matching_events() {
        let mut batch = BatchBuf::new();
        for level in ["info", "error", "warn"] {
            batch.log(0).field("level", level).finish().unwrap();
        }
        let run = testing::filter::<Plugin>(&[], &batch).unwrap();
        assert_eq!(run.kept, [false, true, false]);

        let run = testing::filter::<Plugin>(&[("value", "warn")], &batch).unwrap();
        assert_eq!(run.kept, [false, false, true]);
    }
}
"#;

const README: &str = r#"# {name}

A weir filter plugin.

    cargo test                                        # the logic, natively
    rustup target add wasm32-wasip2                   # once
    cargo build --release --target wasm32-wasip2      # the plugin
    weir plugin run target/wasm32-wasip2/release/{lib}.wasm --config value=warn < events.jsonl

In a pipeline:

    [transforms.{lib}]
    type = "wasm"
    inputs = ["app"]
    plugin = "path/to/target/wasm32-wasip2/release/{lib}.wasm"
    config = { field = "level", value = "error" }
"#;

const PY_APP: &str = r#""""{name}: a weir filter plugin.

Keeps events whose `field` equals `value` (by default: level = error).
"""

import weir_sdk


class Plugin(weir_sdk.Filter):
    def __init__(self, config):
        unknown = sorted(set(config) - {"field", "value"})
        if unknown:
            raise ValueError(f"unknown setting `{unknown[0]}` (known: field, value)")
        self.field = config.get("field", "level")
        self.value = config.get("value", "error")

    def keep(self, event):
        return event.get(self.field) == self.value


WitWorld = weir_sdk.export_filter(Plugin)
"#;

const PY_TEST: &str = r#"import unittest

import weir_sdk
from app import Plugin


class PluginTest(unittest.TestCase):
    def test_keeps_only_matching_events(self):
        batch = weir_sdk.encode([{"level": "info"}, {"level": "error"}, {"level": "warn"}])
        keep = Plugin({}).keep
        self.assertEqual([keep(e) for e in weir_sdk.events(batch)], [False, True, False])
        keep = Plugin({"value": "warn"}).keep
        self.assertEqual([keep(e) for e in weir_sdk.events(batch)], [False, False, True])

    def test_refuses_unknown_settings(self):
        with self.assertRaises(ValueError):
            Plugin({"colour": "red"})


if __name__ == "__main__":
    unittest.main()
"#;

const PY_BUILD: &str = r#"#!/usr/bin/env bash
# Builds {lib}.wasm with componentize-py (installed from PyPI if missing).
set -euo pipefail
cd "$(dirname "$0")"
command -v componentize-py >/dev/null || python3 -m pip install --quiet "componentize-py==0.25.1"
componentize-py -d wit -w filter componentize app -p . -o {lib}.wasm
"#;

const PY_README: &str = r#"# {name}

A weir filter plugin in Python.

    python3 -m unittest          # the logic, in plain Python
    ./build.sh                   # {lib}.wasm, with componentize-py
    weir plugin run {lib}.wasm --config value=warn < events.jsonl

`weir_sdk.py` reads events from weir's packed batches; `wit/` is the contract.
"#;

const JS_PLUGIN: &str = r#"// The filter's logic, kept apart from the exports so it can be tested in node.
export class Plugin {
  constructor(config) {
    for (const key of config.keys()) {
      if (key !== "field" && key !== "value") throw `unknown setting \`${key}\` (known: field, value)`;
    }
    this.field = config.get("field") ?? "level";
    this.value = config.get("value") ?? "error";
  }

  keep(event) {
    return event.get(this.field) === this.value;
  }
}
"#;

const JS_APP: &str = r#"// The component's exports: `init` and `filter` of the weir `filter` world.
import { filterBatch } from "./weir.js";
import { Plugin } from "./plugin.js";

let plugin = new Plugin(new Map());

export function init(config) {
  plugin = new Plugin(new Map(config));
}

export function filter(batch) {
  return filterBatch(batch, (event) => plugin.keep(event));
}
"#;

const JS_TEST: &str = r#"import { test } from "node:test";
import assert from "node:assert/strict";
import { encode, events } from "./weir.js";
import { Plugin } from "./plugin.js";

test("keeps only matching events", () => {
  const batch = encode([{ level: "info" }, { level: "error" }, { level: "warn" }]);
  const keep = (config) => [...events(batch)].map((e) => new Plugin(new Map(config)).keep(e));
  assert.deepEqual(keep([]), [false, true, false]);
  assert.deepEqual(keep([["value", "warn"]]), [false, false, true]);
});

test("refuses unknown settings", () => {
  assert.throws(() => new Plugin(new Map([["colour", "red"]])));
});
"#;

const JS_PACKAGE: &str = r#"{
  "name": "{name}",
  "private": true,
  "type": "module",
  "scripts": {
    "test": "node --test",
    "build": "./build.sh"
  },
  "devDependencies": {
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/preview2-shim": "0.25.0"
  }
}
"#;

const JS_BUILD: &str = r#"#!/usr/bin/env bash
# Builds {lib}.wasm with componentize-js (installed from npm if missing).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --silent
npx componentize-js app.js --wit wit --world-name filter --disable http --disable fetch-event -o {lib}.wasm
"#;

const JS_README: &str = r#"# {name}

A weir filter plugin in JavaScript.

    node --test                  # the logic, in node
    ./build.sh                   # {lib}.wasm, with componentize-js
    weir plugin run {lib}.wasm --config value=warn < events.jsonl

`weir.js` reads events from weir's packed batches; `wit/` is the contract.
"#;
