//! A private certificate authority for the TLS tests: server certificates
//! for `localhost` and `127.0.0.1`, trusted only through the CA's PEM file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and one server certificate it signed, written as PEM files to a
/// temporary directory (removed when dropped).
pub struct TestPki {
    dir: tempfile::TempDir,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// A new CA and a server certificate for `localhost` and `127.0.0.1`.
    pub fn new() -> TestPki {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Journey test CA");
        let ca = ca_params.self_signed(&ca_key).expect("a self-signed CA");

        let server_key = KeyPair::generate().expect("a server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .expect("a server certificate");

        let dir = tempfile::tempdir().expect("a directory for the PEM files");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("writing ca.pem");
        std::fs::write(dir.path().join("server.pem"), server.pem()).expect("writing server.pem");
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem())
            .expect("writing server.key");
        TestPki {
            dir,
            server_cert: server.der().clone(),
            server_key: server_key.serialize_der(),
        }
    }

    /// The directory holding the PEM files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM): what clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn server_cert_file(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// The server's private key (PKCS#8 PEM).
    pub fn server_key_file(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A rustls server configuration presenting the server certificate.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("default TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![self.server_cert.clone()], key)
        .expect("a server TLS config");
        Arc::new(config)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}
