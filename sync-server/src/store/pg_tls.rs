//! TLS to PostgreSQL with rustls, honouring the connection string's `sslmode` as libpq does:
//! `disable` (plain), `prefer` (the default: TLS when the server offers it), `require` (TLS, the
//! certificate checked only against a configured CA), `verify-ca` (the chain checked against the
//! system's roots and the configured CA) and `verify-full` (the chain and the host name).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::StoreError;

/// What `sslmode` asks of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Encryption only (`prefer`, `require` without a CA).
    Nothing,
    /// The chain, not the name (`verify-ca`, or `require` with a CA).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The connection string for the PostgreSQL client (which knows `disable`, `prefer` and
/// `require`) and the verification `sslmode` asks for.
pub fn sslmode(url: &str, has_ca: bool) -> (String, Verify) {
    let mode = url
        .split(['&', ' ', '?'])
        .find_map(|p| p.strip_prefix("sslmode="))
        .unwrap_or("prefer");
    let verify = match mode {
        "verify-full" => Verify::Full,
        "verify-ca" => Verify::Chain,
        _ if has_ca => Verify::Chain,
        _ => Verify::Nothing,
    };
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    (url, verify)
}

/// The TLS connector for `verify`, trusting the system's roots and `ca_pem`.
pub fn connector(
    verify: Verify,
    ca_pem: Option<&[u8]>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Tls(e.to_string()))?;
    let config = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptionOnly(provider)))
            .with_no_client_auth(),
        Verify::Chain | Verify::Full => {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if let Some(pem) = ca_pem {
                use rustls::pki_types::pem::PemObject;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| StoreError::Tls(format!("the CA file: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| StoreError::Tls(format!("the CA file: {e}")))?;
                }
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| StoreError::Tls(e.to_string()))?;
            let verifier: Arc<dyn ServerCertVerifier> = if verify == Verify::Full {
                webpki
            } else {
                Arc::new(AnyName(webpki))
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `sslmode=require` without a CA, as libpq: the connection is encrypted, the certificate not
/// checked (handshake signatures still are).
#[derive(Debug)]
struct EncryptionOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must verify; the name may be any.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_from_both_forms() {
        assert_eq!(
            sslmode("host=db user=fsm sslmode=verify-full", false),
            ("host=db user=fsm sslmode=require".into(), Verify::Full)
        );
        assert_eq!(
            sslmode("postgresql://fsm@db/fsm?sslmode=verify-ca", false).1,
            Verify::Chain
        );
        assert_eq!(sslmode("host=db", false).1, Verify::Nothing);
        assert_eq!(sslmode("host=db sslmode=require", true).1, Verify::Chain);
    }
}
