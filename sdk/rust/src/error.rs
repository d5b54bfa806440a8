//! The error a plugin returns, for one event or for its configuration.

/// A message for the person running the pipeline.
///
/// ```
/// let e: weir_sdk::Error = "no `level` field".into();
/// assert_eq!(e.to_string(), "no `level` field");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_string())
    }
}

impl From<weir_layout::LayoutError> for Error {
    fn from(e: weir_layout::LayoutError) -> Self {
        Error(e.to_string())
    }
}
