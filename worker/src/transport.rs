//! Why an outgoing request failed, from the error chain `reqwest` gives: refused, DNS, TLS,
//! closed mid-answer, an answer that is not HTTP, a timeout. reqwest's own message for most
//! of these is "error sending request"; the attempt record, the metric label and the log
//! need the cause.

use std::error::Error as StdError;

use switchyard_shared::webhooks::AttemptOutcome;

/// A request that got no HTTP answer, by cause. `as_str` is the `outcome` column and the
/// `status_class` label (a bounded set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the timeout.
    Timeout,
    /// The host refused the connection (nothing listening).
    ConnectRefused,
    /// The name did not resolve.
    Dns,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The connection was closed or reset before a whole answer head arrived.
    ClosedMidAnswer,
    /// Bytes came back that are not an HTTP response.
    InvalidAnswer,
    /// Another failure to connect (unreachable network, …).
    Connect,
    /// Anything else that went wrong sending the request.
    Request,
}

impl Failure {
    /// The attempt's recorded outcome.
    pub fn outcome(self) -> AttemptOutcome {
        match self {
            Self::Timeout => AttemptOutcome::Timeout,
            Self::ConnectRefused => AttemptOutcome::ConnectRefused,
            Self::Dns => AttemptOutcome::DnsError,
            Self::Tls => AttemptOutcome::TlsError,
            Self::ClosedMidAnswer => AttemptOutcome::ClosedMidAnswer,
            Self::InvalidAnswer => AttemptOutcome::InvalidAnswer,
            Self::Connect => AttemptOutcome::ConnectError,
            Self::Request => AttemptOutcome::RequestError,
        }
    }

    /// The `status_class` label: the same name as the outcome.
    pub fn as_str(self) -> &'static str {
        self.outcome().as_str()
    }
}

/// A name that did not resolve; the resolvers of our clients return it so that a DNS failure
/// is told apart from other connect errors.
#[derive(Debug, thiserror::Error)]
#[error("could not resolve {host}: {source}")]
pub struct DnsFailure {
    pub host: String,
    #[source]
    pub source: std::io::Error,
}

/// The cause of `error`, and a message naming it (without the URL: it can carry
/// credentials in its user info or query).
pub fn classify(error: &reqwest::Error) -> (Failure, String) {
    let message = chain_message(error);
    if error.is_timeout() {
        return (Failure::Timeout, message);
    }
    let mut failure = None;
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(found) = failure_of(e) {
            failure = Some(found);
            break;
        }
        source = e.source();
    }
    let failure =
        failure.unwrap_or(if error.is_connect() { Failure::Connect } else { Failure::Request });
    (failure, message)
}

fn failure_of(e: &(dyn StdError + 'static)) -> Option<Failure> {
    if e.is::<DnsFailure>() {
        return Some(Failure::Dns);
    }
    if e.is::<rustls::Error>() {
        return Some(Failure::Tls);
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        if h.is_parse() || h.is_parse_status() {
            return Some(Failure::InvalidAnswer);
        }
        if h.is_incomplete_message() {
            return Some(Failure::ClosedMidAnswer);
        }
        if h.is_timeout() {
            return Some(Failure::Timeout);
        }
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        // An io::Error's `source` skips the error it wraps (TLS errors come as an io::Error
        // inside an io::Error): look inside it here.
        if let Some(found) = io.get_ref().and_then(|inner| failure_of(inner)) {
            return Some(found);
        }
        use std::io::ErrorKind as K;
        return match io.kind() {
            K::ConnectionRefused => Some(Failure::ConnectRefused),
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                Some(Failure::ClosedMidAnswer)
            }
            K::TimedOut => Some(Failure::Timeout),
            _ => None,
        };
    }
    None
}

/// "error sending request: client error (Connect): tcp connect error: Connection refused":
/// every distinct message of the chain.
fn chain_message(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    let joined = parts.join(": ");
    match error.url() {
        // reqwest appends " for url (…)"; the URL is left out wherever it shows.
        Some(url) => {
            joined.replace(&format!(" for url ({url})"), "").replace(url.as_str(), "[url]")
        }
        None => joined,
    }
}
