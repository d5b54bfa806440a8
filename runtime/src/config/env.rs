//! `${NAME}` interpolation, done on the text before parsing so it works in
//! any value. An unset variable is an error, never an empty string: a
//! missing secret must not turn into an empty webhook URL.

/// `(line, message)` for each variable that could not be put in.
pub type Unset = Vec<(usize, String)>;

/// The interpolated text and the values put in it (secrets, as far as
/// weir knows), or `(line, message)` for every unset variable.
pub fn interpolate(raw: &str) -> Result<(String, Vec<String>), Unset> {
    let mut out = String::with_capacity(raw.len());
    let mut values = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in raw.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at..];
            if let Some(literal) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = literal;
            } else if let Some(body) = after.strip_prefix("${") {
                match body.find('}') {
                    Some(end) => {
                        let name = &body[..end];
                        match std::env::var(name) {
                            Ok(v) => {
                                out.push_str(&v);
                                values.push(v);
                            }
                            Err(_) => errors.push((i + 1, format!("environment variable `{name}` is not set (used as ${{{name}}})"))),
                        }
                        rest = &body[end + 1..];
                    }
                    None => {
                        errors.push((i + 1, "`${` without a closing `}`".to_string()));
                        rest = "";
                    }
                }
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    if errors.is_empty() {
        Ok((out, values))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_set_variables_and_reports_unset_ones() {
        // SAFETY: no other test reads or writes this variable.
        unsafe { std::env::set_var("WEIR_TEST_HOOK", "https://hooks.example/x") };
        let (text, values) =
            interpolate("url = \"${WEIR_TEST_HOOK}\"\ncost = \"$5 $${literal}\"\n").unwrap();
        assert_eq!(
            text,
            "url = \"https://hooks.example/x\"\ncost = \"$5 ${literal}\"\n"
        );
        assert_eq!(values, ["https://hooks.example/x"]);
        let errs = interpolate("a = 1\nb = \"${WEIR_TEST_UNSET_VAR}\"\n").unwrap_err();
        assert_eq!(errs[0].0, 2);
        assert!(errs[0].1.contains("WEIR_TEST_UNSET_VAR"));
    }
}
