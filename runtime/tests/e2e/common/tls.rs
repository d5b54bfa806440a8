//! Certificates made for a test: a CA, a server certificate for 127.0.0.1
//! and a client certificate, as PEM files (`ca.crt`, `server.crt`,
//! `server.key`, `client.crt`, `client.key`).

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::path::Path;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as
/// PEM files in `dir`.
pub fn certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Names of their own: a leaf named like its CA looks self-signed.
    ca.distinguished_name
        .push(DnType::CommonName, "weir test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, file: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        let cert = params.signed_by(&key, &issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    };
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    leaf(vec!["127.0.0.1".into(), "localhost".into()], "server");
    leaf(vec!["client.weir.test".into()], "client");
}
