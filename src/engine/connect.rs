//! Opening one connection to the target: TCP, then (for a proxy) a CONNECT tunnel or an
//! absolute-form route, then TLS for https. The target URL is fixed for a whole probe, so
//! the route is decided once, in [`Connector::new`], not per request.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Uri};
use hyper_tls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

/// The stream a worker's HTTP/1.1 connection runs on: plain TCP or TLS over TCP (the TCP
/// may be a CONNECT tunnel through a proxy).
pub(crate) type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Which proxy to use, if any. The CLI fills it from the environment
/// ([`ProxySettings::from_env`]); tests pass an explicit proxy, because environment
/// variables are process-global and tests run in parallel.
#[derive(Clone, Default)]
pub struct ProxySettings {
    matcher: Option<Arc<Matcher>>,
}

impl fmt::Debug for ProxySettings {
    // The proxy URL may hold a proxy password: never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxySettings")
            .field("configured", &self.matcher.is_some())
            .finish()
    }
}

impl ProxySettings {
    /// No proxy: connect directly.
    pub fn none() -> ProxySettings {
        ProxySettings { matcher: None }
    }

    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their lowercase
    /// forms), read the way curl reads them.
    pub fn from_env() -> ProxySettings {
        ProxySettings {
            matcher: Some(Arc::new(Matcher::from_env())),
        }
    }

    /// The host of the proxy that requests to `target` go through, if any: the first
    /// hop of their bytes.
    pub fn proxy_host_for(&self, target: &Uri) -> Option<String> {
        let intercept = self.matcher.as_ref()?.intercept(target)?;
        intercept.uri().host().map(str::to_string)
    }

    /// Explicit values, with the meaning of the environment variables of the same names.
    pub fn explicit(
        http_proxy: Option<&str>,
        https_proxy: Option<&str>,
        no_proxy: Option<&str>,
    ) -> ProxySettings {
        let mut b = Matcher::builder();
        if let Some(v) = http_proxy {
            b = b.http(v);
        }
        if let Some(v) = https_proxy {
            b = b.https(v);
        }
        if let Some(v) = no_proxy {
            b = b.no(v);
        }
        ProxySettings {
            matcher: Some(Arc::new(b.build())),
        }
    }
}

/// How requests reach the target.
#[derive(Clone)]
enum Route {
    /// Straight to a plain-http target.
    Plain(HttpConnector),
    /// Straight to an https target.
    Direct(HttpsConnector<HttpConnector>),
    /// https through an http proxy: CONNECT tunnel, then TLS to the target inside it.
    Tunnel(HttpsConnector<Tunnel<HttpConnector>>),
    /// Plain http through an http proxy: TCP to the proxy; requests carry the
    /// absolute-form URI (and the proxy's credentials, if any).
    HttpProxy { tcp: HttpConnector, proxy: Uri },
}

/// Opens connections to one target.
#[derive(Clone)]
pub(crate) struct Connector {
    route: Route,
    target: Uri,
    connect_timeout: Duration,
    /// The proxy, for verbose output and errors (host:port only, no credentials).
    pub(crate) proxy_label: Option<String>,
}

/// What a request needs to know about the route.
pub(crate) struct RouteInfo {
    /// Requests go to a plain-http proxy: absolute-form URI.
    pub absolute_form: bool,
    /// `Proxy-Authorization` for a plain-http proxy with credentials.
    pub proxy_auth: Option<HeaderValue>,
}

impl Connector {
    /// Decides the route to `target` and prepares TLS (system roots plus `ca_pem`).
    pub(crate) fn new(
        target: &Uri,
        proxy: &ProxySettings,
        ca_pem: Option<&[u8]>,
        connect_timeout: Duration,
    ) -> Result<(Connector, RouteInfo), String> {
        // The PEM is checked even for an http target, so a bad file is always reported;
        // the TLS context (which loads the system roots, a few MB) only for https.
        let extra_root = match ca_pem {
            Some(pem) => Some(
                native_tls::Certificate::from_pem(pem)
                    .map_err(|e| format!("CA certificate: {e}"))?,
            ),
            None => None,
        };
        let tls = || -> Result<native_tls::TlsConnector, String> {
            let mut b = native_tls::TlsConnector::builder();
            if let Some(cert) = &extra_root {
                b.add_root_certificate(cert.clone());
            }
            // HTTP/1.1 only: no ALPN is offered, so the server cannot pick h2.
            b.build().map_err(|e| format!("TLS setup failed: {e}"))
        };
        let https = target.scheme_str() == Some("https");

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(connect_timeout));

        let intercept = proxy.matcher.as_ref().and_then(|m| m.intercept(target));
        let mut info = RouteInfo {
            absolute_form: false,
            proxy_auth: None,
        };
        let (route, proxy_label) = match intercept {
            None if !https => (Route::Plain(tcp), None),
            None => (
                Route::Direct(HttpsConnector::from((tcp, tls()?.into()))),
                None,
            ),
            Some(i) => {
                let proxy_uri = i.uri().clone();
                if proxy_uri.scheme_str() != Some("http") {
                    return Err(format!(
                        "proxy scheme `{}` is not supported: use an http:// proxy",
                        proxy_uri.scheme_str().unwrap_or("")
                    ));
                }
                let label = proxy_uri
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                if https {
                    let mut tunnel = Tunnel::new(proxy_uri, tcp);
                    if let Some(auth) = i.basic_auth() {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    (
                        Route::Tunnel(HttpsConnector::from((tunnel, tls()?.into()))),
                        Some(label),
                    )
                } else {
                    info.absolute_form = true;
                    info.proxy_auth = i.basic_auth().cloned();
                    (
                        Route::HttpProxy {
                            tcp,
                            proxy: proxy_uri,
                        },
                        Some(label),
                    )
                }
            }
        };
        Ok((
            Connector {
                route,
                target: target.clone(),
                connect_timeout,
                proxy_label,
            },
            info,
        ))
    }

    /// One new connection (TCP, tunnel, TLS), within the connect timeout.
    pub(crate) async fn connect(&self) -> Result<Stream, String> {
        let fut = async {
            match self.route.clone() {
                Route::Plain(mut c) => c
                    .call(self.target.clone())
                    .await
                    .map(MaybeHttpsStream::Http)
                    .map_err(|e| error_chain(&e)),
                Route::Direct(mut c) => c
                    .call(self.target.clone())
                    .await
                    .map_err(|e| error_chain(&*e)),
                Route::Tunnel(mut c) => c
                    .call(self.target.clone())
                    .await
                    .map_err(|e| error_chain(&*e)),
                Route::HttpProxy { mut tcp, proxy } => tcp
                    .call(proxy)
                    .await
                    .map(MaybeHttpsStream::Http)
                    .map_err(|e| error_chain(&e)),
            }
        };
        match tokio::time::timeout(self.connect_timeout, fut).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(match &self.proxy_label {
                Some(p) => format!("connect via proxy {p} failed: {e}"),
                None => format!("connect failed: {e}"),
            }),
            Err(_) => Err(format!(
                "connect timed out after {}",
                human(self.connect_timeout)
            )),
        }
    }
}

/// An error and its sources on one line, without repeating a source that the outer
/// message already contains.
pub(crate) fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// `1.5s`, `250ms`.
pub(crate) fn human(d: Duration) -> String {
    if d.as_millis() < 1000 || !d.as_millis().is_multiple_of(1000) {
        if d.as_millis() >= 1000 {
            format!("{:.1}s", d.as_secs_f64())
        } else {
            format!("{}ms", d.as_millis())
        }
    } else {
        format!("{}s", d.as_secs())
    }
}
