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

pub fn run(name: &str, path: Option<PathBuf>, sdk: Option<PathBuf>) -> Result<ExitCode> {
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
    let sdk = match sdk.or_else(default_sdk) {
        Some(s) if s.join("Cargo.toml").is_file() => s.canonicalize().unwrap_or(s),
        Some(s) => bail!("--sdk {}: no Cargo.toml there", s.display()),
        None => bail!("cannot find weir's Rust SDK; pass --sdk PATH/TO/weir/sdk/rust"),
    };
    let sdk = sdk.display().to_string().replace('\\', "/");
    let lib = name.replace('-', "_");
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let write = |file: &str, text: String| -> Result<()> {
        std::fs::write(dir.join(file), text).with_context(|| format!("writing {file}"))
    };
    write(
        "Cargo.toml",
        CARGO_TOML.replace("{name}", name).replace("{sdk}", &sdk),
    )?;
    write("src/lib.rs", LIB_RS.replace("{name}", name))?;
    write(".gitignore", "target/\n".into())?;
    write(
        "README.md",
        README.replace("{name}", name).replace("{lib}", &lib),
    )?;
    println!("created {} — a filter plugin. Next:", dir.display());
    println!("  cd {} && cargo test", dir.display());
    println!("  cargo build --release --target wasm32-wasip2");
    println!("  weir plugin run target/wasm32-wasip2/release/{lib}.wasm < events.jsonl");
    Ok(ExitCode::SUCCESS)
}

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
