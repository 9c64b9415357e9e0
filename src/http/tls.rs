//! The TLS settings of the workers' clients: the roots they trust, or the caller's own rustls
//! `ClientConfig`, built once when the engine starts and shared by every worker thread.

use std::sync::Arc;

use rustls::{
    pki_types::{pem::PemObject, CertificateDer},
    ClientConfig, RootCertStore,
};

/// The ALPN protocols offered when the caller's config names none: HTTP/2 first, so that a
/// server that speaks it multiplexes the transfers to it over one connection.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// What [`EngineBuilder`](crate::EngineBuilder)'s TLS options collected.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOptions {
    /// The caller's own config (`tls_config`).
    config: Option<ClientConfig>,
    /// Roots added with `add_root_certificate`, parsed.
    roots: Vec<CertificateDer<'static>>,
    /// Why a PEM given to `add_root_certificate` was refused: the engine does not start.
    refused: Option<String>,
}

/// Why the TLS options keep the engine from starting: the builder method, and a sentence.
pub(crate) type Refused = (&'static str, String);

impl TlsOptions {
    pub(crate) fn set_config(&mut self, config: ClientConfig) {
        self.config = Some(config);
    }

    /// Parse `pem` (one or more `CERTIFICATE` sections; other sections are skipped). An error
    /// is kept for `build`: the builder's methods chain.
    pub(crate) fn add_root_pem(&mut self, pem: &[u8]) {
        let mut found = 0usize;
        for cert in CertificateDer::pem_slice_iter(pem) {
            match cert {
                Ok(cert) => {
                    self.roots.push(cert);
                    found += 1;
                }
                Err(e) => {
                    self.refuse(format!("the PEM text cannot be read: {e}"));
                    return;
                }
            }
        }
        if found == 0 {
            self.refuse("the PEM text holds no CERTIFICATE section".into());
        }
    }

    fn refuse(&mut self, reason: String) {
        self.refused.get_or_insert(reason);
    }

    /// The config every worker's connector uses: the caller's (offering h2 and http/1.1 by
    /// ALPN when it names no protocol), or one on the ring provider that trusts the bundled
    /// Mozilla roots, the operating system's (feature `native-roots`) and the added ones.
    pub(crate) fn build(self) -> Result<Arc<ClientConfig>, Refused> {
        if let Some(reason) = self.refused {
            return Err(("add_root_certificate", reason));
        }
        if let Some(mut config) = self.config {
            if !self.roots.is_empty() {
                return Err((
                    "add_root_certificate",
                    "the roots of a config given to tls_config are its own: add the \
                     certificate to that config's root store instead"
                        .into(),
                ));
            }
            if config.alpn_protocols.is_empty() {
                config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
            }
            return Ok(Arc::new(config));
        }
        let mut store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        #[cfg(feature = "native-roots")]
        {
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "an operating system root certificate could not be read");
            }
            let (added, ignored) = store.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "operating system root certificates");
        }
        for cert in self.roots {
            store.add(cert).map_err(|e| {
                (
                    "add_root_certificate",
                    format!(
                        "the certificate cannot be a root: {}",
                        super::debug_as_words(&e.to_string())
                    ),
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ("tls_config", format!("the TLS provider refused: {e}")))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pem_is_refused_with_a_sentence() {
        for (pem, reason) in [
            (&b"not a certificate"[..], "holds no CERTIFICATE section"),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "cannot be read",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "cannot be a root",
            ),
        ] {
            let mut options = TlsOptions::default();
            options.add_root_pem(pem);
            let (option, text) = options.build().unwrap_err();
            assert_eq!(option, "add_root_certificate");
            assert!(text.contains(reason), "{text}");
            assert!(!text.contains('{') && !text.contains("Some("), "{text}");
        }
    }

    #[test]
    fn alpn_offers_h2_then_http1_unless_the_caller_chose() {
        let fresh = TlsOptions::default().build().unwrap();
        assert_eq!(fresh.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let own = || {
            ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        };
        let mut options = TlsOptions::default();
        options.set_config(own());
        assert_eq!(options.build().unwrap().alpn_protocols.len(), 2);
        let mut http1 = own();
        http1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut options = TlsOptions::default();
        options.set_config(http1);
        assert_eq!(
            options.build().unwrap().alpn_protocols,
            [b"http/1.1".to_vec()]
        );
    }
}
