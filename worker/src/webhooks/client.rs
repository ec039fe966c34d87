//! The one HTTP client every delivery uses: pooled and kept alive, no redirects followed,
//! and a DNS resolver that applies the SSRF guard to the addresses it returns — checked on
//! the resolved IP at connect time, so DNS rebinding does not get past it. Proxies from the
//! environment are ignored (a proxy resolves names itself, past the guard); a configured
//! one (`SWITCHYARD_WEBHOOK_PROXY`) gets only destinations [`check_destination`] passed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use switchyard_shared::netguard::NetGuard;

use crate::transport::DnsFailure;

/// The resolver's refusal; found again in the error chain to record the attempt as blocked.
#[derive(Debug, thiserror::Error)]
#[error("blocked by the SSRF guard: {host} resolves only to forbidden addresses ({reason})")]
pub(crate) struct Blocked {
    pub host: String,
    pub reason: &'static str,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct GuardedResolver {
    guard: Arc<NetGuard>,
    /// The configured proxy's host name: the operator's choice, resolved without the guard.
    proxy_host: Option<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.guard);
        let host = name.as_str().to_owned();
        let exempt = self.proxy_host.as_deref() == Some(host.as_str());
        Box::pin(async move {
            let resolved = lookup(&host, 0).await.map_err(|e| Box::new(e) as BoxError)?;
            if exempt {
                return Ok(Box::new(resolved.into_iter()) as Addrs);
            }
            let mut reason = "no address";
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match guard.check(a.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        reason = why;
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Blocked { host, reason }) as BoxError);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The client; `proxy` is the validated `SWITCHYARD_WEBHOOK_PROXY`.
pub(crate) fn build(
    guard: Arc<NetGuard>,
    timeout: Duration,
    proxy: Option<&str>,
) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().no_proxy();
    let mut proxy_host = None;
    if let Some(url) = proxy {
        proxy_host = reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned));
        builder = builder.proxy(
            reqwest::Proxy::all(url).expect("SWITCHYARD_WEBHOOK_PROXY is validated at start"),
        );
    }
    builder
        .user_agent(concat!("Switchyard-Webhooks/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(256)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(GuardedResolver { guard, proxy_host }))
        .build()
        .expect("the webhook HTTP client builds")
}

/// The SSRF refusal inside a `reqwest` error, if that is what it was.
pub(crate) fn blocked_reason(error: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(b) = e.downcast_ref::<Blocked>() {
            return Some(b.to_string());
        }
        source = e.source();
    }
    None
}

/// The addresses of `host`; a name that does not resolve (or to nothing) is a DNS failure.
async fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, DnsFailure> {
    let failure = |source| DnsFailure { host: host.to_owned(), source };
    let addrs: Vec<SocketAddr> =
        tokio::net::lookup_host((host, port)).await.map_err(failure)?.collect();
    if addrs.is_empty() {
        return Err(failure(std::io::Error::other("no address")));
    }
    Ok(addrs)
}

/// Why a destination may not be handed to the proxy.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    #[error(transparent)]
    Dns(#[from] DnsFailure),
    #[error("{0} (via the proxy: {1} is not allowed)")]
    Blocked(Blocked, std::net::IpAddr),
}

/// Through a proxy, the guard cannot check the address actually connected to: the
/// destination's name is resolved here and every address it has must be allowed.
pub(crate) async fn check_destination(
    guard: &NetGuard,
    host: &str,
    port: u16,
) -> Result<(), Refused> {
    for addr in lookup(host, port).await? {
        if let Err(reason) = guard.check(addr.ip()) {
            return Err(Refused::Blocked(Blocked { host: host.to_owned(), reason }, addr.ip()));
        }
    }
    Ok(())
}
