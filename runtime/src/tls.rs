//! TLS, one setting for every listener and every client, on rustls (ring).
//!
//! A listener (`http`, `prometheus_remote_write`, `syslog` over TCP,
//! `fluent_forward`, the admin API) serves TLS with `crt_file` and
//! `key_file`; with `ca_file` too, every client must present a certificate
//! signed by it. A client (the HTTP sinks, `prometheus_scrape`, the Slack
//! and webhook receivers) trusts
//! `ca_file` besides the system's roots, presents `crt_file`/`key_file` when
//! the server asks, and checks the server's certificate unless `verify =
//! false`.
//!
//! ```toml
//! [sources.agents]
//! type = "fluent_forward"
//! address = "0.0.0.0:24224"
//! tls = { crt_file = "/etc/weir/server.crt", key_file = "/etc/weir/server.key" }
//!
//! [sinks.es]
//! type = "elasticsearch"
//! endpoint = "https://es.internal:9200"
//! tls = { ca_file = "/etc/weir/internal-ca.crt" }
//! ```

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `tls` setting of a listener or a client.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain this side presents (PEM).
    pub crt_file: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Listener: clients must present a certificate signed by one of these.
    /// Client: servers signed by these are trusted, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client: check the server's certificate and name (default true).
    #[serde(default = "yes")]
    pub verify: bool,
}

fn yes() -> bool {
    true
}

/// What is wrong with a `tls` setting: the key and why.
pub type TlsError = (&'static str, String);

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| (key, format!("cannot read {}: {e}", path.display())))
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            (
                key,
                format!("{}: not PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err((key, format!("{}: no certificate in it", path.display())));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key_file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        (
            "key_file",
            format!("{}: no private key: {e}", path.display()),
        )
    })
}

/// What a client's `tls` setting loaded: trusted roots, its own
/// certificate, whether the server's is checked.
#[derive(Clone)]
pub struct ClientTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    verify: bool,
}

impl ClientTls {
    pub fn apply(&self, b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        let b = b.tls_certs_merge(self.roots.clone());
        let b = match &self.identity {
            Some(id) => b.identity(id.clone()),
            None => b,
        };
        b.tls_danger_accept_invalid_certs(!self.verify)
    }

    /// [`ClientTls::apply`] for a blocking client.
    pub fn apply_blocking(
        &self,
        b: reqwest::blocking::ClientBuilder,
    ) -> reqwest::blocking::ClientBuilder {
        let b = b.tls_certs_merge(self.roots.clone());
        let b = match &self.identity {
            Some(id) => b.identity(id.clone()),
            None => b,
        };
        b.tls_danger_accept_invalid_certs(!self.verify)
    }
}

impl TlsConfig {
    /// The same setting with relative paths taken from `base` (the
    /// pipeline file's directory).
    pub fn resolved(&self, base: &Path) -> TlsConfig {
        let at = |p: &Option<PathBuf>| p.as_ref().map(|p| base.join(p));
        TlsConfig {
            crt_file: at(&self.crt_file),
            key_file: at(&self.key_file),
            ca_file: at(&self.ca_file),
            verify: self.verify,
        }
    }

    /// The acceptor of a listener.
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
        crate::install_tls_provider();
        let (Some(crt), Some(key)) = (&self.crt_file, &self.key_file) else {
            let what = "a listener needs crt_file and key_file".to_string();
            return Err(("crt_file", what));
        };
        let chain = certs("crt_file", crt)?;
        let key = private_key(key)?;
        let builder = rustls::ServerConfig::builder();
        let builder = match &self.ca_file {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in certs("ca_file", ca)? {
                    roots
                        .add(c)
                        .map_err(|e| ("ca_file", format!("{}: {e}", ca.display())))?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                    .build()
                    .map_err(|e| ("ca_file", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| ("key_file", format!("the key does not fit crt_file: {e}")))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// Loads what a client presents and trusts.
    pub fn client(&self) -> Result<ClientTls, TlsError> {
        crate::install_tls_provider();
        let mut roots = Vec::new();
        if let Some(ca) = &self.ca_file {
            let pem = read("ca_file", ca)?;
            roots = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ("ca_file", format!("{}: {e}", ca.display())))?;
        }
        let identity = match (&self.crt_file, &self.key_file) {
            (Some(crt), Some(key)) => {
                let mut pem = read("crt_file", crt)?;
                pem.extend(read("key_file", key)?);
                let id = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| ("crt_file", format!("{}: {e}", crt.display())))?;
                Some(id)
            }
            (None, None) => None,
            _ => return Err(("crt_file", "crt_file and key_file go together".into())),
        };
        Ok(ClientTls {
            roots,
            identity,
            verify: self.verify,
        })
    }
}
