//! The router and the listener. The router joins the API and the console in route groups with
//! their own concurrency budget (tower: load-shed + global concurrency limit + timeout): a flood
//! on one group is refused with 503 at once instead of queueing, and cannot starve another: the
//! filters' revocation feed above all. The listener: plain HTTP/1.1, or TLS (rustls) with optional
//! client certificates whose URI and DNS names become the connection's `PeerIdentity` (mTLS
//! callers). Connections are bounded (`limits.max_connections`), and a client that sends its
//! headers too slowly is cut off.

use crate::api;
use crate::app::App;
use crate::auth::{PeerAddr, PeerIdentity};
use crate::config::Tls;
use crate::console;
use crate::error::ApiError;
use crate::handler::counted;
use axum::error_handling::HandleErrorLayer;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower::ServiceExt;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the sidecar serves: the filters' endpoints, the token exchange, and the people's
/// endpoints with the console (sharing the `api` budget), each group under its own budget.
pub fn router(app: Arc<App>) -> Router {
    let l = app.config.limits;
    let timeout = Duration::from_secs(l.request_timeout.0);
    // A group's budget: load shedding over a concurrency limit its routes share, under a timeout.
    let budget = |group: &'static str, limit: usize| {
        let app = app.clone();
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(move |e: tower::BoxError| {
                let app = app.clone();
                async move {
                    let overloaded = e.is::<tower::load_shed::error::Overloaded>();
                    if overloaded {
                        app.metrics.shed(group);
                    }
                    let why =
                        if overloaded { "too many requests of this kind at once" } else { "the request timed out" };
                    counted(&app.metrics, Err(ApiError::unavailable(why)))
                }
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::new(limit))
            .timeout(timeout)
    };
    let people = api::people(&app.config.issuer).merge(console::router());
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .merge(api::filters().route_layer(budget("filters", l.filters)))
        .merge(api::exchange().route_layer(budget("exchange", l.exchange)))
        .merge(people.route_layer(budget("api", l.api)))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .with_state(app)
}

/// The rustls configuration for `tls`: the server certificate, and client certificates verified
/// against `client_ca_file` when one is presented (never required: people's tools have none).
pub fn tls_config(tls: &Tls) -> Result<Arc<rustls::ServerConfig>, String> {
    use crate::files::at;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(at(&tls.cert_file))?
        .collect::<Result<_, _>>()
        .map_err(at(&tls.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(at(&tls.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(at(ca))? {
                roots.add(c.map_err(at(ca))?).map_err(at(ca))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| format!("tls: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The names of a verified client certificate (URI SANs such as SPIFFE ids, and DNS SANs).
fn peer_identity(certs: Option<&[rustls_pki_types::CertificateDer<'_>]>) -> PeerIdentity {
    let names = certs
        .and_then(<[_]>::first)
        .and_then(|leaf| {
            webpki::EndEntityCert::try_from(leaf)
                .ok()
                .map(|c| c.valid_uri_names().chain(c.valid_dns_names()).map(str::to_owned).collect::<Vec<_>>())
        })
        .unwrap_or_default();
    PeerIdentity(Arc::new(names))
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let router = router(app.clone());
    let slots = Arc::new(Semaphore::new(app.config.limits.max_connections));
    let acceptor = tls.map(TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => return,
        };
        let Ok((stream, addr)) = accepted else { continue };
        let (router, acceptor) = (router.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_connection(TokioIo::new(stream), router, PeerIdentity::default(), PeerAddr(addr)).await,
                Some(acceptor) => {
                    let Ok(Ok(tls)) = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
                        return;
                    };
                    let peer = peer_identity(tls.get_ref().1.peer_certificates());
                    serve_connection(TokioIo::new(tls), router, peer, PeerAddr(addr)).await;
                }
            }
        });
    }
}

async fn serve_connection<I>(io: TokioIo<I>, router: axum::Router, peer: PeerIdentity, addr: PeerAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer.clone());
        req.extensions_mut().insert(addr);
        req.map(axum::body::Body::new)
    });
    let hyper_service = hyper_util::service::TowerToHyperService::new(service);
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, hyper_service)
        .await;
}
